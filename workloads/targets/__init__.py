"""Deploy and training targets: one registry of what each target is, instead of branches on its name.

Deploy targets (`invoke up/down/bench/k8s.render/images.* --target`): ``local``, ``aws``,
``vsphere``; training targets (`invoke train --target`): ``local``, ``dl1``.
"""

from workloads.targets.base import ClusterTarget, DeployTarget, ModelRequest, UpRequest
from workloads.targets.registry import (
    DEPLOY_TARGETS,
    UnknownTargetError,
    cluster_target,
    cluster_targets,
    deploy_target,
    describe,
    either,
    target_names,
)
from workloads.targets.training import TRAINING_TARGETS, TrainingTarget, training_target

__all__ = [
    "DEPLOY_TARGETS",
    "TRAINING_TARGETS",
    "ClusterTarget",
    "DeployTarget",
    "ModelRequest",
    "TrainingTarget",
    "UnknownTargetError",
    "UpRequest",
    "cluster_target",
    "cluster_targets",
    "deploy_target",
    "describe",
    "either",
    "target_names",
    "training_target",
]
