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
SSO_ROLE = "AWSReservedSSO_AdministratorAccess_1f9ff11932198c00"
SSO_SESSION = f"arn:aws:sts::123456789012:assumed-role/{SSO_ROLE}/alice@example.org"
CALLER_ADDRESS = "198.51.100.7"


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
    session.client("iam").create_role(
        RoleName="Deployer", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )
    session.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String")
    session.client("s3").create_bucket(
        Bucket="bmtest-data-models-1", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    session.client("eks").create_cluster(
        name="bmtest-eks", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={}
    )
    k8s = K8sBoundary(config)
    # Never the real checkip service: every `up` here sees this machine at CALLER_ADDRESS.
    monkeypatch.setattr(aws, "detect_public_address", lambda: CALLER_ADDRESS)
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
    deploy = runner.commands[1]
    assert "--parameters bmtest-training:HabanaAmiId=ami-0123456789abcdef0" in deploy
    assert f"--parameters bmtest-cluster:EndpointPublicCidrs={CALLER_ADDRESS}/32" in deploy
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
    assert applied_kubeconfig == aws.aws_paths(config).kubeconfig and len(paths) == len(config.aws.pools) == 3
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
    assert not aws.aws_paths(config).habana_ami_record.exists()
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


def _with_aws(config, **changes):
    plain = _plain(config)
    return load_config({**plain, "aws": {**plain["aws"], **changes}})


def test_an_unpinned_habana_ami_is_found_recorded_and_reused(setup):
    config, session, _k8s = setup
    config = _with_aws(config, habana_ami_ids={})
    runner = CdkRunner()
    aws.up(config, runner=runner, session=session, progress=lambda line: None)
    # The newest SynapseAI 1.14 TensorFlow image; the 1.15 PyTorch one is newer but not a match.
    assert "--parameters bmtest-training:HabanaAmiId=ami-0aaaaaaaaaaaaaaa2" in runner.commands[1]
    record = json.loads(aws.aws_paths(config).habana_ami_record.read_text())
    assert record[REGION]["image_id"] == "ami-0aaaaaaaaaaaaaaa2"

    # A newer image appears: the next deploy keeps the recorded one (the instance is not replaced).
    newer = {
        "ImageId": "ami-0bbbbbbbbbbbbbbb1",
        "Name": "Deep Learning AMI Habana TensorFlow 2.15.0 SynapseAI 1.14.0 (Ubuntu 22.04) 20240601",
        "CreationDate": "2024-06-01T10:00:00.000Z",
    }
    session.overrides["ec2"] = lambda real: Dl1Ec2(real, images=(newer,))
    again = CdkRunner()
    aws.up(config, runner=again, session=session, progress=lambda line: None)
    assert "HabanaAmiId=ami-0aaaaaaaaaaaaaaa2" in again.commands[1]
    # A pin wins over the record.
    pinned = _with_aws(config, habana_ami_ids={REGION: "ami-0ccccccccccccccc1"})
    third = CdkRunner()
    aws.up(pinned, runner=third, session=session, progress=lambda line: None)
    assert "HabanaAmiId=ami-0ccccccccccccccc1" in third.commands[1]


def test_no_matching_habana_ami_stops_before_anything_is_deployed(setup):
    config, session, _k8s = setup
    session.overrides["ec2"] = lambda real: Dl1Ec2(real, images=())
    runner = CdkRunner()
    with pytest.raises(DeployError, match=rf"^no Amazon image named .* in {REGION}: pin .*habana_ami_ids"):
        aws.up(_with_aws(config, habana_ami_ids={}), runner=runner, session=session, progress=print)
    assert runner.commands == []


def test_an_sso_caller_becomes_cluster_admin_with_the_roles_full_path(setup):
    config, session, _k8s = setup
    session.client("iam").create_role(
        RoleName=SSO_ROLE,
        Path="/aws-reserved/sso.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    session.overrides["sts"] = lambda real: StsAs(arn=SSO_SESSION)
    aws.up(config, runner=CdkRunner(), session=session, progress=lambda line: None)
    effective = json.loads(aws.aws_paths(config).config_file.read_text())
    assert effective["aws"]["cluster_admin_arns"] == [
        f"arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/{SSO_ROLE}"
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpoint_access": "private"}, r"^aws\.endpoint_access is private: .*aws\.deploy_from_vpc: true"),
        (
            {"endpoint_public_cidrs": ["203.0.113.0/24"]},
            rf"^this machine's public address {CALLER_ADDRESS} is not in aws\.endpoint_public_cidrs",
        ),
    ],
)
def test_an_unreachable_endpoint_stops_before_anything_is_deployed(setup, changes, message):
    config, session, _k8s = setup
    runner = CdkRunner()
    with pytest.raises(DeployError, match=message):
        aws.up(_with_aws(config, **changes), runner=runner, session=session, progress=lambda line: None)
    assert runner.commands == [] and not aws.aws_paths(config).habana_ami_record.exists()


def test_reachable_endpoints_deploy_with_their_allow_list(setup):
    config, session, _k8s = setup
    listed = CdkRunner()
    aws.up(
        _with_aws(config, endpoint_public_cidrs=["198.51.100.0/24", "203.0.113.0/24"]),
        runner=listed,
        session=session,
        progress=lambda line: None,
    )
    assert "bmtest-cluster:EndpointPublicCidrs=198.51.100.0/24,203.0.113.0/24" in listed.commands[1]
    private = CdkRunner()
    aws.up(
        _with_aws(config, endpoint_access="private", deploy_from_vpc=True),
        runner=private,
        session=session,
        progress=lambda line: None,
        detect_address=lambda: pytest.fail("a private endpoint needs no public address"),
    )
    assert "EndpointPublicCidrs" not in private.commands[1]


def test_an_unknown_region_is_refused_offline_before_any_call(setup):
    config, _session, _k8s = setup
    plain = _plain(config)
    bad = load_config(
        {
            **plain,
            "aws": {
                **plain["aws"],
                "region": "us-east-9",
                "availability_zones": ["us-east-9a", "us-east-9b"],
            },
        }
    )
    runner = CdkRunner()
    for step in (aws.up, aws.down):
        with pytest.raises(
            DeployError, match=r"^aws\.region 'us-east-9' is not an AWS region \(did you mean"
        ):
            step(bad, runner=runner, session=object(), progress=lambda line: None)
    assert runner.commands == []
