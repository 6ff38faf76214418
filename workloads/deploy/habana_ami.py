"""Which Habana Deep Learning AMI the DL1 instance boots, decided at deploy time.

The training stack takes the AMI as a CloudFormation parameter, so a synth needs no credentials and
names no guessed id. `invoke up` fills it: the id pinned in ``aws.habana_ami_ids[region]``, else the
one recorded by an earlier deploy of this region (the instance is not replaced just because a newer
AMI came out), else the newest image Amazon publishes whose name matches :data:`NAME_PATTERN` — then
recorded. Delete the record (or pin another id) to move to a newer AMI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts.errors import DeployError

# The training image is Habana's SynapseAI 1.14.0 TensorFlow container (images/train): the host
# needs the matching 1.14 driver and the habana container runtime. Amazon names these AMIs
# "Deep Learning AMI Habana TensorFlow <tf> SynapseAI <version> (<os>) <date>", e.g.
# "Deep Learning AMI Habana TensorFlow 2.8.0 SynapseAI 1.4.0 (Ubuntu 20.04) 20220425".
NAME_PATTERN = "Deep Learning AMI Habana TensorFlow * SynapseAI 1.14.* (*"
OWNER = "amazon"
ARCHITECTURE = "x86_64"


@dataclass(frozen=True)
class ResolvedAmi:
    image_id: str
    source: str  # "pinned", "recorded" or "found"
    name: str = ""


def resolve_habana_ami(
    ec2: Any,
    *,
    region: str,
    pinned: dict[str, str],
    record: Path,
    progress: Callable[[str], None] = print,
) -> ResolvedAmi:
    if region in pinned:
        return ResolvedAmi(pinned[region], "pinned")
    recorded = _read_record(record).get(region)
    if recorded:
        return ResolvedAmi(recorded["image_id"], "recorded", recorded.get("name", ""))
    found = newest_habana_ami(ec2, region=region)
    _write_record(record, {**_read_record(record), region: {"image_id": found.image_id, "name": found.name}})
    progress(f"   Habana AMI for {region}: {found.image_id} ({found.name}), recorded in {record}")
    return found


def newest_habana_ami(ec2: Any, *, region: str) -> ResolvedAmi:
    try:
        images = ec2.describe_images(
            Owners=[OWNER],
            Filters=[
                {"Name": "name", "Values": [NAME_PATTERN]},
                {"Name": "state", "Values": ["available"]},
                {"Name": "architecture", "Values": [ARCHITECTURE]},
            ],
        )["Images"]
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(
            f"cannot look up the Habana Deep Learning AMI in {region} ({type(exc).__name__}): "
            f"pin one in aws.habana_ami_ids.{region}"
        ) from None
    if not images:
        raise DeployError(
            f"no Amazon image named {NAME_PATTERN!r} in {region}: pin a Habana AMI for SynapseAI 1.14 in "
            f"aws.habana_ami_ids.{region}"
        )
    newest = max(images, key=lambda image: (image.get("CreationDate", ""), image["ImageId"]))
    return ResolvedAmi(newest["ImageId"], "found", newest.get("Name", ""))


def _read_record(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read {path} ({exc}): delete it to look the Habana AMI up again") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and str(v.get("image_id", "")).startswith("ami-") for v in data.values()
    ):
        raise DeployError(f"{path} is not a Habana AMI record: delete it to look the AMI up again")
    return data


def _write_record(path: Path, data: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
