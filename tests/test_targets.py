"""The target registry: every deploy and training target resolves its pieces; unknown names are one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from contracts.config import load_config
from contracts.errors import ConfigError, DeployError, ToolkitError
from workloads.k8s.endpoints import endpoints_path, record_endpoints
from workloads.k8s.model_source import BakedModelSource, S3ModelSource, SecretS3ModelSource
from workloads.targets import (
    DEPLOY_TARGETS,
    TRAINING_TARGETS,
    ClusterTarget,
    ModelRequest,
    UnknownTargetError,
    UpRequest,
    cluster_target,
    deploy_target,
    describe,
    target_names,
    training_target,
)

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = {"rest": "http://10.0.0.5:8000", "grpc": "10.0.0.5:9000"}


def _config(tmp_path: Path, **sections: Any):
    return load_config({"artifacts_dir": str(tmp_path), **sections})


def _record(config, name: str) -> None:
    target = deploy_target(name)
    if isinstance(target, ClusterTarget):
        record_endpoints(config, target=name, endpoints={pool: ENDPOINTS for pool in target.pools(config)})
    else:
        folder = target.work_dir(config)
        folder.mkdir(parents=True)
        record = {"http_url": ENDPOINTS["rest"], "grpc_target": ENDPOINTS["grpc"], "models": {}}
        (folder / "endpoints.json").write_text(json.dumps(record))


# --- what every target resolves ------------------------------------------------------------------


def test_the_registered_targets() -> None:
    assert tuple(DEPLOY_TARGETS) == ("local", "aws", "vsphere")
    assert tuple(TRAINING_TARGETS) == ("local", "dl1")
    assert target_names(lambda t: t.in_cluster_bench) == ("aws", "vsphere")
    assert target_names(lambda t: t.supports_dry_run) == ("aws", "vsphere")
    assert all(t.summary for t in DEPLOY_TARGETS.values())


@pytest.mark.parametrize("name", list(DEPLOY_TARGETS))
def test_every_target_resolves_its_pieces(tmp_path: Path, name: str) -> None:
    config = _config(tmp_path)
    target = deploy_target(name)
    assert target.name == name
    assert target.work_dir(config).is_relative_to(tmp_path)
    assert target.pools(config) and all(isinstance(p, str) for p in target.pools(config))
    kubeconfig = target.kubeconfig(config)
    assert (kubeconfig is None) == (not isinstance(target, ClusterTarget))
    if kubeconfig is not None:
        assert kubeconfig.is_relative_to(target.work_dir(config))
    with pytest.raises(ToolkitError, match=f"`invoke up --target {name}`") as info:
        target.recorded_endpoints(config)
    assert "\n" not in str(info.value)
    _record(config, name)
    recorded = target.recorded_endpoints(config)
    assert set(recorded) == set(target.pools(config))
    assert all(entry == ENDPOINTS for entry in recorded.values())


def test_pools_work_folders_and_kubeconfigs(tmp_path: Path) -> None:
    config = _config(tmp_path)
    aws, vsphere, local = deploy_target("aws"), deploy_target("vsphere"), deploy_target("local")
    assert aws.pools(config) == ("c5", "c6i", "c7i")
    assert vsphere.pools(config) == ("icelake",)
    assert local.pools(config) == ("local",)
    assert aws.work_dir(config) == tmp_path / "deploy" / "aws" == config.paths.deploy("aws")
    assert vsphere.work_dir(config) == tmp_path / "deploy" / "vsphere"
    assert local.work_dir(config) == config.paths.local_server
    assert aws.kubeconfig(config) == tmp_path / "deploy" / "aws" / "kubeconfig"
    name = config.vsphere.cluster_name
    assert (
        vsphere.kubeconfig(config)
        == tmp_path / "deploy" / "vsphere" / name / f"{name}-eks-a-cluster.kubeconfig"
    )
    assert local.kubeconfig(config) is None
    only_c6i = _config(
        tmp_path, aws={"pools": {"c6i": {"instance_type": "c6i.2xlarge", "cpu_generation": "icelake"}}}
    )
    assert aws.pools(only_c6i) == ("c6i",)


def test_one_owner_of_the_deploy_folder(tmp_path: Path) -> None:
    from workloads.deploy.aws import aws_paths
    from workloads.deploy.vsphere import work_dir

    config = _config(tmp_path)
    assert aws_paths(config).root == config.paths.deploy("aws") == cluster_target("aws").work_dir(config)
    assert work_dir(config) == config.paths.deploy("vsphere") == cluster_target("vsphere").work_dir(config)
    assert endpoints_path(config, "vsphere").parent == config.paths.deploy("vsphere")


# --- how the models reach a cluster --------------------------------------------------------------


def test_aws_syncs_under_pod_identity(tmp_path: Path) -> None:
    config = _config(tmp_path)
    aws = cluster_target("aws")
    source = aws.model_source(config, ModelRequest(bucket="bm-models", prefix="ovms"))
    assert source == S3ModelSource(
        bucket="bm-models", prefix="ovms", region=config.aws.region, service_account="ovms-model-sync"
    )
    irsa = aws.model_source(
        config, ModelRequest(bucket="bm-models", role_arn="arn:aws:iam::123456789012:role/r")
    )
    assert isinstance(irsa, S3ModelSource) and irsa.role_arn.endswith(":role/r")
    assert aws.model_source(config, ModelRequest()) is None
    with pytest.raises(
        DeployError, match=r"^target aws syncs the models from S3: give the models bucket \(--bucket\)$"
    ):
        aws.require_model_source(config, ModelRequest(bucket_flag="--bucket"))
    aws.check_model_source(config, source)
    with pytest.raises(DeployError, match="pod's own identity"):
        on_prem = cluster_target("vsphere").s3_source(config, ModelRequest(bucket="bm-data", prefix="p"))
        aws.check_model_source(config, on_prem)


def test_vsphere_follows_the_delivery_setting(tmp_path: Path) -> None:
    secret_sync = _config(tmp_path)
    baked = _config(tmp_path, ovms={"eksa_model_delivery": "baked"})
    vsphere = cluster_target("vsphere")
    source = vsphere.model_source(
        secret_sync, ModelRequest(bucket="bmc", endpoint_url="https://minio.lab:9000")
    )
    assert isinstance(source, SecretS3ModelSource)
    assert source.secret_name == secret_sync.ovms.eksa_credentials_secret
    assert source.endpoint_url == "https://minio.lab:9000"
    image = "registry.lab/ovms-bmc:0.1.0"
    assert vsphere.model_source(baked, ModelRequest(image=image)) == BakedModelSource(image=image)
    with pytest.raises(
        DeployError, match=r"^ovms.eksa_model_delivery is secret-sync: give --model-bucket, not"
    ):
        vsphere.model_source(secret_sync, ModelRequest(image=image))
    with pytest.raises(
        DeployError, match=r"^ovms.eksa_model_delivery is baked: give --baked-image, not --bucket$"
    ):
        vsphere.model_source(
            baked, ModelRequest(bucket="b", bucket_flag="--bucket", image_flag="--baked-image")
        )
    with pytest.raises(DeployError, match=r"give the OVMS image with the model \(--model-image\)$"):
        vsphere.require_model_source(baked, ModelRequest())
    vsphere.check_model_source(baked, BakedModelSource(image=image))
    with pytest.raises(DeployError, match="EKS Anywhere needs a BakedModelSource, got SecretS3ModelSource"):
        vsphere.check_model_source(baked, source)


def test_s3_credentials_of_the_pods(tmp_path: Path) -> None:
    config = _config(tmp_path)
    aws = cluster_target("aws").s3_source(
        config, ModelRequest(bucket="bm-data", prefix="a", endpoint_url="http://ignored:9000")
    )
    assert (
        isinstance(aws, S3ModelSource) and aws.service_account == config.kubernetes.model_sync_service_account
    )
    vsphere = cluster_target("vsphere").s3_source(
        config, ModelRequest(bucket="bm-data", prefix="a", endpoint_url="http://minio:9000")
    )
    assert isinstance(vsphere, SecretS3ModelSource) and vsphere.endpoint_url == "http://minio:9000"


# --- image registries ----------------------------------------------------------------------------


class _Ecr:
    def client(self, name: str, **_kwargs: Any) -> Any:
        assert name == "ecr"
        return self

    def get_authorization_token(self) -> dict[str, Any]:
        import base64

        token = base64.b64encode(b"AWS:secret").decode()
        endpoint = "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        return {"authorizationData": [{"authorizationToken": token, "proxyEndpoint": endpoint}]}


def test_image_registries(tmp_path: Path) -> None:
    config = _config(tmp_path)
    configured = _config(tmp_path, images={"registry": "registry.lab/bmc"})
    for name in ("aws", "vsphere"):
        assert cluster_target(name).image_registry(configured, push=True, dry_run=False) == (
            "registry.lab/bmc",
            [],
        )
    with pytest.raises(
        DeployError, match=r"^images.registry is empty: set it to the registry of target vsphere$"
    ):
        cluster_target("vsphere").image_registry(config, push=True, dry_run=False)
    registry, logins = cluster_target("aws").image_registry(config, push=True, dry_run=False, session=_Ecr())
    assert registry == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert [c.argv[:2] for c in logins] == [("docker", "login")]


# --- up and down delegate ------------------------------------------------------------------------


def test_up_and_down_delegate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.deploy import aws, vsphere
    from workloads.serving import local

    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(label: str):
        def record(config, **kwargs):
            calls.append((label, kwargs))
            return label

        return record

    for module, names in ((aws, ("up", "down")), (vsphere, ("up", "down")), (local, ("start", "stop"))):
        for name in names:
            monkeypatch.setattr(module, name, recorder(f"{module.__name__.rsplit('.', 1)[-1]}.{name}"))
    config = _config(tmp_path)
    runner = object()
    request = UpRequest(dry_run=True, runner=runner, models=ModelRequest(bucket="bmc-models"))
    assert deploy_target("aws").up(config, request=request) == "aws.up"
    assert deploy_target("vsphere").up(config, request=request) == "vsphere.up"
    assert deploy_target("local").up(config, request=UpRequest()) == "local.start"
    assert deploy_target("aws").down(config, runner=runner) == "aws.down"
    assert deploy_target("vsphere").down(config) is None
    assert deploy_target("local").down(config) == "local.stop"
    assert calls[0] == ("aws.up", {"runner": runner, "dry_run": True})
    label, kwargs = calls[1]
    assert label == "vsphere.up" and kwargs["dry_run"] is True
    assert (
        isinstance(kwargs["model_source"], SecretS3ModelSource)
        and kwargs["model_source"].bucket == "bmc-models"
    )
    assert [label for label, _ in calls] == [
        "aws.up",
        "vsphere.up",
        "local.start",
        "aws.down",
        "vsphere.down",
        "local.stop",
    ]
    assert calls[3] == ("aws.down", {"runner": runner})


# --- unknown names ---------------------------------------------------------------------------------


def test_unknown_targets_are_one_line_listing_the_registered_names() -> None:
    with pytest.raises(UnknownTargetError, match=r"^unknown target 'gcp'; available: local, aws, vsphere$"):
        deploy_target("gcp")
    with pytest.raises(UnknownTargetError, match=r"^unknown target 'local'; choose aws or vsphere$"):
        cluster_target("local")
    with pytest.raises(UnknownTargetError, match=r"^unknown training target 'tpu'; choose local or dl1$"):
        training_target("tpu")
    assert issubclass(UnknownTargetError, ConfigError)  # the CLI exits 2, as for any bad flag


def test_help_is_generated_from_the_registry() -> None:
    summaries = describe(DEPLOY_TARGETS.values(), lambda t: t.summary)
    assert summaries.startswith("local (KServe v2 OpenVINO server on loopback), aws (")
    assert " or vsphere (EKS Anywhere" in summaries
    assert describe(DEPLOY_TARGETS.values(), lambda t: t.down_summary).startswith("local, aws (")


# --- training targets ------------------------------------------------------------------------------


def test_training_targets_check_flags_and_delegate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.training import remote, train

    dl1, local = training_target("dl1"), training_target("local")
    with pytest.raises(ConfigError, match=r"^--target dl1 trains on Gaudi \(hpu\); drop --device cpu$"):
        dl1.check(device="cpu", resume=False, run_id=None)
    with pytest.raises(ConfigError, match=r"^--target dl1 --resume needs the --run-id"):
        dl1.check(device=None, resume=True, run_id=None)
    dl1.check(device="hpu", resume=True, run_id="r1")
    local.check(device="cpu", resume=True, run_id=None)

    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(train, "run_training", lambda config, **kw: calls.append(("local", kw)))
    monkeypatch.setattr(remote, "train_on_dl1", lambda config, **kw: calls.append(("dl1", kw)))
    monkeypatch.setattr(train, "new_run_id", lambda: "20250501-100000")
    config = _config(tmp_path)
    local.train(config, run_id=None, resume=False)
    dl1.train(config, run_id=None, resume=False)
    assert calls == [
        ("local", {"run_id": None, "resume": False}),
        ("dl1", {"run_id": "20250501-100000", "resume": False}),
    ]


# --- guard: no branching on a target name outside the registry ----------------------------------------

BRANCH = re.compile(r"""\btarget\s*(==|!=)\s*["']|\btarget\s+(not\s+)?in\s+\(\s*["']|["']eksa?["']""")


def test_no_branching_on_target_names_outside_the_registry() -> None:
    sources = [ROOT / "tasks.py", *(ROOT / "workloads").rglob("*.py"), *(ROOT / "infra").rglob("*.py")]
    offenders = []
    for path in sources:
        if "node_modules" in path.parts or (ROOT / "workloads" / "targets") in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BRANCH.search(line) and 'client("eks")' not in line:  # boto3's service name, not a target
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
