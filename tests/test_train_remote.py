"""`invoke train --target dl1`: the SSM command, the S3 exchange (moto), streaming and clear failures."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from contracts.config import load_config
from contracts.errors import TrainingError
from workloads.data.manifest import SplitManifest
from workloads.training import s3_exchange
from workloads.training.remote import RemoteRun, remote_script, stream_command, train_arguments, train_on_dl1

moto = pytest.importorskip("moto")
BUCKET = "bone-marrow-training"
RUN = RemoteRun(
    instance_id="i-0123456789abcdef0",
    bucket=BUCKET,
    run_id="r1",
    image="123456789012.dkr.ecr.us-east-1.amazonaws.com/bone-marrow/train:0.1.0",
    dataset_prefix="datasets/abc",
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def test_script_runs_the_training_module_on_8_gaudi_cards() -> None:
    config = load_config({"train": {"batch_size": 64}})
    lines = remote_script(config, RUN, resume=False)
    docker = shlex.split(lines[-1])
    assert docker[:4] == ["docker", "run", "--rm", "--runtime=habana"]
    assert "HABANA_VISIBLE_DEVICES=all" in docker and "--ipc=host" in docker
    assert "/opt/bmc/r1/data:/data:ro" in docker and "/opt/bmc/r1/runs:/runs" in docker
    entry = docker.index("--entrypoint")
    assert docker[entry + 1 : entry + 3] == ["mpirun", RUN.image]
    # Habana's per-rank binding: cores per rank computed on the instance, the one unquoted word.
    binding = ["--bind-to", "core", "--map-by", "socket:PE=${pe}", "--rank-by", "core", "--report-bindings"]
    module = ["python3", "-m", "workloads.training.train"]
    assert docker[entry + 3 : entry + 15] == ["-np", "8", *binding, *module]
    assert '--map-by "socket:PE=${pe}"' in lines[-1]
    assert lines[-2] == 'pe=$(( $(nproc) / 8 / 2 )); [ "$pe" -ge 1 ] || pe=1'
    flags = docker[entry + 15 :]
    assert flags[flags.index("--device") + 1] == "hpu"
    assert flags[flags.index("--batch-size") + 1] == "64"
    assert flags[flags.index("--manifest") + 1] == "/data/split.json"
    assert flags[flags.index("--worker-port") + 1] == "12345"
    assert "--resume" not in flags
    assert lines[0] == "set -euo pipefail"
    assert "aws s3 sync s3://bone-marrow-training/datasets/abc/ /opt/bmc/r1/data/ --only-show-errors" in lines
    trap = next(line for line in lines if line.startswith("trap "))
    assert "s3://bone-marrow-training/runs/r1/" in trap and trap.endswith(" EXIT")
    assert lines.index(trap) < len(lines) - 1, "the upload trap is set before training starts"
    assert any(
        line.startswith("aws ecr get-login-password --region us-east-1 | docker login") for line in lines
    )

    resumed = remote_script(load_config({"images": {"dl1_cards": 1}}), RUN, resume=True)
    assert "aws s3 sync s3://bone-marrow-training/runs/r1/ /opt/bmc/r1/runs/r1/ --only-show-errors" in resumed
    single = shlex.split(resumed[-1])
    assert single[single.index("--entrypoint") + 1] == "python3" and single[-1] == "--resume"


def test_every_train_setting_is_passed() -> None:
    args = train_arguments(load_config().train, run_id="x", resume=False)
    from workloads.training.train import parse_args

    parsed = parse_args(args)
    assert parsed.backbone == "mobilenet_v3_large" and parsed.augment == "true" and parsed.run_id == "x"


def test_dataset_upload_relocates_and_skips_unchanged(aws, synthetic_split: Path) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    manifest = SplitManifest.load(synthetic_split / "data" / "split.json")
    lines: list[str] = []
    prefix = s3_exchange.dataset_prefix(manifest)
    key = s3_exchange.upload_dataset(
        s3, manifest, bucket=BUCKET, prefix=prefix, remote_root=Path("/data"), progress=lines.append
    )
    remote = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert remote["dataset_root"] == "/data/dataset"
    assert len(remote["files"]) == len(manifest.files)
    first = manifest.files[0]
    rel = remote["files"][0]["path"]
    head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/dataset/{rel}")
    assert head["Metadata"]["sha256"] == first.sha256
    assert lines == [
        f"dataset: {len(manifest.files)} of {len(manifest.files)} images uploaded to s3://{BUCKET}/{prefix}/"
    ]
    s3_exchange.upload_dataset(
        s3, manifest, bucket=BUCKET, prefix=prefix, remote_root=Path("/data"), progress=lines.append
    )
    assert lines[-1].startswith(f"dataset: 0 of {len(manifest.files)} images uploaded")


def test_train_on_dl1_end_to_end_with_moto(aws, synthetic_split: Path, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    (artifacts / "data").mkdir(parents=True)
    (artifacts / "data" / "split.json").write_bytes((synthetic_split / "data" / "split.json").read_bytes())
    config = load_config(
        {"artifacts_dir": str(artifacts), "images": {"dl1_bucket": BUCKET, "dl1_poll_seconds": 0.01}}
    )
    s3, ec2 = aws.client("s3"), aws.client("ec2")
    s3.create_bucket(Bucket=BUCKET)
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        InstanceType="dl1.24xlarge",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "bone-marrow-dl1"}]}
        ],
    )["Instances"][0]["InstanceId"]
    # What the instance leaves in S3 after training (moto runs no shell).
    for name, body in (
        ("model_card.json", "{}"),
        ("saved_model/saved_model.pb", "pb"),
        ("metrics.json", "{}"),
    ):
        s3.put_object(Bucket=BUCKET, Key=f"runs/dl1-run/{name}", Body=body.encode())
    lines: list[str] = []
    run_dir = train_on_dl1(
        config, run_id="dl1-run", session=aws, progress=lines.append, sleep=lambda _s: None
    )
    assert run_dir == artifacts / "runs" / "dl1-run"
    assert (run_dir / "saved_model" / "saved_model.pb").read_text() == "pb"
    (command,) = aws.client("ssm").list_commands()["Commands"]
    assert command["InstanceIds"] == [instance] and command["DocumentName"] == "AWS-RunShellScript"
    sent = command["Parameters"]["commands"]
    account = aws.client("sts").get_caller_identity()["Account"]
    assert f"{account}.dkr.ecr.us-east-1.amazonaws.com/bone-marrow/train:0.1.0" in sent[-1]
    assert any(line.startswith("dl1: command ") and instance in line for line in lines)
    with pytest.raises(TrainingError, match="exists; choose another --run-id"):
        train_on_dl1(config, run_id="dl1-run", session=aws, progress=lines.append)


def test_incomplete_remote_run_leaves_nothing(aws, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="runs/r/checkpoints/head-backup/x", Body=b"x")
    with pytest.raises(TrainingError, match="holds no complete run"):
        s3_exchange.download_run(s3, bucket=BUCKET, prefix="runs/r", target=tmp_path / "runs" / "r")
    assert not (tmp_path / "runs" / "r").exists() and list((tmp_path / "runs").iterdir()) == []


class ScriptedSsm:
    """The two SSM calls stream_command makes, answering a scripted sequence of invocation states."""

    def __init__(self, states: list[dict]) -> None:
        self.states = states
        self.cancelled = False

    def get_command_invocation(self, *, CommandId: str, InstanceId: str) -> dict:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if state == "missing":
            raise ClientError(
                {"Error": {"Code": "InvocationDoesNotExist", "Message": ""}}, "GetCommandInvocation"
            )
        return state

    def cancel_command(self, *, CommandId: str, InstanceIds: list[str]) -> None:
        self.cancelled = True


def test_progress_is_streamed_once_per_line() -> None:
    ssm = ScriptedSsm(
        [
            "missing",
            {"Status": "InProgress", "StandardOutputContent": "epoch 1\n"},
            {"Status": "InProgress", "StandardOutputContent": "epoch 1\nepoch 2\n"},
            {"Status": "Success", "StandardOutputContent": "epoch 1\nepoch 2\ndone\n"},
        ]
    )
    lines: list[str] = []
    stream_command(
        ssm,
        command_id="c",
        instance_id="i",
        timeout_s=60,
        poll_s=1,
        progress=lines.append,
        sleep=lambda _s: None,
    )
    assert lines == ["dl1: epoch 1", "dl1: epoch 2", "dl1: done"]


def test_failure_and_timeout_are_one_line() -> None:
    failed = ScriptedSsm(
        [{"Status": "Failed", "StandardErrorContent": "trace\nRuntimeError: no HPU found\n"}]
    )
    with pytest.raises(TrainingError, match=r"^training on i ended failed: RuntimeError: no HPU found$"):
        stream_command(failed, command_id="c", instance_id="i", timeout_s=60, poll_s=1, progress=print)
    now = [0.0]
    stuck = ScriptedSsm([{"Status": "InProgress", "StandardOutputContent": ""}])

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TrainingError, match="did not finish within 1 h; cancelled"):
        stream_command(
            stuck, command_id="c", instance_id="i", timeout_s=3600, poll_s=600, progress=print,
            clock=lambda: now[0], sleep=sleep,
        )  # fmt: skip
    assert stuck.cancelled


def test_without_credentials_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_split: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = load_config(
        {
            "artifacts_dir": str(synthetic_split),
            "images": {"dl1_bucket": BUCKET, "dl1_instance_id": "i-0123456789abcdef0"},
        }
    )
    with pytest.raises(TrainingError, match=r"^DL1 training: no AWS credentials found \(set AWS_PROFILE"):
        train_on_dl1(config, run_id="x", progress=lambda _l: None)
    with pytest.raises(TrainingError, match=r"images\.dl1_bucket is empty"):
        train_on_dl1(load_config({"artifacts_dir": str(synthetic_split)}), run_id="x")
