"""The in-cluster bench Job: `invoke bench` against one pool's OVMS Service, next to it on the network."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from workloads.k8s import s3sync
from workloads.k8s.render import Cluster, cluster_pools, write_validated
from workloads.k8s.security import container_security, guaranteed, pod_security
from workloads.k8s.serving import APP, BENCH_CLIENT, INSTANCE, OVMS, PART_OF, deployment_name

ARTIFACTS = "/work/artifacts"
BENCH_UID = 10001  # USER of images/bench/Dockerfile


@dataclasses.dataclass(frozen=True)
class BenchJobSpec:
    """What one in-cluster run needs.

    ``artifacts`` is either an S3 location holding an artifacts tree (``models/`` and the split
    manifest with its test images, ``data/``), synced in, with results uploaded to
    ``results_prefix`` of the same bucket; or the name of a PersistentVolumeClaim holding that
    tree, where results land in ``bench/``.
    """

    pool: str
    image: str
    artifacts: s3sync.S3Location | str
    results_prefix: str = "bench-results"
    name: str = ""
    cpus: int = 1
    memory_mib: int = 2048
    deadline_seconds: int = 3600
    target: str | None = None  # aws or vsphere: label the result with it and print it for the toolkit

    def job_name(self) -> str:
        return self.name or f"bench-{self.pool}"


def service_endpoints(config: ToolkitConfig, pool: str) -> dict[str, str]:
    """In-cluster endpoints of a pool's OVMS Service ({"rest": URL, "grpc": host:port})."""
    host = f"{deployment_name(pool)}.{config.kubernetes.namespace}.svc.cluster.local"
    return {"rest": f"http://{host}:{config.ovms.rest_port}", "grpc": f"{host}:{config.ovms.grpc_port}"}


def bench_command(config: ToolkitConfig, pool: str, target: str | None = None) -> list[str]:
    """`invoke bench` against the pool's Service; with ``target`` (aws, vsphere) the result is labelled
    with that target and pool, and printed between marker lines for `invoke bench --in-cluster`."""
    bench = config.bench
    endpoints = service_endpoints(config, pool)
    labels = ["--target", target, "--pool", pool, "--print-result"] if target else []
    return [
        "invoke", "bench",
        "--endpoint", endpoints[bench.protocol],
        *labels,
        "--protocol", bench.protocol,
        "--precision", bench.precision,
        "--input-format", bench.input_format,
        "--batch-size", str(bench.batch_size),
        "--concurrency", str(bench.concurrency),
        "--repetitions", str(bench.repetitions),
        "--min-duration", f"{bench.min_duration_seconds:g}",
        "--artifacts-dir", ARTIFACTS,
    ]  # fmt: skip


def job_documents(config: ToolkitConfig, spec: BenchJobSpec) -> list[dict[str, Any]]:
    namespace = config.kubernetes.namespace
    name = spec.job_name()
    labels = {**PART_OF, APP: BENCH_CLIENT, INSTANCE: name}
    s3 = not isinstance(spec.artifacts, str)
    bench = {
        "name": "bench",
        "image": spec.image,
        "command": bench_command(config, spec.pool, spec.target),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS}, {"name": "tmp", "mountPath": "/tmp"}],
        "resources": guaranteed(spec.cpus, spec.memory_mib),
        "securityContext": container_security(),
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    annotations: dict[str, str] = {}
    if s3:
        source = spec.artifacts
        results = dataclasses.replace(source, prefix=spec.results_prefix)
        sync = s3sync.sync_container(
            name="inputs-sync",
            image=config.ovms.sync_image,
            source=source,
            volume="artifacts",
            mount=ARTIFACTS,
        )
        upload = s3sync.sync_container(
            name="results-upload",
            image=config.ovms.sync_image,
            source=results,
            volume="artifacts",
            mount=f"{ARTIFACTS}/bench",
            upload=True,
        )
        # Init containers run in order: inputs in, the benchmark, then the upload as the main container.
        init_containers, containers = [sync, bench], [upload]
        volumes += [{"name": "artifacts", "emptyDir": {"sizeLimit": "8Gi"}}, *s3sync.identity_volumes(source)]
        annotations = s3sync.pod_annotations(source, skip_containers=["bench"])
        service_account = source.service_account if isinstance(source, s3sync.S3ModelSource) else None
    else:
        init_containers, containers = [], [bench]
        volumes.append({"name": "artifacts", "persistentVolumeClaim": {"claimName": spec.artifacts}})
        service_account = None
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(BENCH_UID),
        "initContainers": init_containers,
        "containers": containers,
        "volumes": volumes,
        # Not on the node it measures: the client must not steal the server's CPUs.
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {
                                "matchLabels": {APP: OVMS, INSTANCE: deployment_name(spec.pool)}
                            },
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    egress: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": {APP: OVMS, INSTANCE: deployment_name(spec.pool)}}}],
            "ports": [
                {"port": config.ovms.grpc_port, "protocol": "TCP"},
                {"port": config.ovms.rest_port, "protocol": "TCP"},
            ],
        }
    ]
    if s3:
        egress += s3sync.egress_rules(spec.artifacts)
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {**meta, "name": f"{name}-egress"},
            "spec": {
                "podSelector": {"matchLabels": {INSTANCE: name}},
                "policyTypes": ["Egress"],
                "egress": egress,
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {
                # A failed benchmark is reported, not silently retried into a different measurement.
                "backoffLimit": 0,
                "activeDeadlineSeconds": spec.deadline_seconds,
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
            },
        },
    ]


def render_bench_job(config: ToolkitConfig, *, cluster: Cluster, spec: BenchJobSpec, out_dir: Path) -> Path:
    if spec.pool not in cluster_pools(config, cluster):
        known = ", ".join(sorted(cluster_pools(config, cluster)))
        raise DeployError(f"unknown pool {spec.pool!r} for {cluster}; known: {known}")
    expected = {"eks": "aws", "eksa": "vsphere"}[cluster]
    if spec.target is not None and spec.target != expected:
        raise DeployError(f"bench job target {spec.target!r} does not run on {cluster}; use {expected!r}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", spec.job_name()):
        raise DeployError(f"bench job name must be a short DNS label, got {spec.job_name()!r}")
    if isinstance(spec.artifacts, str) and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", spec.artifacts):
        raise DeployError(f"artifacts claim must be a PVC name, got {spec.artifacts!r}")
    (path,) = write_validated(
        {f"50-{spec.job_name()}.yaml": job_documents(config, spec)},
        version=config.kubernetes.version,
        out_dir=Path(out_dir),
    )
    return path
