"""`up`/`down --target vsphere`: a fake eksctl on PATH, the Kubernetes step replaced at its boundary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from vcsim import harness
from vcsim.harness import Vcsim, lab_settings

from contracts.config import load_config
from contracts.errors import DeployError
from infra.eksa import preflight
from workloads.deploy import vsphere
from workloads.targets import ModelRequest, cluster_target


def model_source_for(config, **request):
    """The model source `invoke up --target vsphere` builds from its --model-* flags."""
    return cluster_target("vsphere").model_source(config, ModelRequest(**request))


# The simulator fixtures: a binary built once per session, a lab simulator per module.
lab, vcsim_binary, vsphere_env = harness.lab, harness.vcsim_binary, harness.vsphere_env

FAKE_EKSCTL = """#!{python}
import json, os, pathlib, sys
args = sys.argv[1:]
record = pathlib.Path(os.environ["FAKE_EKSCTL_RECORD"])
calls = json.loads(record.read_text()) if record.exists() else []
calls.append({{
    "args": args,
    "cwd": os.getcwd(),
    "user": os.environ.get("EKSA_VSPHERE_USERNAME"),
    "password_given": os.environ["EKSA_VSPHERE_PASSWORD"] == os.environ["FAKE_EKSCTL_EXPECT_PASSWORD"],
}})
record.write_text(json.dumps(calls))
print("Performing setup and validations")
code = int(os.environ.get("FAKE_EKSCTL_EXIT", "0"))
if code == 0 and args[:3] == ["anywhere", "create", "cluster"]:
    name = "bone-marrow-onprem"
    (pathlib.Path(name)).mkdir(exist_ok=True)
    (pathlib.Path(name) / f"{{name}}-eks-a-cluster.kubeconfig").write_text("apiVersion: v1\\nkind: Config\\n")
    print("🎉 Cluster created!")
sys.exit(code)
"""


@pytest.fixture
def fake_eksctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vsphere_env: Vcsim) -> Path:
    """An eksctl on PATH that records its calls (in the returned JSON file) and writes a kubeconfig."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "eksctl"
    script.write_text(FAKE_EKSCTL.format(python=sys.executable))
    script.chmod(0o755)
    plugin = bin_dir / "eksctl-anywhere"  # eksctl runs `eksctl anywhere` as this executable
    plugin.write_text("#!/bin/sh\nexit 0\n")
    plugin.chmod(0o755)
    record = tmp_path / "eksctl-calls.json"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_EKSCTL_RECORD", str(record))
    monkeypatch.setenv("FAKE_EKSCTL_EXPECT_PASSWORD", vsphere_env.password)
    monkeypatch.setattr(preflight, "ip_in_use", lambda address: None)
    return record


@pytest.fixture
def k8s_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """render_serving and apply_manifests (issue 4's API) replaced by recorders."""
    from workloads.k8s import apply, render

    calls: list[tuple[str, dict]] = []

    def fake_render(config, *, target, model_source, out_dir):
        calls.append(("render", {"target": target, "model_source": model_source, "out_dir": out_dir}))
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "10-ovms-icelake.yaml"
        path.write_text("kind: Deployment\n")
        return [path]

    def fake_apply(paths, *, kubeconfig, progress=print, **kwargs):
        calls.append(("apply", {"paths": paths, "kubeconfig": kubeconfig}))

    monkeypatch.setattr(render, "render_serving", fake_render)
    monkeypatch.setattr(apply, "apply_manifests", fake_apply)
    return calls


def _config(sim: Vcsim, tmp_path: Path):
    return load_config({"artifacts_dir": str(tmp_path / "artifacts"), "vsphere": lab_settings(sim)})


def test_up_creates_the_cluster_serves_and_records_endpoints(
    vsphere_env: Vcsim, fake_eksctl: Path, k8s_calls: list, tmp_path: Path
) -> None:
    config = _config(vsphere_env, tmp_path)
    source = model_source_for(config, bucket="bmc-models", prefix="models", region="us-east-1")
    lines: list[str] = []
    result = vsphere.up(config, model_source=source, progress=lines.append)

    work = tmp_path / "artifacts" / "deploy" / "vsphere"
    [call] = json.loads(fake_eksctl.read_text())
    assert call["args"] == ["anywhere", "create", "cluster", "-f", str(work / "bone-marrow-onprem.yaml")]
    assert call["cwd"] == str(work)
    assert call["user"] == vsphere_env.username and call["password_given"]
    assert result.kubeconfig == work / "bone-marrow-onprem" / "bone-marrow-onprem-eks-a-cluster.kubeconfig"
    assert [name for name, _ in k8s_calls] == ["render", "apply"]
    assert k8s_calls[0][1]["target"] == "vsphere" and k8s_calls[0][1]["model_source"] == source
    assert k8s_calls[1][1]["kubeconfig"] == result.kubeconfig
    endpoints = json.loads(result.endpoints.read_text())
    assert endpoints["icelake"]["rest"].startswith("http://") and endpoints["icelake"]["grpc"].endswith(
        ":9000"
    )
    log = (work / "eksctl-create.log").read_text()
    assert "Cluster created" in log and "Cluster created!" in "\n".join(lines)
    assert vsphere_env.password not in log + "\n".join(lines)


def test_down_deletes_the_cluster_and_forgets_its_endpoints(
    vsphere_env: Vcsim, fake_eksctl: Path, k8s_calls: list, tmp_path: Path
) -> None:
    config = _config(vsphere_env, tmp_path)
    source = model_source_for(config, bucket="bmc-models", region="us-east-1")
    result = vsphere.up(config, model_source=source, progress=lambda line: None)
    vsphere.down(config, progress=lambda line: None)
    delete = json.loads(fake_eksctl.read_text())[-1]
    assert delete["args"] == [
        "anywhere", "delete", "cluster", "-f", str(result.spec), "--kubeconfig", str(result.kubeconfig),
    ]  # fmt: skip
    assert delete["password_given"]
    assert not result.endpoints.exists()


def test_down_without_a_cluster(vsphere_env: Vcsim, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"no EKS Anywhere cluster recorded under .*deploy/vsphere"):
        vsphere.down(_config(vsphere_env, tmp_path), progress=lambda line: None)


def test_missing_eksctl_or_its_plugin_stops_before_discovery(
    vsphere_env: Vcsim, fake_eksctl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(vsphere_env, tmp_path)
    source = model_source_for(config, bucket="bmc-models", region="us-east-1")

    def no_discovery(*args, **kwargs):
        raise AssertionError("vCenter was contacted before the tools were checked")

    monkeypatch.setattr(vsphere, "discover_and_check", no_discovery)
    (tmp_path / "bin" / "eksctl-anywhere").unlink()
    with pytest.raises(DeployError, match=r"^eksctl-anywhere not found on PATH; install eksctl and its"):
        vsphere.up(config, model_source=source, progress=lambda line: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(
        DeployError, match=r"^eksctl and eksctl-anywhere not found on PATH; install eksctl and its anywhere"
    ):
        vsphere.up(config, model_source=source, progress=lambda line: None)
    assert not (tmp_path / "artifacts").exists()
    assert not fake_eksctl.exists()


def test_failing_eksctl_points_at_its_log(
    vsphere_env: Vcsim, fake_eksctl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EKSCTL_EXIT", "3")
    config = _config(vsphere_env, tmp_path)
    source = model_source_for(config, bucket="bmc-models", region="us-east-1")
    with pytest.raises(
        DeployError, match=r"`eksctl anywhere create cluster` failed with exit code 3; see .*create.log"
    ):
        vsphere.up(config, model_source=source, progress=lambda line: None)


def test_up_needs_the_models_unless_dry_run(vsphere_env: Vcsim, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"needs the models: --model-bucket"):
        vsphere.up(_config(vsphere_env, tmp_path), progress=lambda line: None)
    assert not (tmp_path / "artifacts").exists()


def test_model_source_follows_the_delivery_setting() -> None:
    from workloads.k8s.model_source import BakedModelSource, SecretS3ModelSource

    secret_sync = load_config({})
    source = model_source_for(secret_sync, bucket="bmc-models", endpoint_url="https://minio.lab:9000")
    assert (
        isinstance(source, SecretS3ModelSource)
        and source.secret_name == secret_sync.ovms.eksa_credentials_secret
    )
    assert model_source_for(secret_sync) is None
    with pytest.raises(DeployError, match=r"secret-sync: give --model-bucket, not --model-image"):
        model_source_for(secret_sync, image="registry.lab/ovms-bmc:0.1.0")
    baked = load_config({"ovms": {"eksa_model_delivery": "baked"}})
    assert model_source_for(baked, image="registry.lab/ovms-bmc:0.1.0") == BakedModelSource(
        image="registry.lab/ovms-bmc:0.1.0"
    )
