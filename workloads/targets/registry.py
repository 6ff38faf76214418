"""The registered deploy targets, looked up by name; an unknown name is a one-line error listing them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Protocol, TypeVar

from contracts.errors import ConfigError
from workloads.targets.aws import AwsTarget
from workloads.targets.base import ClusterTarget, DeployTarget
from workloads.targets.local import LocalTarget
from workloads.targets.vsphere import VsphereTarget

DEPLOY_TARGETS: Mapping[str, DeployTarget] = MappingProxyType(
    {target.name: target for target in (LocalTarget(), AwsTarget(), VsphereTarget())}
)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


class UnknownTargetError(ConfigError):
    """A target name that is not registered."""


def either(names: Iterable[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def target_names(where: Callable[[DeployTarget], bool] = lambda _target: True) -> tuple[str, ...]:
    return tuple(name for name, target in DEPLOY_TARGETS.items() if where(target))


def cluster_targets() -> tuple[ClusterTarget, ...]:
    return tuple(target for target in DEPLOY_TARGETS.values() if isinstance(target, ClusterTarget))


def deploy_target(name: str) -> DeployTarget:
    try:
        return DEPLOY_TARGETS[name]
    except KeyError:
        raise UnknownTargetError(f"unknown target {name!r}; available: {', '.join(DEPLOY_TARGETS)}") from None


def cluster_target(name: str) -> ClusterTarget:
    """A target that runs Kubernetes (manifests, kubeconfig, images, in-cluster bench)."""
    target = DEPLOY_TARGETS.get(name)
    if not isinstance(target, ClusterTarget):
        choices = either(t.name for t in cluster_targets())
        raise UnknownTargetError(f"unknown target {name!r}; choose {choices}")
    return target


def describe(targets: Iterable[T], summary: Callable[[T], str]) -> str:
    """'local (…), aws (…) or vsphere (…)' for --help; a target without a summary is named alone."""
    return either(f"{t.name} ({summary(t)})" if summary(t) else t.name for t in targets)
