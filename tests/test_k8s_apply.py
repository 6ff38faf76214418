"""Applying rendered manifests against a fake API server that rejects what a real one would."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from contracts.config import load_config
from contracts.errors import DeployError
from workloads.k8s.apply import apply_manifests, delete_manifests, rollout_state, wait_for_job
from workloads.k8s.cluster_api import DynamicClusterApi
from workloads.k8s.endpoints import load_endpoints, record_endpoints
from workloads.k8s.model_source import S3ModelSource
from workloads.k8s.render import render_serving
from workloads.k8s.validate import validate_document

SOURCE = S3ModelSource(bucket="bm-models", prefix="models", region="us-east-1", service_account="ovms-s3")
CLUSTER_SCOPED = {"Namespace"}


class FakeApi:
    """An API server in memory: strict field validation (the real one rejects unknown fields with
    fieldValidation=Strict), 404 for objects in a missing namespace, immutable Deployment selectors,
    server-side apply that bumps generation only when the spec changes, and Deployments whose
    status catches up after ``rollout_polls`` reads (or never, for ``stuck``)."""

    def __init__(self, *, rollout_polls: int = 2, stuck: frozenset[str] = frozenset()) -> None:
        self.objects: dict[tuple[str, str, str | None], dict[str, Any]] = {}
        self.rollout_polls = rollout_polls
        self.stuck = stuck
        self.polls: dict[str, int] = {}
        self.applied: list[str] = []

    def _key(self, kind: str, name: str, namespace: str | None) -> tuple[str, str, str | None]:
        return (kind, name, None if kind in CLUSTER_SCOPED else namespace)

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        validate_document(document, version="1.31", source="fake-api")
        kind, meta = document["kind"], document["metadata"]
        namespace = meta.get("namespace")
        if kind not in CLUSTER_SCOPED and ("Namespace", namespace, None) not in self.objects:
            raise DeployError(
                f'applying {kind}/{meta["name"]} failed (404): namespaces "{namespace}" not found'
            )
        key = self._key(kind, meta["name"], namespace)
        old = self.objects.get(key)
        stored = copy.deepcopy(document)
        generation = 1
        if old is not None:
            generation = old["metadata"]["generation"]
            if kind == "Deployment" and old["spec"]["selector"] != document["spec"]["selector"]:
                raise DeployError(
                    f"applying Deployment/{meta['name']} failed (422): spec.selector is immutable"
                )
            if json.dumps(old.get("spec"), sort_keys=True) != json.dumps(
                document.get("spec"), sort_keys=True
            ):
                generation += 1
                self.polls[meta["name"]] = 0
            stored["status"] = old.get("status", {})
        stored["metadata"]["generation"] = generation
        self.objects[key] = stored
        self.applied.append(f"{kind}/{meta['name']}")
        return copy.deepcopy(stored)

    def get(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        obj = self.objects.get(self._key(kind, name, namespace))
        if obj is None:
            return None
        if kind == "Deployment" and name not in self.stuck:
            self.polls[name] = self.polls.get(name, 0) + 1
            if self.polls[name] >= self.rollout_polls:
                wanted = obj["spec"].get("replicas", 1)
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": wanted,
                    "updatedReplicas": wanted,
                    "availableReplicas": wanted,
                    "readyReplicas": wanted,
                }
        return copy.deepcopy(obj)

    def delete(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        return self.objects.pop(self._key(kind, name, namespace), None) is not None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def manifests(tmp_path: Path) -> list[Path]:
    return render_serving(load_config(), target="aws", model_source=SOURCE, out_dir=tmp_path / "k8s")


def _apply(paths: list[Path], api: FakeApi, clock: Clock, lines: list[str], timeout: float = 600) -> None:
    apply_manifests(
        paths,
        kubeconfig=Path("unused"),
        api=api,
        clock=clock,
        sleep=clock.sleep,
        progress=lines.append,
        wait_timeout_s=timeout,
    )


def test_apply_waits_for_rollouts_and_is_idempotent(manifests: list[Path]) -> None:
    api, clock, lines = FakeApi(), Clock(), []
    # Namespace last on the command line: apply still creates it first.
    _apply(list(reversed(manifests)), api, clock, lines)
    assert api.applied[0] == "Namespace/bone-marrow"
    assert "rolled out Deployment/ovms-c5: 1/1 updated, 1 available" in lines
    assert "rolled out Deployment/ovms-c6i: 1/1 updated, 1 available" in lines
    generations = {k: v["metadata"]["generation"] for k, v in api.objects.items()}
    count = len(api.objects)
    _apply(manifests, api, clock, [])
    assert len(api.objects) == count
    assert {k: v["metadata"]["generation"] for k, v in api.objects.items()} == generations


def test_each_pools_config_is_applied_before_the_deployment_that_mounts_it(manifests: list[Path]) -> None:
    api, clock = FakeApi(), Clock()
    _apply(manifests, api, clock, [])
    for pool in ("c5", "c6i", "c7i"):
        assert api.applied.index(f"ConfigMap/ovms-config-{pool}") < api.applied.index(
            f"Deployment/ovms-{pool}"
        )
        deployment = api.objects[("Deployment", f"ovms-{pool}", "bone-marrow")]
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "config", "configMap": {"name": f"ovms-config-{pool}"}} in volumes
    # The namespace-wide ovms-config of earlier deploys is rendered and mounted nowhere: left over,
    # it is unused, and `down` deleting the Namespace removes it.
    assert "ConfigMap/ovms-config" not in api.applied


def test_fake_rejects_like_the_api(manifests: list[Path], tmp_path: Path) -> None:
    api = FakeApi()
    pool_file = next(p for p in manifests if p.name == "10-ovms-c5.yaml")
    with pytest.raises(DeployError, match=r'\(404\): namespaces "bone-marrow" not found'):
        _apply([pool_file], api, Clock(), [])
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: bone-marrow}\n"
        "data: {a: b}\nbogus: 1\n"
    )
    with pytest.raises(DeployError, match="ConfigMap/x is invalid"):
        _apply([bad], api, Clock(), [])


def test_rollout_timeout_is_one_clear_line(manifests: list[Path]) -> None:
    api = FakeApi(stuck=frozenset({"ovms-c6i"}))
    with pytest.raises(DeployError, match=r"^Deployment ovms-c6i did not roll out within 60 s \(0/1 updated"):
        _apply(manifests, api, Clock(), [], timeout=60)


def test_rollout_state_reads_status_like_kubectl() -> None:
    deployment = {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {}}
    assert rollout_state(deployment) == (False, "0/2 updated, 0 available")
    deployment["status"] = {
        "observedGeneration": 1,
        "updatedReplicas": 2,
        "availableReplicas": 2,
        "replicas": 2,
    }
    assert rollout_state(deployment)[0] is False  # the controller has not seen generation 2
    deployment["status"]["observedGeneration"] = 2
    assert rollout_state(deployment)[0] is True
    deployment["status"]["replicas"] = 3  # an old pod still around
    assert rollout_state(deployment)[0] is False
    deployment["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    assert "deadline exceeded" in rollout_state(deployment)[1]


def test_delete_is_reverse_order_and_tolerates_absence(manifests: list[Path]) -> None:
    api, lines = FakeApi(), []
    _apply(manifests, api, Clock(), [])
    delete_manifests(manifests, kubeconfig=Path("unused"), api=api, progress=lines.append)
    assert api.objects == {}
    assert lines[-1] == "deleted: Namespace/bone-marrow"
    delete_manifests(manifests, kubeconfig=Path("unused"), api=api, progress=lines.append)
    assert lines[-1] == "already absent: Namespace/bone-marrow"


def test_wait_for_job() -> None:
    api, clock = FakeApi(), Clock()
    api.objects[("Job", "bench-c5", "ns")] = {"metadata": {"name": "bench-c5"}, "status": {"failed": 1}}
    with pytest.raises(DeployError, match="Job bench-c5 failed"):
        wait_for_job(api, name="bench-c5", namespace="ns", timeout_s=10, clock=clock, sleep=clock.sleep)
    api.objects[("Job", "bench-c5", "ns")]["status"] = {"active": 1}
    with pytest.raises(DeployError, match="did not finish within 10 s"):
        wait_for_job(api, name="bench-c5", namespace="ns", timeout_s=10, clock=clock, sleep=clock.sleep)
    api.objects[("Job", "bench-c5", "ns")]["status"] = {"succeeded": 1}
    wait_for_job(api, name="bench-c5", namespace="ns", timeout_s=10, progress=lambda _l: None)


def test_real_client_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"kubeconfig .* not found"):
        DynamicClusterApi(kubeconfig=tmp_path / "missing")
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(DeployError, match="is unusable"):
        DynamicClusterApi(kubeconfig=broken)
    # A reachable-looking but closed endpoint: the discovery call fails, reported in one line.
    closed = tmp_path / "closed"
    closed.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    with pytest.raises(DeployError) as info:
        DynamicClusterApi(kubeconfig=closed)
    assert "\n" not in str(info.value) and "cannot reach the Kubernetes API" in str(info.value)


def test_endpoints_round_trip(tmp_path: Path) -> None:
    config = load_config({"artifacts_dir": str(tmp_path)})
    endpoints = {"c5": {"rest": "http://10.0.0.5:8000", "grpc": "10.0.0.5:9000"}}
    path = record_endpoints(config, target="aws", endpoints=endpoints)
    assert path == tmp_path / "deploy" / "aws" / "endpoints.json"
    assert load_endpoints(config, target="aws") == endpoints
    with pytest.raises(DeployError, match="grpc endpoint must be host:port"):
        record_endpoints(config, target="aws", endpoints={"c5": {"rest": "http://h:1", "grpc": "http://h:2"}})
    with pytest.raises(DeployError, match=r"no endpoints recorded for vsphere"):
        load_endpoints(config, target="vsphere")
