"""Where `invoke train --target` runs: this machine, or the AWS DL1 instance's Gaudi cards."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType

from contracts.config import ToolkitConfig
from contracts.errors import ConfigError
from workloads.targets.registry import UnknownTargetError, either


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingTarget(ABC):
    name: str
    summary: str  # for --help

    def check(self, *, device: str | None, resume: bool, run_id: str | None) -> None:  # noqa: B027
        """ConfigError when the flags do not fit this target (before anything runs); any fit by default."""

    @abstractmethod
    def train(self, config: ToolkitConfig, *, run_id: str | None, resume: bool) -> object: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalTraining(TrainingTarget):
    name: str = "local"
    summary: str = "this machine"

    def train(self, config: ToolkitConfig, *, run_id: str | None, resume: bool) -> object:
        from workloads.training.train import run_training

        return run_training(config, run_id=run_id, resume=resume)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dl1Training(TrainingTarget):
    name: str = "dl1"
    summary: str = "the AWS DL1 instance's 8 Gaudi cards, through SSM"

    def check(self, *, device: str | None, resume: bool, run_id: str | None) -> None:
        if device not in (None, "hpu"):
            raise ConfigError(f"--target {self.name} trains on Gaudi (hpu); drop --device {device}")
        # The run directory lives on S3 under its id: without one there is nothing to continue.
        if resume and not run_id:
            raise ConfigError(f"--target {self.name} --resume needs the --run-id of the run to continue")

    def train(self, config: ToolkitConfig, *, run_id: str | None, resume: bool) -> object:
        from workloads.training.remote import train_on_dl1
        from workloads.training.train import new_run_id

        return train_on_dl1(config, run_id=run_id or new_run_id(), resume=resume)


TRAINING_TARGETS: Mapping[str, TrainingTarget] = MappingProxyType(
    {target.name: target for target in (LocalTraining(), Dl1Training())}
)


def training_target(name: str) -> TrainingTarget:
    try:
        return TRAINING_TARGETS[name]
    except KeyError:
        choices = either(TRAINING_TARGETS)
        raise UnknownTargetError(f"unknown training target {name!r}; choose {choices}") from None
