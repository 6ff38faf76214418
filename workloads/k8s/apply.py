"""Apply rendered manifests (server-side apply, idempotent), wait for rollouts, or delete them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from contracts.errors import DeployError
from workloads.k8s.cluster_api import ClusterApi, DynamicClusterApi
from workloads.progress import Progress, print_progress

POLL_SECONDS = 5.0


def read_documents(paths: list[Path]) -> list[dict[str, Any]]:
    documents = []
    for path in paths:
        try:
            loaded = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d is not None]
        except OSError as exc:
            raise DeployError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise DeployError(f"manifest {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        for document in loaded:
            if not isinstance(document, dict) or not {"apiVersion", "kind"} <= document.keys():
                raise DeployError(f"manifest {path} holds a document without apiVersion and kind")
            if not (document.get("metadata") or {}).get("name"):
                raise DeployError(f"manifest {path} holds a {document['kind']} without metadata.name")
            documents.append(document)
    if not documents:
        raise DeployError("no manifests to apply")
    # Namespaces first: everything else lives in one.
    return sorted(documents, key=lambda d: d["kind"] != "Namespace")


def _key(document: dict[str, Any]) -> dict[str, Any]:
    meta = document["metadata"]
    return {
        "api_version": document["apiVersion"],
        "kind": document["kind"],
        "name": meta["name"],
        "namespace": meta.get("namespace"),
    }


def rollout_state(deployment: dict[str, Any]) -> tuple[bool, str]:
    """(complete, description) of a Deployment, as `kubectl rollout status` judges it."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    wanted = spec.get("replicas", 1)
    observed = status.get("observedGeneration") or 0
    updated = status.get("updatedReplicas") or 0
    available = status.get("availableReplicas") or 0
    total = status.get("replicas") or 0
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {condition.get('message', '')}".strip()
    text = f"{updated}/{wanted} updated, {available} available"
    complete = observed >= generation and updated >= wanted and available >= wanted and total <= updated
    return complete, text


def apply_manifests(
    paths: list[Path],
    *,
    kubeconfig: Path,
    context: str | None = None,
    wait_timeout_s: float = 600,
    progress: Progress = print_progress,
    api: ClusterApi | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Server-side apply every document (force, one field manager), then wait for Deployments to roll out."""
    documents = read_documents(paths)
    api = api or DynamicClusterApi(kubeconfig=kubeconfig, context=context)
    deployments = []
    for document in documents:
        applied = api.apply(document)
        progress(f"applied {document['kind']}/{document['metadata']['name']}")
        if document["kind"] == "Deployment":
            deployments.append((document, applied))
    deadline = clock() + wait_timeout_s
    for document, _applied in deployments:
        name = document["metadata"]["name"]
        while True:
            current = api.get(**_key(document))
            if current is None:
                raise DeployError(f"Deployment {name} disappeared while waiting for its rollout")
            complete, text = rollout_state(current)
            if complete:
                progress(f"rolled out Deployment/{name}: {text}")
                break
            if "deadline exceeded" in text or clock() >= deadline:
                raise DeployError(
                    f"Deployment {name} did not roll out within {wait_timeout_s:g} s ({text}); "
                    f"see `kubectl -n {document['metadata'].get('namespace')} describe deployment {name}`"
                )
            sleep(POLL_SECONDS)


def delete_manifests(
    paths: list[Path],
    *,
    kubeconfig: Path,
    context: str | None = None,
    progress: Progress = print_progress,
    api: ClusterApi | None = None,
) -> None:
    """Delete every document, namespaced objects before their Namespace; absent ones are fine."""
    documents = list(reversed(read_documents(paths)))
    api = api or DynamicClusterApi(kubeconfig=kubeconfig, context=context)
    for document in documents:
        deleted = api.delete(**_key(document))
        state = "deleted" if deleted else "already absent"
        progress(f"{state}: {document['kind']}/{document['metadata']['name']}")


def wait_for_job(
    api: ClusterApi,
    *,
    name: str,
    namespace: str,
    timeout_s: float,
    progress: Progress = print_progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until a Job (the in-cluster bench) succeeds; a failure or timeout is a DeployError."""
    deadline = clock() + timeout_s
    while True:
        job = api.get(api_version="batch/v1", kind="Job", name=name, namespace=namespace)
        if job is None:
            raise DeployError(f"Job {name} not found in namespace {namespace}")
        status = job.get("status") or {}
        if status.get("succeeded"):
            progress(f"Job/{name} succeeded")
            return
        if status.get("failed"):
            raise DeployError(
                f"Job {name} failed; see `kubectl -n {namespace} logs job/{name} --all-containers`"
            )
        if clock() >= deadline:
            raise DeployError(f"Job {name} did not finish within {timeout_s:g} s")
        sleep(POLL_SECONDS)
