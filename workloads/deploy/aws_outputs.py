"""The stack outputs `cdk deploy --outputs-file` writes, read back into one typed record."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.aws_names import (
    BUCKET_KINDS,
    CLUSTER_ENDPOINT,
    CLUSTER_NAME,
    DL1_INSTANCE_ID,
    MODEL_SYNC_ROLE_ARN,
    REPOSITORY_KINDS,
    StackNames,
    bucket_output,
    nodegroup_output,
    repository_output,
)
from contracts.errors import DeployError

Outputs = dict[str, dict[str, str]]  # stack name -> output key -> value


@dataclass(frozen=True)
class DataOutputs:
    """What the data stack holds (and `down` keeps)."""

    buckets: dict[str, str]  # datasets/models/results -> bucket name
    repositories: dict[str, str]  # train/ovms/bench -> repository URI
    model_sync_role_arn: str


@dataclass(frozen=True)
class DeployedOutputs:
    data: DataOutputs
    cluster_name: str
    cluster_endpoint: str
    nodegroups: dict[str, str]  # pool -> node group name
    dl1_instance_id: str


def load_outputs_file(path: Path) -> Outputs:
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"no stack outputs at {path}: run `invoke up --target aws` first") from None
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read stack outputs {path}: {exc}") from None
    if not isinstance(outputs, dict) or not all(isinstance(v, dict) for v in outputs.values()):
        raise DeployError(f"{path} is not a CDK outputs file (stack -> outputs)")
    return outputs


def outputs_from_cloudformation(cloudformation: Any, stack_names: Iterable[str]) -> Outputs:
    """The same shape from CloudFormation itself (for `down` on a machine without the file)."""
    outputs: Outputs = {}
    for name in stack_names:
        try:
            (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except cloudformation.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                continue
            raise
        outputs[name] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs


def data_outputs(outputs: Outputs, names: StackNames) -> DataOutputs:
    return DataOutputs(
        buckets={kind: _get(outputs, names.data, bucket_output(kind)) for kind in BUCKET_KINDS},
        repositories={kind: _get(outputs, names.data, repository_output(kind)) for kind in REPOSITORY_KINDS},
        model_sync_role_arn=_get(outputs, names.data, MODEL_SYNC_ROLE_ARN),
    )


def deployed_outputs(outputs: Outputs, names: StackNames, pools: Iterable[str]) -> DeployedOutputs:
    return DeployedOutputs(
        data=data_outputs(outputs, names),
        cluster_name=_get(outputs, names.cluster, CLUSTER_NAME),
        cluster_endpoint=_get(outputs, names.cluster, CLUSTER_ENDPOINT),
        nodegroups={pool: _get(outputs, names.cluster, nodegroup_output(pool)) for pool in pools},
        dl1_instance_id=_get(outputs, names.training, DL1_INSTANCE_ID),
    )


def stack_output(outputs: Outputs, stack: str, key: str) -> str:
    """One output's value; a one-line DeployError when the deployment lacks it."""
    return _get(outputs, stack, key)


def _get(outputs: Outputs, stack: str, key: str) -> str:
    try:
        # Typed as str, but the outputs come from a JSON file or the CloudFormation API: checked below.
        value: object = outputs[stack][key]
    except KeyError:
        raise DeployError(
            f"stack outputs lack {stack}.{key}: the deployment is incomplete; run `invoke up --target aws`"
        ) from None
    if not isinstance(value, str) or not value:
        raise DeployError(f"stack output {stack}.{key} is empty")
    return value
