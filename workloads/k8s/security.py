"""The Pod Security `restricted` settings every container and pod here carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def guaranteed(cpus: int, memory_mib: int) -> dict[str, Any]:
    """requests == limits with whole CPUs: Guaranteed QoS, so the static CPU manager pins cores."""
    amount = {"cpu": str(cpus), "memory": f"{memory_mib}Mi"}
    return {"requests": dict(amount), "limits": dict(amount)}


def qos_class(pod_spec: Mapping[str, Any]) -> str:
    """The QoS class Kubernetes gives the pod (its GetPodQOS rule, init containers included).

    Guaranteed: every container limits cpu and memory, and its requests (defaulted to the
    limits) equal them. BestEffort: no container requests or limits either. Else Burstable.
    """
    guaranteed, best_effort = True, True
    for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = {**limits, **(resources.get("requests") or {})}
        for name in ("cpu", "memory"):
            if parse_quantity(str(requests.get(name, 0))) or parse_quantity(str(limits.get(name, 0))):
                best_effort = False
            if name not in limits or parse_quantity(str(requests[name])) != parse_quantity(str(limits[name])):
                guaranteed = False
    if best_effort:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pinned_by_static_cpu_manager(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """Whether kubelet's static CPU manager gives ``container`` exclusive cores: a Guaranteed pod
    and a whole number of CPUs requested."""
    resources = container.get("resources") or {}
    requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    cpu = parse_quantity(str(requests.get("cpu", 0)))
    return qos_class(pod_spec) == "Guaranteed" and cpu > 0 and cpu == int(cpu)


def namespace_labels(version: str) -> dict[str, str]:
    labels = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels[f"pod-security.kubernetes.io/{mode}-version"] = f"v{version}"
    return labels
