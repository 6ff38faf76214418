"""Whether pods fit a pool's nodes beside kube-system, and the rollout strategy that then completes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from contracts.config import NodePoolConfig, Resources, ToolkitConfig
from contracts.errors import DeployError

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class NodeAllocatable:
    """One node of a pool: what kubelet offers pods, and what kube-system pods take of it."""

    pool: str
    instance_type: str
    allocatable: Resources
    system_pods: Resources

    @property
    def free(self) -> Resources:
        """What is left for workload pods on the node."""
        return Resources(
            cpu_millicores=self.allocatable.cpu_millicores - self.system_pods.cpu_millicores,
            memory_mib=self.allocatable.memory_mib - self.system_pods.memory_mib,
        )


def total(amounts: Iterable[Resources]) -> Resources:
    amounts = list(amounts)
    return Resources(
        cpu_millicores=sum(a.cpu_millicores for a in amounts), memory_mib=sum(a.memory_mib for a in amounts)
    )


def fits(requests: Resources, node: NodeAllocatable, *, count: int = 1) -> bool:
    """Whether ``count`` pods each requesting ``requests`` fit on ``node`` beside its kube-system pods."""
    return pods_per_node(requests, node) >= count


def pods_per_node(requests: Resources, node: NodeAllocatable) -> int:
    """How many such pods one node holds beside its kube-system pods (0: not even one).

    Whole-CPU pods fitting by millicores also fit the static CPU manager's exclusive cores: it
    keeps the reserved CPU rounded up to whole cores, and free <= allocatable.
    """
    free = node.free
    if free.cpu_millicores < 0 or free.memory_mib < 0:
        return 0
    counts = []
    if requests.cpu_millicores:
        counts.append(free.cpu_millicores // requests.cpu_millicores)
    if requests.memory_mib:
        counts.append(free.memory_mib // requests.memory_mib)
    if not counts:
        raise DeployError("a pod that requests no CPU and no memory has no capacity to check")
    return min(counts)


def container_requests(container: Mapping[str, Any]) -> Resources:
    """A container's requests (its limits where a request is not given, as the API server defaults)."""
    resources = container.get("resources") or {}
    amounts = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    cpu = parse_quantity(str(amounts.get("cpu", 0))) * 1000
    memory = parse_quantity(str(amounts.get("memory", 0))) / MIB
    return Resources(cpu_millicores=int(-(-cpu // 1)), memory_mib=int(-(-memory // 1)))


def pod_requests(pod_spec: Mapping[str, Any]) -> Resources:
    """What the scheduler reserves for a pod: per resource, the larger of its containers' sum and
    its largest init container (init containers run one at a time, before the others)."""
    running = total(container_requests(c) for c in pod_spec.get("containers", []))
    inits = [container_requests(c) for c in pod_spec.get("initContainers", [])]
    return Resources(
        cpu_millicores=max([running.cpu_millicores, *(i.cpu_millicores for i in inits)]),
        memory_mib=max([running.memory_mib, *(i.memory_mib for i in inits)]),
    )


@dataclasses.dataclass(frozen=True)
class Rollout:
    """A Deployment's rollingUpdate: surge only where a surge pod has somewhere to run."""

    max_surge: int
    max_unavailable: int

    def strategy(self) -> dict[str, Any]:
        return {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": self.max_surge, "maxUnavailable": self.max_unavailable},
        }


def plan_rollout(*, replicas: int, peak_replicas: int, nodes: int, per_node: int) -> Rollout:
    """The strategy that completes with ``nodes`` nodes holding ``per_node`` pods each.

    ``peak_replicas``: the most replicas that may run (an autoscaler's maximum), which the spare
    room must hold beside. With spare slots the rollout surges into them and keeps every replica
    serving; without, a surge pod would stay Pending forever, so one old pod goes first.
    A DeployError when the replicas do not fit at all.
    """
    slots = nodes * per_node
    if replicas > slots:
        raise DeployError(f"{replicas} replica(s) do not fit: {nodes} node(s) hold {per_node} pod(s) each")
    spare = slots - max(replicas, peak_replicas)
    if spare >= 1:
        return Rollout(max_surge=min(spare, replicas), max_unavailable=0)
    return Rollout(max_surge=0, max_unavailable=1)


def pool_node(config: ToolkitConfig, target: str, pool: str, node_pool: NodePoolConfig) -> NodeAllocatable:
    """``node_allocatable`` of cluster ``target`` (the registry's lookup for its pool)."""
    from workloads.targets import cluster_target

    return cluster_target(target).node_allocatable(config, pool, node_pool)
