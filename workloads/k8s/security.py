"""The Pod Security `restricted` settings every container and pod here carries."""

from __future__ import annotations

from typing import Any


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


def namespace_labels(version: str) -> dict[str, str]:
    labels = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels[f"pod-security.kubernetes.io/{mode}-version"] = f"v{version}"
    return labels
