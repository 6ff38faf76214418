"""`invoke train --target dl1`: the same training on the DL1 instance's 8 Gaudi cards, through SSM.

No SSH and no open ports: the command goes through SSM Run Command, once the instance is running
and online in SSM (started if the idle stop stopped it: workloads.training.dl1_instance). While
it runs it publishes the heartbeat that keeps the idle stop away. On the instance it syncs the
dataset from S3, runs the training image with the Habana runtime (one process per card under
mpirun), and syncs the run directory back to S3, also when training fails (checkpoints, for
--resume). Here, progress is streamed by polling the command's output; the finished run is
downloaded into <artifacts>/runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.aws_names import DL1_HEARTBEAT_METRIC, DL1_HEARTBEAT_NAMESPACE, RUNS_PREFIX
from contracts.config import ToolkitConfig, TrainConfig
from contracts.errors import TrainingError
from contracts.run_directory import RunDirectory
from workloads.containers.build import image_tags
from workloads.data.manifest import SplitManifest
from workloads.progress import Progress, print_progress
from workloads.training import s3_exchange

# find_instance is re-exported: the contract test asks this module what `train` looks up.
from workloads.training.dl1_instance import find_instance as find_instance
from workloads.training.dl1_instance import prepare_instance

HOST_ROOT = "/opt/bmc"
CONTAINER_DATA = Path("/data")
CONTAINER_RUNS = "/runs"
TRAIN_UID = 10001  # USER of images/train/Dockerfile
DONE = {"Success"}
FAILED = {"Failed", "Cancelled", "TimedOut", "Cancelling"}
# SSM returns at most this much of stdout inline; the rest is in the S3 output.
INLINE_OUTPUT_LIMIT = 24000
CREDENTIALS_HINT = "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
# mpirun's per-rank core binding, Habana's recipe: --bind-to core --map-by socket:PE=<cores per
# rank>, PE = vCPUs / ranks / 2 (physical cores per rank with hyper-threading; 6 on a
# dl1.24xlarge's 96 vCPUs for 8 cards). The script computes it on the instance into $pe.
MAP_BY = "socket:PE=${pe}"
# The heartbeat that keeps the idle stop away while the command runs (one sample a minute; the
# alarm looks at 5-minute periods).
HEARTBEAT_SECONDS = 60.0


@dataclass(frozen=True)
class RemoteRun:
    instance_id: str
    bucket: str
    run_id: str
    image: str
    dataset_prefix: str

    @property
    def runs_prefix(self) -> str:
        return f"{RUNS_PREFIX}/{self.run_id}"


def train_arguments(train: TrainConfig, *, run_id: str, resume: bool) -> list[str]:
    """The module's flags: every train setting, the remote manifest and runs folder, HPU forced."""
    args = ["--manifest", f"{CONTAINER_DATA}/{s3_exchange.MANIFEST_KEY}", "--runs-dir", CONTAINER_RUNS]
    args += ["--run-id", run_id]
    for field in dataclasses.fields(TrainConfig):
        value = "hpu" if field.name == "device" else getattr(train, field.name)
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += [f"--{field.name.replace('_', '-')}", str(value)]
    if resume:
        args.append("--resume")
    return args


def heartbeat_loop(*, region: str, instance_id: str, interval_s: float) -> str:
    """A background loop publishing the training heartbeat until killed or its shell ($$) is gone.

    The parent check covers what a trap cannot: SSM killing the script on a cancel or timeout. A
    failed publish is skipped (the next one may succeed); the loop's output goes nowhere, so it
    never holds the command's output open.
    """
    q = shlex.quote
    put = (
        f"aws cloudwatch put-metric-data --region {q(region)} --namespace {q(DL1_HEARTBEAT_NAMESPACE)} "
        f"--metric-name {q(DL1_HEARTBEAT_METRIC)} --dimensions InstanceId={q(instance_id)} "
        "--value 1 --unit Count"
    )
    return f"( while kill -0 $$ 2>/dev/null; do {put} || true; sleep {interval_s:g}; done ) >/dev/null 2>&1 &"


def remote_script(
    config: ToolkitConfig, run: RemoteRun, *, resume: bool, heartbeat_s: float = HEARTBEAT_SECONDS
) -> list[str]:
    """The shell lines SSM runs as root on the instance (AWS-RunShellScript)."""
    cards = config.images.dl1_cards
    work = f"{HOST_ROOT}/{run.run_id}"
    s3_data = f"s3://{run.bucket}/{run.dataset_prefix}/"
    s3_run = f"s3://{run.bucket}/{run.runs_prefix}/"
    registry = run.image.split("/", 1)[0]
    train = [
        "python3",
        "-m",
        "workloads.training.train",
        *train_arguments(config.train, run_id=run.run_id, resume=resume),
    ]
    if cards > 1:
        # One process per Gaudi card; workloads.training.devices derives TF_CONFIG from Open MPI's
        # rank (ports train.worker_port + rank) and Habana gives each rank the card of its local rank.
        binding = ["--bind-to", "core", "--map-by", MAP_BY, "--rank-by", "core", "--report-bindings"]
        train = ["mpirun", "-np", str(cards), *binding, *train]
    docker = [
        "docker", "run", "--rm", "--runtime=habana",
        "-e", "HABANA_VISIBLE_DEVICES=all",
        "-e", "OMPI_MCA_btl_vader_single_copy_mechanism=none",
        "--cap-add=sys_nice", "--ipc=host", "--net=host",
        "-v", f"{work}/data:{CONTAINER_DATA}:ro",
        "-v", f"{work}/runs:{CONTAINER_RUNS}",
        "--entrypoint", train[0], run.image, *train[1:],
    ]  # fmt: skip
    q = shlex.quote
    stop_heartbeat = 'kill "$heartbeat" 2>/dev/null || true'
    upload = f"aws s3 sync {work}/runs/{run.run_id}/ {s3_run} --only-show-errors"
    lines = [
        # The agent runs the file with `sh -c <file>`: without this line, /bin/sh (dash on the
        # Ubuntu-based Habana AMI, which knows no pipefail) would read it.
        "#!/bin/bash",
        "set -euo pipefail",
        # First thing, so that the whole command (dataset sync and image pull too) counts as busy.
        heartbeat_loop(region=config.aws.region, instance_id=run.instance_id, interval_s=heartbeat_s),
        "heartbeat=$!",
        f"trap {q(stop_heartbeat)} EXIT",
        f"mkdir -p {q(work)}/data {q(work)}/runs/{q(run.run_id)}",
        f"aws s3 sync {q(s3_data)} {q(work)}/data/ --only-show-errors",
    ]
    if resume:
        lines.append(f"aws s3 sync {q(s3_run)} {q(work)}/runs/{q(run.run_id)}/ --only-show-errors")
    lines += [
        f"chown -R {TRAIN_UID}:{TRAIN_UID} {q(work)}/runs",
        # Whatever happens, the heartbeat stops and the run directory (with its checkpoints) goes back
        # to S3 (this trap replaces the first one).
        f"trap {q(f'{stop_heartbeat}; {upload}')} EXIT",
    ]
    if ".dkr.ecr." in registry:
        region = registry.split(".dkr.ecr.")[1].split(".")[0]
        login = f"docker login --username AWS --password-stdin {q(registry)}"
        lines.append(f"aws ecr get-login-password --region {q(region)} | {login}")
    lines.append(f"docker pull --quiet {q(run.image)}")
    if cards > 1:
        lines.append(f'pe=$(( $(nproc) / {cards} / 2 )); [ "$pe" -ge 1 ] || pe=1')
    # $pe is the one word the shell must expand; everything else is quoted.
    lines.append(" ".join(f'"{MAP_BY}"' if arg == MAP_BY else q(arg) for arg in docker))
    return lines


@contextlib.contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    """Turn botocore errors into one-line TrainingErrors."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        raise TrainingError(f"{action}: no AWS credentials found ({CREDENTIALS_HINT})") from None
    except NoRegionError:
        raise TrainingError(f"{action}: no AWS region (set aws.region)") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise TrainingError(f"{action}: {error.get('Code', '')} {error.get('Message', '')}".strip()) from None
    except BotoCoreError as exc:
        raise TrainingError(f"{action}: {exc}") from None


def training_image(config: ToolkitConfig, sts: Any) -> str:
    registry = config.images.registry
    if not registry:
        account = sts.get_caller_identity()["Account"]
        registry = f"{account}.dkr.ecr.{config.aws.region}.amazonaws.com"
    return image_tags(config, registry=registry, name="train")[0]


def stream_command(
    ssm: Any,
    *,
    command_id: str,
    instance_id: str,
    timeout_s: float,
    poll_s: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll the SSM command, printing new output lines, until it ends; failures are one line."""
    from botocore.exceptions import ClientError

    printed = 0
    deadline = clock() + timeout_s
    while True:
        try:
            invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as exc:
            # Right after send_command the invocation may not exist yet.
            if exc.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
                raise
            invocation = {"Status": "Pending", "StandardOutputContent": ""}
        output = invocation.get("StandardOutputContent") or ""
        if len(output) > printed:
            for line in output[printed:].splitlines():
                progress(f"dl1: {line}")
            printed = len(output)
        status = invocation["Status"]
        if status in DONE:
            return
        if status in FAILED:
            detail = (invocation.get("StandardErrorContent") or "").strip().splitlines()
            last = detail[-1] if detail else "no error output"
            raise TrainingError(f"training on {instance_id} ended {status.lower()}: {last}")
        if clock() >= deadline:
            ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
            raise TrainingError(
                f"training on {instance_id} did not finish within {timeout_s / 3600:g} h; cancelled"
            )
        sleep(poll_s)


def train_on_dl1(
    config: ToolkitConfig,
    *,
    run_id: str,
    resume: bool = False,
    session: Any | None = None,
    progress: Progress = print_progress,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Run training on the DL1 instance and download the finished run; returns its local directory."""
    import boto3

    images = config.images
    if not images.dl1_bucket:
        raise TrainingError("images.dl1_bucket is empty: set it to the training bucket of the AWS deployment")
    manifest = SplitManifest.load(config.paths.split_manifest)
    target = RunDirectory.of(config.paths.runs, run_id).path
    if target.exists():
        raise TrainingError(f"run directory {target} exists; choose another --run-id")
    with _aws_errors("DL1 training"):
        session = session or boto3.session.Session(region_name=config.aws.region)
        s3, ssm = session.client("s3"), session.client("ssm")
        instance_id = prepare_instance(
            config, ec2=session.client("ec2"), ssm=ssm, progress=progress, sleep=sleep
        )
        run = RemoteRun(
            instance_id=instance_id,
            bucket=images.dl1_bucket,
            run_id=run_id,
            image=training_image(config, session.client("sts")),
            dataset_prefix=s3_exchange.dataset_prefix(manifest),
        )
        s3_exchange.upload_dataset(
            s3,
            manifest,
            bucket=run.bucket,
            prefix=run.dataset_prefix,
            remote_root=CONTAINER_DATA,
            progress=progress,
        )
        timeout_s = images.dl1_timeout_hours * 3600
        response = ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Comment=f"bone-marrow training run {run_id}"[:100],
            Parameters={
                "commands": remote_script(config, run, resume=resume),
                "executionTimeout": [str(int(timeout_s))],
            },
            OutputS3BucketName=run.bucket,
            OutputS3KeyPrefix=f"{run.runs_prefix}-ssm-output",
            TimeoutSeconds=600,
        )
        command_id = response["Command"]["CommandId"]
        progress(
            f"dl1: command {command_id} sent to {instance_id} "
            f"({images.dl1_cards} Gaudi cards, image {run.image})"
        )
        stream_command(
            ssm,
            command_id=command_id,
            instance_id=instance_id,
            timeout_s=timeout_s,
            poll_s=images.dl1_poll_seconds,
            progress=progress,
            sleep=sleep,
        )
        return s3_exchange.download_run(
            s3, bucket=run.bucket, prefix=run.runs_prefix, target=target, progress=progress
        )
