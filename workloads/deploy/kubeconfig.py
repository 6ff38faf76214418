"""A kubeconfig for the EKS cluster, from eks:DescribeCluster, authenticating through eks_token."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from contracts.errors import DeployError


def write_kubeconfig(
    eks: Any, *, cluster_name: str, region: str, path: Path, python: str = sys.executable
) -> Path:
    try:
        cluster = eks.describe_cluster(name=cluster_name)["cluster"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise DeployError(
                f"EKS cluster {cluster_name} not found in {region}: run `invoke up --target aws`"
            ) from None
        raise DeployError(f"cannot describe EKS cluster {cluster_name}: {exc}") from None
    if cluster.get("status") != "ACTIVE":
        raise DeployError(
            f"EKS cluster {cluster_name} is {cluster.get('status')}, not ACTIVE: try again shortly"
        )
    context = f"{cluster_name}.{region}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": cluster["endpoint"],
                    "certificate-authority-data": cluster["certificateAuthority"]["data"],
                },
            }
        ],
        "users": [
            {
                "name": context,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": python,
                        "args": [
                            "-m",
                            "workloads.deploy.eks_token",
                            "--cluster-name",
                            cluster_name,
                            "--region",
                            region,
                        ],
                        "interactiveMode": "Never",
                        "provideClusterInfo": False,
                    }
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Owner-only, like ~/.kube/config: it names the cluster and how to authenticate to it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    os.replace(tmp, path)
    return path
