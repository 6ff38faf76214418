"""A Kubernetes bearer token for EKS from the caller's AWS credentials (no AWS CLI needed).

EKS accepts a presigned STS GetCallerIdentity URL, bound to the cluster by the signed
``x-k8s-aws-id`` header. ``python -m workloads.deploy.eks_token --cluster-name N --region R``
prints a client.authentication.k8s.io ExecCredential: the kubeconfig's exec plugin.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import sys
from typing import Any

from workloads.deploy.aws_partition import partition_of

TOKEN_PREFIX = "k8s-aws-v1."
# EKS rejects tokens older than 15 minutes; kubectl/clients refresh before the stated expiry.
LIFETIME_S = 60
EXPIRY = datetime.timedelta(minutes=14)


def eks_token(sts: Any, *, cluster_name: str) -> str:
    def add_cluster_header(request, **_kwargs):
        request.headers["x-k8s-aws-id"] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    try:
        url = sts.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=LIFETIME_S, HttpMethod="GET"
        )
    finally:
        sts.meta.events.unregister("before-sign.sts.GetCallerIdentity", add_cluster_header)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def sts_endpoint(region: str) -> str:
    """The regional STS endpoint (the global one is not accepted by every partition and region),
    under the partition's own DNS suffix (``amazonaws.com.cn`` in China)."""
    return f"https://sts.{region}.{partition_of(region).dns_suffix}"


def exec_credential(token: str, *, now: datetime.datetime) -> dict:
    expiry = (now + EXPIRY).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": {"expirationTimestamp": expiry, "token": token},
    }


def main(argv: list[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--region", required=True)
    args = parser.parse_args(argv)
    try:
        sts = boto3.session.Session(region_name=args.region).client(
            "sts", region_name=args.region, endpoint_url=sts_endpoint(args.region)
        )
        token = eks_token(sts, cluster_name=args.cluster_name)
    except Exception as exc:  # the exec plugin's stderr is what kubectl shows
        print(f"error: cannot create an EKS token: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(exec_credential(token, now=datetime.datetime.now(datetime.UTC))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
