"""kubeconfig from eks:DescribeCluster (moto) and the EKS token of its exec plugin."""

from __future__ import annotations

import base64
import datetime
import json
import os
import stat
import subprocess
import sys
import urllib.parse

import boto3
import pytest
import yaml
from moto_aws import REGION, moto_session  # noqa: F401 (fixture)

from contracts.errors import DeployError
from workloads.deploy.eks_token import eks_token, exec_credential, main, sts_endpoint
from workloads.deploy.kubeconfig import write_kubeconfig


def test_kubeconfig_points_at_the_cluster_and_authenticates_through_the_token_module(
    moto_session,  # noqa: F811
    tmp_path,
):
    eks = moto_session.client("eks")
    eks.create_cluster(name="bmtest-eks", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={})
    cluster = eks.describe_cluster(name="bmtest-eks")["cluster"]
    path = write_kubeconfig(
        eks, cluster_name="bmtest-eks", region=REGION, path=tmp_path / "deploy" / "kubeconfig"
    )
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "bmtest-eks.us-west-2"
    (entry,) = config["clusters"]
    assert entry["cluster"]["server"] == cluster["endpoint"]
    assert entry["cluster"]["certificate-authority-data"] == cluster["certificateAuthority"]["data"]
    (user,) = config["users"]
    exec_ = user["user"]["exec"]
    assert exec_["command"] == sys.executable
    assert exec_["args"] == [
        "-m",
        "workloads.deploy.eks_token",
        "--cluster-name",
        "bmtest-eks",
        "--region",
        REGION,
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_unknown_cluster_is_one_line(moto_session, tmp_path):  # noqa: F811
    with pytest.raises(
        DeployError, match=r"^EKS cluster nope not found in us-west-2: run `invoke up --target aws`$"
    ):
        write_kubeconfig(moto_session.client("eks"), cluster_name="nope", region=REGION, path=tmp_path / "k")
    assert not (tmp_path / "k").exists()


def _decode(token: str) -> urllib.parse.ParseResult:
    assert token.startswith("k8s-aws-v1.")
    payload = token.removeprefix("k8s-aws-v1.")
    return urllib.parse.urlparse(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode())


def test_token_is_a_presigned_get_caller_identity_bound_to_the_cluster():
    sts = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name=REGION
    ).client("sts", endpoint_url=f"https://sts.{REGION}.amazonaws.com")
    url = _decode(eks_token(sts, cluster_name="bmtest-eks"))
    query = urllib.parse.parse_qs(url.query)
    assert url.netloc == "sts.us-west-2.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"] and query["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    # The header is not left registered on the client.
    other = _decode(eks_token(sts, cluster_name="other"))
    assert other.query != url.query


def test_exec_credential_and_the_module_as_kubectl_runs_it():
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    credential = exec_credential("k8s-aws-v1.abc", now=now)
    assert credential["status"] == {"expirationTimestamp": "2026-01-02T03:18:05Z", "token": "k8s-aws-v1.abc"}
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workloads.deploy.eks_token",
            "--cluster-name",
            "bmtest-eks",
            "--region",
            REGION,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    printed = json.loads(result.stdout)
    assert (
        printed["kind"] == "ExecCredential"
        and printed["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    )
    assert _decode(printed["status"]["token"]).netloc == "sts.us-west-2.amazonaws.com"


def test_the_token_endpoint_uses_the_partitions_dns_suffix():
    assert sts_endpoint("us-west-2") == "https://sts.us-west-2.amazonaws.com"
    assert sts_endpoint("cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn"
    sts = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="cn-north-1"
    ).client("sts", endpoint_url=sts_endpoint("cn-north-1"))
    assert _decode(eks_token(sts, cluster_name="bmtest-eks")).netloc == "sts.cn-north-1.amazonaws.com.cn"


def test_an_unknown_region_is_one_line_on_the_plugins_stderr(capsys):
    assert main(["--cluster-name", "bmtest-eks", "--region", "us-east-9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot create an EKS token: aws.region 'us-east-9' is not an AWS region")
    assert err.count("\n") == 1
