"""`up`/`down` for the AWS target end to end against moto, with the CDK CLI and the Kubernetes
steps (workloads.k8s, issue 4) replaced at their boundaries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import NoCredentialsError
from invoke import MockContext, Result
from moto_aws import REGION, Dl1Ec2, DlQuota, MotoSession, moto_session  # noqa: F401 (fixture)
from test_deploy_aws_outputs import sample_outputs

from contracts.config import load_config
from contracts.errors import DeployError
from workloads.deploy import aws
from workloads.deploy.cdk_cli import CdkCli

ROLE_SESSION = "arn:aws:sts::123456789012:assumed-role/Deployer/alice"


class CdkRunner(MockContext):
    """Records the CDK commands; `deploy` writes the outputs file as the real CLI does."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[str] = []

    def run(self, command, **kwargs):
        self.commands.append(command)
        if " deploy " in command:
            Path(command.split("--outputs-file ")[1].split()[0]).write_text(json.dumps(sample_outputs()))
        return Result(command=command, exited=0)

    @property
    def verbs(self) -> list[str]:
        return [c.split()[1] for c in self.commands]


class StsAs:
    def __init__(self, _real=None, arn: str = ROLE_SESSION, error: Exception | None = None) -> None:
        self.arn, self.error = arn, error

    def get_caller_identity(self):
        if self.error:
            raise self.error
        return {"Account": "123456789012", "Arn": self.arn, "UserId": "AROA:alice"}


class K8sBoundary:
    """Stands in for workloads.k8s render/apply/endpoints and records how they were called."""

    def __init__(self, config) -> None:
        self.config, self.applied, self.deleted, self.recorded, self.sources = config, [], [], [], []

    def render_serving(self, config, *, target, model_source, out_dir):
        assert target == "aws"
        self.sources.append(model_source)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for pool, node_pool in config.aws.pools.items():
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": f"ovms-{pool}",
                    "namespace": config.kubernetes.namespace,
                    "labels": config.kubernetes.pool_labels(pool, node_pool),
                },
                "spec": {"ports": [{"name": "grpc", "port": 9000}, {"name": "rest", "port": 8000}]},
            }
            path = out_dir / f"10-ovms-{pool}.yaml"
            path.write_text(yaml.safe_dump(service))
            paths.append(path)
        return paths

    def apply_manifests(self, paths, *, kubeconfig, **_kwargs):
        self.applied.append((paths, kubeconfig))

    def delete_manifests(self, paths, *, kubeconfig, **_kwargs):
        self.deleted.append((paths, kubeconfig))

    def record_endpoints(self, config, *, target, endpoints):
        self.recorded.append((target, endpoints))
        return config.paths.root / "deploy" / target / "endpoints.json"


@pytest.fixture
def setup(moto_session, tmp_path, monkeypatch):  # noqa: F811
    config = load_config(
        {
            "artifacts_dir": str(tmp_path / "artifacts"),
            "kubernetes": {"namespace": "cells", "model_sync_service_account": "model-sync"},
            "aws": {
                "region": REGION,
                "availability_zones": ["us-west-2b", "us-west-2c"],
                "resource_prefix": "bmtest",
                "habana_ami_ids": {REGION: "ami-0123456789abcdef0"},
                "budget_email": "ml-ops@example.org",
            },
        }
    )
    for name in ("bone-marrow-fp32/1/model.xml", "bone-marrow-fp32/1/model.bin"):
        path = config.paths.model_repository / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() * 10)
    session = MotoSession(
        moto_session.url, overrides={"ec2": Dl1Ec2, "service-quotas": DlQuota, "sts": StsAs}
    )
    session.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String")
    session.client("s3").create_bucket(
        Bucket="bmtest-data-models-1", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    session.client("eks").create_cluster(
        name="bmtest-eks", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={}
    )
    k8s = K8sBoundary(config)
    monkeypatch.setattr(aws.k8s_render, "render_serving", k8s.render_serving)
    monkeypatch.setattr(aws.k8s_apply, "apply_manifests", k8s.apply_manifests)
    monkeypatch.setattr(aws.k8s_apply, "delete_manifests", k8s.delete_manifests)
    monkeypatch.setattr(aws.k8s_endpoints, "record_endpoints", k8s.record_endpoints)
    # The CLI binary itself comes from `npm ci`; these tests are about what is run, in which order.
    monkeypatch.setattr(CdkCli, "binary", property(lambda self: Path(sys.executable)))
    return config, session, k8s


def test_up_deploys_uploads_applies_and_records_endpoints_and_a_second_up_changes_nothing(setup):
    config, session, k8s = setup
    runner, lines = CdkRunner(), []
    result = aws.up(config, runner=runner, session=session, progress=lines.append)
    assert runner.verbs == ["synth", "deploy"]
    effective = json.loads((aws.aws_paths(config).config_file).read_text())
    assert effective["aws"]["cluster_admin_arns"] == ["arn:aws:iam::123456789012:role/Deployer"]
    assert f"bmc:config-file={aws.aws_paths(config).config_file.resolve()}" in runner.commands[0]

    kubeconfig = yaml.safe_load(aws.aws_paths(config).kubeconfig.read_text())
    assert kubeconfig["current-context"] == "bmtest-eks.us-west-2"
    s3 = session.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bmtest-data-models-1")["Contents"])
    assert keys == ["ovms/bone-marrow-fp32/1/model.bin", "ovms/bone-marrow-fp32/1/model.xml"]
    (source,) = k8s.sources
    assert (source.bucket, source.prefix, source.region, source.service_account) == (
        "bmtest-data-models-1",
        "ovms",
        REGION,
        "model-sync",
    )
    ((paths, applied_kubeconfig),) = k8s.applied
    assert applied_kubeconfig == aws.aws_paths(config).kubeconfig and len(paths) == 2
    ((target, endpoints),) = k8s.recorded
    assert target == "aws"
    assert endpoints["c6i"] == {
        "rest": "http://ovms-c6i.cells.svc.cluster.local:8000",
        "grpc": "ovms-c6i.cells.svc.cluster.local:9000",
    }
    assert result.outputs.cluster_name == "bmtest-eks" and len(result.upload.uploaded) == 2

    again = aws.up(config, runner=CdkRunner(), session=session, progress=lines.append)
    assert not again.upload.uploaded and len(again.upload.skipped) == 2


def test_dry_run_without_credentials_synthesizes_only(setup):
    config, session, k8s = setup
    session.overrides["sts"] = lambda real: StsAs(error=NoCredentialsError())
    runner, lines = CdkRunner(), []
    assert aws.up(config, runner=runner, session=session, dry_run=True, progress=lines.append).dry_run
    assert runner.verbs == ["synth"]
    assert "no AWS credentials: synthesized only, no `cdk diff`" in lines
    assert not k8s.applied and "Contents" not in session.client("s3").list_objects_v2(
        Bucket="bmtest-data-models-1"
    )


def test_dry_run_with_credentials_shows_the_diff_and_deploys_nothing(setup):
    config, session, k8s = setup
    runner = CdkRunner()
    aws.up(config, runner=runner, session=session, dry_run=True, progress=lambda line: None)
    assert runner.verbs == ["synth", "diff"] and not k8s.applied


def test_failed_checks_stop_before_anything_is_deployed(setup):
    config, session, _k8s = setup
    session.client("ssm").delete_parameter(Name="/cdk-bootstrap/hnb659fds/version")
    runner = CdkRunner()
    with pytest.raises(DeployError, match=r"^account 123456789012 is not CDK-bootstrapped in us-west-2"):
        aws.up(config, runner=runner, session=session, progress=lambda line: None)
    assert runner.commands == []


def test_up_needs_a_budget_address_and_a_model_repository(setup, tmp_path):
    config, session, _k8s = setup
    without_email = load_config({**_plain(config), "aws": {**_plain(config)["aws"], "budget_email": ""}})
    with pytest.raises(DeployError, match=r"^aws\.budget_email is required"):
        aws.up(without_email, runner=CdkRunner(), session=session, progress=lambda line: None)
    empty = load_config({**_plain(config), "artifacts_dir": str(tmp_path / "empty")})
    with pytest.raises(DeployError, match=r"^no OVMS model repository at .*: run `invoke optimize` first$"):
        aws.up(empty, runner=CdkRunner(), session=session, progress=lambda line: None)


def _plain(config) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(config)))


def test_down_removes_workloads_and_stacks_keeps_and_lists_the_data(setup):
    config, session, k8s = setup
    cloudformation = session.client("cloudformation")
    for stack, values in sample_outputs().items():
        template = {
            "Resources": {
                "Marker": {
                    "Type": "AWS::SSM::Parameter",
                    "Properties": {"Name": f"/{stack}", "Type": "String", "Value": "x"},
                }
            },
            "Outputs": {key: {"Value": value} for key, value in values.items()} or {"None": {"Value": "-"}},
        }
        cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps(template))
    runner, lines = CdkRunner(), []
    result = aws.down(config, runner=runner, session=session, progress=lines.append)
    assert len(k8s.deleted) == 1
    assert runner.verbs == ["synth", "destroy"]
    assert runner.commands[1].split("--app ")[1].split()[1:4] == [
        "bmtest-training",
        "bmtest-cluster",
        "bmtest-network",
    ]
    assert "bmtest-data" not in runner.commands[1]
    assert result.kept == (
        "s3://bmtest-data-datasets-1",
        "s3://bmtest-data-models-1",
        "s3://bmtest-data-results-1",
        "111111111111.dkr.ecr.us-west-2.amazonaws.com/bmtest/train",
        "111111111111.dkr.ecr.us-west-2.amazonaws.com/bmtest/ovms",
        "111111111111.dkr.ecr.us-west-2.amazonaws.com/bmtest/bench",
    )
    assert "   s3://bmtest-data-models-1" in lines


def test_down_with_nothing_deployed_removes_nothing(setup):
    config, session, k8s = setup
    runner, lines = CdkRunner(), []
    result = aws.down(config, runner=runner, session=session, progress=lines.append)
    assert result == aws.DownResult(removed=(), kept=()) and runner.commands == [] and not k8s.deleted
