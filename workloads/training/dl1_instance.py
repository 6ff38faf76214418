"""The DL1 instance before a training: found by the training stack's tag, started, online in SSM.

The idle alarm stops the instance, so a training usually finds it stopped (or still stopping).
Every wait is bounded and prints what it waits for; every dead end is one TrainingError line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from contracts.aws_names import DL1_TAG_KEY, dl1_tag_value
from contracts.config import ToolkitConfig
from contracts.errors import TrainingError
from workloads.progress import Progress, print_progress

# What a start can pass through: a stopped instance boots in minutes, a stopping one first stops.
LIVE_STATES = ("pending", "running", "stopping", "stopped")
GONE_STATES = ("shutting-down", "terminated")
START_TIMEOUT_S = 15 * 60
# After "running": the OS boots and the SSM agent registers.
ONLINE_TIMEOUT_S = 10 * 60
REDEPLOY_HINT = "deploy it (`invoke up --target aws`) or set images.dl1_instance_id"


def _instance_ids(ec2: Any, filters: list[dict]) -> list[str]:
    # One page: without MaxResults EC2 returns every match, and a tag names one or a few.
    return [
        instance["InstanceId"]
        for reservation in ec2.describe_instances(Filters=filters)["Reservations"]
        for instance in reservation["Instances"]
    ]


def find_instance(config: ToolkitConfig, ec2: Any) -> str:
    """The configured instance, or the one instance with the training stack's tag that can run."""
    if config.images.dl1_instance_id:
        return config.images.dl1_instance_id
    value = dl1_tag_value(config.aws.resource_prefix)
    tag = {"Name": f"tag:{DL1_TAG_KEY}", "Values": [value]}
    found = _instance_ids(ec2, [tag, {"Name": "instance-state-name", "Values": list(LIVE_STATES)}])
    if len(found) == 1:
        return found[0]
    if found:
        raise TrainingError(
            f"{len(found)} instances are tagged {DL1_TAG_KEY}={value} ({', '.join(sorted(found))}); "
            "set images.dl1_instance_id to the one to train on"
        )
    gone = _instance_ids(ec2, [tag, {"Name": "instance-state-name", "Values": list(GONE_STATES)}])
    if gone:
        raise TrainingError(
            f"the instance tagged {DL1_TAG_KEY}={value} ({', '.join(sorted(gone))}) is terminated; "
            f"{REDEPLOY_HINT}"
        )
    raise TrainingError(f"no instance is tagged {DL1_TAG_KEY}={value}; {REDEPLOY_HINT}")


def _state(ec2: Any, instance_id: str) -> str:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    states = [i["State"]["Name"] for r in reservations for i in r["Instances"]]
    if not states:
        raise TrainingError(f"instance {instance_id} does not exist; {REDEPLOY_HINT}")
    return states[0]


def ensure_running(
    ec2: Any,
    instance_id: str,
    *,
    poll_s: float,
    timeout_s: float = START_TIMEOUT_S,
    progress: Progress = print_progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Start the instance if it is stopped (after it has finished stopping) and wait until it runs."""
    deadline = clock() + timeout_s
    last = ""
    while True:
        state = _state(ec2, instance_id)
        if state == "running":
            if last:
                progress(f"dl1: {instance_id} is running")
            return
        if state in GONE_STATES:
            raise TrainingError(f"instance {instance_id} is {state}; {REDEPLOY_HINT}")
        if state == "stopped":
            # Again if a look right after the start still says stopped (EC2 is eventually
            # consistent); starting a starting instance changes nothing.
            if last != "stopped":
                progress(f"dl1: starting {instance_id} (it was stopped)")
            ec2.start_instances(InstanceIds=[instance_id])
        elif state != last:
            waits_for = "stop before it is started again" if state == "stopping" else "boot"
            progress(f"dl1: {instance_id} is {state}; waiting for it to {waits_for}")
        last = state
        if clock() >= deadline:
            raise TrainingError(
                f"instance {instance_id} did not reach running within {timeout_s / 60:g} min (it is {state})"
            )
        sleep(poll_s)


def ssm_ping_status(ssm: Any, instance_id: str) -> str:
    """What SSM says of the instance's agent: Online, ConnectionLost, Inactive, or "" (not registered)."""
    response = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])
    found = response.get("InstanceInformationList", [])
    return found[0].get("PingStatus", "") if found else ""


def wait_until_online(
    ssm: Any,
    instance_id: str,
    *,
    poll_s: float,
    timeout_s: float = ONLINE_TIMEOUT_S,
    progress: Progress = print_progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until SSM reports the instance's agent Online (Run Command needs it)."""
    deadline = clock() + timeout_s
    last = None
    while True:
        status = ssm_ping_status(ssm, instance_id)
        if status == "Online":
            if last is not None:
                progress(f"dl1: {instance_id} is online in SSM")
            return
        if status != last:
            progress(
                f"dl1: waiting for {instance_id} to come online in SSM ({status or 'not registered yet'})"
            )
            last = status
        if clock() >= deadline:
            raise TrainingError(
                f"instance {instance_id} is running but not online in SSM after {timeout_s / 60:g} min "
                f"({status or 'never registered'}); check its SSM agent and its route to the SSM endpoints"
            )
        sleep(poll_s)


def prepare_instance(
    config: ToolkitConfig,
    *,
    ec2: Any,
    ssm: Any,
    progress: Progress = print_progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The DL1 instance to train on, running and online in SSM; returns its id."""
    instance_id = find_instance(config, ec2)
    poll_s = config.images.dl1_poll_seconds
    ensure_running(ec2, instance_id, poll_s=poll_s, progress=progress, clock=clock, sleep=sleep)
    wait_until_online(ssm, instance_id, poll_s=poll_s, progress=progress, clock=clock, sleep=sleep)
    return instance_id
