"""`invoke train --target dl1`: the SSM command and its heartbeat, the S3 exchange, the instance's
start and SSM wait (moto server; SSM's agent status from a fake), streaming and clear failures."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto_aws import MotoSession, moto_session  # noqa: F401 (fixture)

from contracts.aws_names import DL1_HEARTBEAT_METRIC, DL1_HEARTBEAT_NAMESPACE
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
    assert lines[:2] == ["#!/bin/bash", "set -euo pipefail"]  # bash, not the agent's sh
    assert "aws s3 sync s3://bone-marrow-training/datasets/abc/ /opt/bmc/r1/data/ --only-show-errors" in lines
    trap = [line for line in lines if line.startswith("trap ")][-1]
    assert "s3://bone-marrow-training/runs/r1/" in trap and trap.endswith(" EXIT")
    assert 'kill "$heartbeat"' in trap, "the upload trap replaces the heartbeat's: it must stop it too"
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


class AgentSsm:
    """moto's SSM (which has no DescribeInstanceInformation) with the agent status ``statuses`` says,
    one per call (the last one repeats); "" is an instance not registered yet."""

    def __init__(self, real: Any, statuses: tuple[str, ...] = ("Online",)) -> None:
        self.real = real
        self.statuses = list(statuses)
        self.asked = 0

    def describe_instance_information(self, *, Filters: list[dict]) -> dict:
        ((instance_id,),) = [f["Values"] for f in Filters if f["Key"] == "InstanceIds"]
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        self.asked += 1
        found = [{"InstanceId": instance_id, "PingStatus": status}] if status else []
        return {"InstanceInformationList": found}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _dl1_session(moto_session: MotoSession, **overrides: Any) -> MotoSession:  # noqa: F811
    return MotoSession(moto_session.url, region="us-east-1", overrides={"ssm": AgentSsm, **overrides})


def _dl1_instance(session: MotoSession, *, tag: str = "bone-marrow-dl1") -> str:
    ec2 = session.client("ec2")
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        InstanceType="dl1.24xlarge",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": tag}]}],
    )["Instances"][0]["InstanceId"]


def _state(session: MotoSession, instance_id: str) -> str:
    (reservation,) = session.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def test_train_on_dl1_end_to_end_with_moto(
    moto_session: MotoSession,  # noqa: F811
    synthetic_split: Path,
    tmp_path: Path,
) -> None:
    aws = _dl1_session(moto_session)
    artifacts = tmp_path / "artifacts"
    # The data folder as a whole: the manifest records its dataset relative to itself.
    shutil.copytree(synthetic_split / "data", artifacts / "data")
    config = load_config(
        {"artifacts_dir": str(artifacts), "images": {"dl1_bucket": BUCKET, "dl1_poll_seconds": 0.01}}
    )
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    instance = _dl1_instance(aws)
    # The idle alarm stopped it since the last training.
    aws.client("ec2").stop_instances(InstanceIds=[instance])
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
    assert _state(aws, instance) == "running"
    assert f"dl1: starting {instance} (it was stopped)" in lines
    assert run_dir == artifacts / "runs" / "dl1-run"
    assert (run_dir / "saved_model" / "saved_model.pb").read_text() == "pb"
    (command,) = aws.client("ssm").list_commands()["Commands"]
    assert command["InstanceIds"] == [instance] and command["DocumentName"] == "AWS-RunShellScript"
    sent = command["Parameters"]["commands"]
    account = aws.client("sts").get_caller_identity()["Account"]
    assert f"{account}.dkr.ecr.us-east-1.amazonaws.com/bone-marrow/train:0.1.0" in sent[-1]
    assert any(f"--dimensions InstanceId={instance}" in line for line in sent), "no heartbeat for it"
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


FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $1" in
  "docker run") echo "$PPID" > "$CALLS.script-pid"; echo "docker training started" >> "$CALLS"
                sleep "$TRAINING_SECONDS"
                echo "docker training ended" >> "$CALLS"; exit "$TRAINING_EXIT";;
  "aws ecr") echo password;;
  "docker login") cat > /dev/null;;
esac
"""


@pytest.fixture
def run_script(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, Path]]]:
    """Starts the SSM script with every command it runs on the instance faked on PATH (recording);
    whatever of it is left (a heartbeat that escaped) is killed with its process group at the end."""
    started: list[subprocess.Popen] = []

    def run(lines: list[str], *, exit_code: int) -> tuple[subprocess.Popen, Path]:
        process, calls = _run_script(tmp_path, lines, exit_code=exit_code)
        started.append(process)
        return process, calls

    yield run
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _run_script(tmp_path: Path, lines: list[str], *, exit_code: int) -> tuple[subprocess.Popen, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("aws", "docker", "mkdir", "chown"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "script.sh"
    script.write_text("\n".join(lines) + "\n")
    calls = tmp_path / "calls.log"
    calls.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "TRAINING_SECONDS": "1.5",
        "TRAINING_EXIT": str(exit_code),
    }
    script.chmod(0o700)
    # As the SSM agent runs it: `sh -c <file>`, so the file's first line picks the shell.
    return subprocess.Popen(["sh", "-c", str(script)], env=env, start_new_session=True), calls


def _heartbeats(calls: Path) -> list[str]:
    return [line for line in calls.read_text().splitlines() if line.startswith("aws cloudwatch ")]


@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_script_publishes_a_heartbeat_while_training_and_stops_it_after(
    run_script: Callable, exit_code: int
) -> None:
    config = load_config({"aws": {"region": "eu-west-1", "availability_zones": ["eu-west-1a", "eu-west-1b"]}})
    lines = remote_script(config, RUN, resume=False, heartbeat_s=0.1)
    process, calls = run_script(lines, exit_code=exit_code)
    assert process.wait(timeout=30) == exit_code
    log = calls.read_text().splitlines()
    started, ended = log.index("docker training started"), log.index("docker training ended")
    during = [line for line in log[started:ended] if line.startswith("aws cloudwatch ")]
    assert len(during) >= 2, log
    assert shlex.split(during[0]) == [
        "aws", "cloudwatch", "put-metric-data", "--region", "eu-west-1",
        "--namespace", DL1_HEARTBEAT_NAMESPACE, "--metric-name", DL1_HEARTBEAT_METRIC,
        "--dimensions", f"InstanceId={RUN.instance_id}", "--value", "1", "--unit", "Count",
    ]  # fmt: skip
    # The run directory still goes back to S3, after training, however it ended.
    assert any(line.startswith("aws s3 sync /opt/bmc/r1/runs/r1/ ") for line in log[ended:])
    time.sleep(0.5)  # a publish already under way may still land
    count = len(_heartbeats(calls))
    time.sleep(0.6)
    assert len(_heartbeats(calls)) == count, "the heartbeat outlived the training command"


def test_the_heartbeat_stops_when_the_script_is_killed_without_its_traps(run_script: Callable) -> None:
    lines = remote_script(load_config(), RUN, resume=False, heartbeat_s=0.1)
    process, calls = run_script(lines, exit_code=0)
    deadline = time.monotonic() + 10
    while "docker training started" not in calls.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    # What a cancelled or timed-out SSM command may do to the script: no EXIT trap runs.
    os.kill(int(Path(f"{calls}.script-pid").read_text()), signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(0.8)  # the loop notices its shell is gone within one interval
    count = len(_heartbeats(calls))
    assert count >= 1
    time.sleep(0.6)
    assert len(_heartbeats(calls)) == count, "the heartbeat outlived its shell"


class StoppingEc2:
    """moto's EC2 (whose stop is instant) reporting "stopping" for the first ``stopping`` looks;
    starting it then is refused, as EC2 refuses it."""

    def __init__(self, real: Any, stopping: int = 2) -> None:
        self.real = real
        self.stopping = stopping
        self.started_while_stopping = False

    def describe_instances(self, **kwargs: Any) -> dict:
        response = self.real.describe_instances(**kwargs)
        if "InstanceIds" in kwargs and self.stopping:
            self.stopping -= 1
            for reservation in response["Reservations"]:
                for instance in reservation["Instances"]:
                    instance["State"] = {"Code": 64, "Name": "stopping"}
        return response

    def start_instances(self, **kwargs: Any) -> dict:
        if self.stopping:
            self.started_while_stopping = True
        return self.real.start_instances(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_stopping_instance_is_started_once_it_has_stopped(moto_session: MotoSession) -> None:  # noqa: F811
    from workloads.training.dl1_instance import prepare_instance

    aws = _dl1_session(moto_session)
    ec2 = StoppingEc2(aws.client("ec2"))
    instance = _dl1_instance(aws)
    ec2.real.stop_instances(InstanceIds=[instance])
    lines: list[str] = []
    ssm = AgentSsm(None, statuses=("", "ConnectionLost", "Online"))
    found = prepare_instance(load_config(), ec2=ec2, ssm=ssm, progress=lines.append, sleep=lambda _s: None)
    assert found == instance and _state(aws, instance) == "running"
    assert not ec2.started_while_stopping
    assert lines == [
        f"dl1: {instance} is stopping; waiting for it to stop before it is started again",
        f"dl1: starting {instance} (it was stopped)",
        f"dl1: {instance} is running",
        f"dl1: waiting for {instance} to come online in SSM (not registered yet)",
        f"dl1: waiting for {instance} to come online in SSM (ConnectionLost)",
        f"dl1: {instance} is online in SSM",
    ]


def test_finding_the_instance_fails_in_one_line(moto_session: MotoSession) -> None:  # noqa: F811
    from workloads.training.dl1_instance import find_instance

    aws = _dl1_session(moto_session)
    ec2 = aws.client("ec2")
    config = load_config()
    _dl1_instance(aws, tag="someone-else-dl1")
    with pytest.raises(TrainingError, match=r"^no instance is tagged Name=bone-marrow-dl1; deploy it"):
        find_instance(config, ec2)
    first = _dl1_instance(aws)
    ec2.terminate_instances(InstanceIds=[first])
    with pytest.raises(
        TrainingError, match=rf"^the instance tagged Name=bone-marrow-dl1 \({first}\) is terminated"
    ):
        find_instance(config, ec2)
    second, third = _dl1_instance(aws), _dl1_instance(aws)
    ec2.stop_instances(InstanceIds=[third])
    with pytest.raises(
        TrainingError, match=r"^2 instances are tagged Name=bone-marrow-dl1 .*images\.dl1_instance_id"
    ):
        find_instance(config, ec2)
    ec2.terminate_instances(InstanceIds=[second])
    assert find_instance(config, ec2) == third  # stopped counts: it can be started


def test_an_instance_that_never_comes_online_is_one_line_after_a_bounded_wait() -> None:
    from workloads.training.dl1_instance import wait_until_online

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    lines: list[str] = []
    ssm = AgentSsm(None, statuses=("",))
    with pytest.raises(TrainingError, match=r"^instance i-1 is running but not online in SSM after 10 min"):
        wait_until_online(ssm, "i-1", poll_s=15, progress=lines.append, clock=lambda: now[0], sleep=sleep)
    assert now[0] == 600 and ssm.asked == 41
    assert lines == ["dl1: waiting for i-1 to come online in SSM (not registered yet)"]


class PendingEc2:
    """An instance that never finishes booting."""

    def describe_instances(self, **_kwargs: Any) -> dict:
        return {"Reservations": [{"Instances": [{"InstanceId": "i-1", "State": {"Name": "pending"}}]}]}


def test_starting_is_bounded_and_a_terminated_instance_is_one_line(
    moto_session: MotoSession,  # noqa: F811
) -> None:
    from workloads.training.dl1_instance import ensure_running, prepare_instance

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    lines: list[str] = []
    with pytest.raises(
        TrainingError, match=r"^instance i-1 did not reach running within 15 min \(it is pending\)$"
    ):
        ensure_running(
            PendingEc2(), "i-1", poll_s=30, progress=lines.append, clock=lambda: now[0], sleep=sleep
        )
    assert lines == ["dl1: i-1 is pending; waiting for it to boot"]
    aws = _dl1_session(moto_session)
    instance = _dl1_instance(aws)
    aws.client("ec2").terminate_instances(InstanceIds=[instance])
    config = load_config({"images": {"dl1_instance_id": instance}})
    with pytest.raises(TrainingError, match=rf"^instance {instance} is terminated; deploy it"):
        prepare_instance(config, ec2=aws.client("ec2"), ssm=AgentSsm(None), progress=print, sleep=sleep)
