"""The init container that copies an S3 prefix into a pod volume (aws s3 sync), and its network needs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from workloads.k8s.model_source import S3ModelSource, SecretS3ModelSource
from workloads.k8s.security import container_security, guaranteed

IRSA_TOKEN_VOLUME = "aws-iam-token"
IRSA_TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
# EKS Pod Identity agent (link-local, on every node) that hands out the pod's credentials.
POD_IDENTITY_AGENT = "169.254.170.23/32"
# Instance metadata: never reachable from these pods (no node-role credentials).
IMDS = "169.254.169.254/32"
SYNC_CPUS = 1
SYNC_MEMORY_MIB = 512

S3Location = S3ModelSource | SecretS3ModelSource


def sync_container(
    *, name: str, image: str, source: S3Location, volume: str, mount: str, upload: bool = False
) -> dict[str, Any]:
    """``aws s3 sync`` from ``source`` into ``mount`` (or back to it with ``upload``)."""
    local = mount
    remote = source.uri
    args = [
        "s3",
        "sync",
        local if upload else remote,
        remote if upload else local,
        "--only-show-errors",
        "--no-progress",
    ]
    env: list[dict[str, Any]] = [
        {"name": "AWS_REGION", "value": source.region},
        # Read-only root filesystem: the CLI's cache goes to the emptyDir /tmp.
        {"name": "HOME", "value": "/tmp"},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": volume, "mountPath": mount},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if isinstance(source, SecretS3ModelSource):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": source.secret_name, "key": key}}})
        if source.endpoint_url:
            args += ["--endpoint-url", source.endpoint_url]
    elif source.role_arn:
        env += [
            {"name": "AWS_ROLE_ARN", "value": source.role_arn},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{IRSA_TOKEN_DIR}/token"},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        ]
        mounts.append({"name": IRSA_TOKEN_VOLUME, "mountPath": IRSA_TOKEN_DIR, "readOnly": True})
    return {
        "name": name,
        "image": image,
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "resources": guaranteed(SYNC_CPUS, SYNC_MEMORY_MIB),
        "securityContext": container_security(),
    }


def identity_volumes(source: S3Location) -> list[dict[str, Any]]:
    """IRSA: the web-identity token, projected only where it is mounted (the sync container)."""
    if isinstance(source, S3ModelSource) and source.role_arn:
        token = {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}
        return [{"name": IRSA_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}]
    return []


def pod_annotations(source: S3Location, *, skip_containers: list[str]) -> dict[str, str]:
    """EKS Pod Identity: the webhook injects credentials into every container but these."""
    if isinstance(source, S3ModelSource) and not source.role_arn:
        return {"eks.amazonaws.com/skip-containers": ",".join(skip_containers)}
    return {}


def egress_rules(source: S3Location) -> list[dict[str, Any]]:
    """S3 over HTTPS (anywhere but instance metadata), plus the Pod Identity agent when used."""
    port, protocol = 443, "TCP"
    if isinstance(source, SecretS3ModelSource) and source.endpoint_url:
        url = urlparse(source.endpoint_url)
        port = url.port or (443 if url.scheme == "https" else 80)
    rules = [
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS]}}],
            "ports": [{"port": port, "protocol": protocol}],
        }
    ]
    if isinstance(source, S3ModelSource) and not source.role_arn:
        rules.append(
            {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}], "ports": [{"port": 80, "protocol": "TCP"}]}
        )
    return rules
