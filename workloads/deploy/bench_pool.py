"""The load-generator pool (contracts.config.BENCH_POOL): scaled up for `invoke bench --in-cluster`, then
back to its min_size, so it costs nothing while no benchmark runs.

EKS: the managed node group's desired size (``eks.update_nodegroup_config``), waited on until the
group is ACTIVE again. EKS Anywhere: the ``count`` of the worker group in the cluster's own
``Cluster`` object, which the EKS Anywhere controller reconciles into machines. Either way the bench
Job is applied only once a Ready node carrying the pool's labels exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from contracts.config import NodePoolConfig
from contracts.errors import DeployError
from workloads.progress import Progress

POLL_SECONDS = 10.0
# A managed node group's update, and a node from zero (EC2 boot, or a vSphere clone and join).
NODEGROUP_TIMEOUT_S = 900.0
NODE_READY_TIMEOUT_S = 1200.0
EKSA_API_VERSION = "anywhere.eks.amazonaws.com/v1alpha1"
EKSA_NAMESPACE = "default"


class NodeApi(Protocol):
    def list(
        self, *, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]: ...


class ClusterObjectApi(Protocol):
    def get(
        self, *, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None: ...

    def replace(self, document: dict[str, Any]) -> dict[str, Any]: ...


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def is_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not (node.get("spec") or {}).get("unschedulable", False)


def wait_for_ready_node(
    api: NodeApi,
    *,
    labels: Mapping[str, str],
    progress: Progress,
    timeout_s: float = NODE_READY_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The name of a Ready, schedulable node carrying ``labels``; one-line DeployError after ``timeout_s``."""
    selector = label_selector(labels)
    deadline = clock() + timeout_s
    seen = -1
    while True:
        nodes = api.list(api_version="v1", kind="Node", namespace=None, label_selector=selector)
        ready = sorted(n["metadata"]["name"] for n in nodes if is_ready(n))
        if ready:
            progress(f"bench node {ready[0]} is Ready")
            return ready[0]
        if len(nodes) != seen:
            seen = len(nodes)
            progress(f"waiting for a Ready node labelled {selector} ({seen} joined, none Ready yet)")
        if clock() >= deadline:
            raise DeployError(
                f"no Ready node labelled {selector} after {timeout_s:.0f} s; "
                "check the bench node group / worker group and its instance capacity"
            )
        sleep(POLL_SECONDS)


def _aws_error(action: str, exc: Exception) -> DeployError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {' '.join(str(error.get('Message', '')).split())}"
    else:
        detail = " ".join(str(exc).split()) or type(exc).__name__
    return DeployError(f"{action} failed ({detail})")


def scale_nodegroup(
    eks: Any,
    *,
    cluster: str,
    nodegroup: str,
    nodes: int,
    pool: NodePoolConfig,
    progress: Progress,
    timeout_s: float = NODEGROUP_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Set the EKS managed node group's desired size to ``nodes`` and wait until the group is ACTIVE."""
    from botocore.exceptions import BotoCoreError, ClientError

    action = f"scaling node group {nodegroup} of {cluster} to {nodes}"
    if not pool.min_size <= nodes <= pool.max_size:
        raise DeployError(f"{action}: outside its sizes {pool.min_size}..{pool.max_size}")
    try:
        current = eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"]
        if current.get("scalingConfig", {}).get("desiredSize") != nodes:
            progress(f"== {action}")
            eks.update_nodegroup_config(
                clusterName=cluster,
                nodegroupName=nodegroup,
                scalingConfig={"minSize": pool.min_size, "maxSize": pool.max_size, "desiredSize": nodes},
            )
        deadline = clock() + timeout_s
        while True:
            group = eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"]
            status, desired = group.get("status"), group.get("scalingConfig", {}).get("desiredSize")
            if status == "ACTIVE" and desired == nodes:
                return
            if status in ("DEGRADED", "CREATE_FAILED", "DELETE_FAILED", "DELETING"):
                issues = "; ".join(i.get("message", "") for i in group.get("health", {}).get("issues", []))
                raise DeployError(
                    f"{action}: the node group is {status}" + (f" ({issues})" if issues else "")
                )
            if clock() >= deadline:
                raise DeployError(f"{action}: still {status} after {timeout_s:.0f} s")
            sleep(POLL_SECONDS)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(action, exc) from None


def scale_worker_group(
    api: ClusterObjectApi, *, cluster_name: str, group: str, nodes: int, progress: Progress
) -> None:
    """Set ``count`` of worker group ``group`` in the EKS Anywhere ``Cluster`` object (reconciled by its
    controller); the other groups and fields are sent back as read, under the read resourceVersion."""
    action = f"scaling worker group {group} of EKS Anywhere cluster {cluster_name} to {nodes}"
    cluster = api.get(
        api_version=EKSA_API_VERSION, kind="Cluster", name=cluster_name, namespace=EKSA_NAMESPACE
    )
    if cluster is None:
        raise DeployError(f"{action}: no Cluster {EKSA_NAMESPACE}/{cluster_name} in the cluster")
    groups = (cluster.get("spec") or {}).get("workerNodeGroupConfigurations") or []
    matching = [g for g in groups if g.get("name") == group]
    if not matching:
        names = ", ".join(str(g.get("name")) for g in groups) or "none"
        raise DeployError(
            f"{action}: the Cluster has no worker group {group!r} (has: {names}); run `invoke up`"
        )
    if matching[0].get("count") == nodes:
        return
    progress(f"== {action}")
    matching[0]["count"] = nodes
    cluster.pop("status", None)
    api.replace(cluster)
