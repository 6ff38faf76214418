"""The in-cluster bench Job: `invoke bench` against one pool's OVMS Service, next to it on the network."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from contracts.aws_names import BENCH_RESULTS_PREFIX
from contracts.config import ToolkitConfig, config_mapping
from contracts.errors import DeployError
from workloads.k8s import s3sync
from workloads.k8s.model_source import S3ModelSource
from workloads.k8s.render import write_validated
from workloads.k8s.security import container_security, guaranteed, pod_security
from workloads.k8s.serving import APP, BENCH_CLIENT, INSTANCE, OVMS, PART_OF, deployment_name
from workloads.targets import cluster_target

ARTIFACTS = "/work/artifacts"
# The resolved configuration, mounted from the Job's ConfigMap (applied before the Job).
CONFIG_DIR = "/etc/bmc"
CONFIG_FILE = "invoke.yaml"
BENCH_UID = 10001  # USER of images/bench/Dockerfile


@dataclasses.dataclass(frozen=True)
class PvcArtifacts:
    """A PersistentVolumeClaim holding the artifacts tree; the Job's results land in its ``bench/``."""

    claim: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", self.claim):
            raise DeployError(f"artifacts claim must be a PVC name, got {self.claim!r}")


Artifacts = s3sync.S3Location | PvcArtifacts


@dataclasses.dataclass(frozen=True)
class BenchJobSpec:
    """What one in-cluster run needs.

    ``artifacts`` is either an S3 location holding an artifacts tree (``models/`` and the split
    manifest with its test images, ``data/``), synced in, with results uploaded to
    ``results_prefix`` of the same bucket; or a PersistentVolumeClaim holding that tree
    (:class:`PvcArtifacts`), where results land in ``bench/``.
    """

    pool: str
    image: str
    artifacts: Artifacts
    results_prefix: str = BENCH_RESULTS_PREFIX
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


def pod_config(config: ToolkitConfig) -> ToolkitConfig:
    """The configuration the bench pod runs with: this one, the artifacts tree where the pod mounts it."""
    return dataclasses.replace(config, artifacts_dir=ARTIFACTS)


def config_file_text(config: ToolkitConfig) -> str:
    """Invoke's runtime config file (``invoke --config``) holding the complete resolved configuration.

    A runtime config file outranks the image's defaults and any ``INVOKE_BMC_*`` variable, so every
    setting (optimize.model_name, bench.warmup_seconds, serving.*, …) is the one resolved here.
    """
    return yaml.safe_dump({"bmc": config_mapping(pod_config(config))}, sort_keys=True)


def bench_command(config: ToolkitConfig, pool: str, target: str | None = None) -> list[str]:
    """`invoke bench` against the pool's Service with the mounted configuration; with ``target`` (aws,
    vsphere) the result is labelled with that target and pool, and printed between marker lines for
    `invoke bench --in-cluster`. Settings travel in the config file, never as flags."""
    endpoints = service_endpoints(config, pool)
    labels = ["--target", target, "--pool", pool, "--print-result"] if target else []
    return [
        "invoke", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "bench",
        "--endpoint", endpoints[config.bench.protocol],
        *labels,
    ]  # fmt: skip


def job_documents(config: ToolkitConfig, spec: BenchJobSpec) -> list[dict[str, Any]]:
    namespace = config.kubernetes.namespace
    name = spec.job_name()
    labels = {**PART_OF, APP: BENCH_CLIENT, INSTANCE: name}
    config_map = f"{name}-config"
    bench = {
        "name": "bench",
        "image": spec.image,
        "command": bench_command(config, spec.pool, spec.target),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [
            {"name": "artifacts", "mountPath": ARTIFACTS},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
        "resources": guaranteed(spec.cpus, spec.memory_mib),
        "securityContext": container_security(),
    }
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {
            "name": "config",
            "configMap": {"name": config_map, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]},
        },
    ]
    annotations: dict[str, str] = {}
    if not isinstance(spec.artifacts, PvcArtifacts):
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
        service_account = source.service_account if isinstance(source, S3ModelSource) else None
    else:
        init_containers, containers = [], [bench]
        volumes.append({"name": "artifacts", "persistentVolumeClaim": {"claimName": spec.artifacts.claim}})
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
    if not isinstance(spec.artifacts, PvcArtifacts):
        egress += s3sync.egress_rules(spec.artifacts)
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**meta, "name": config_map},
            "data": {CONFIG_FILE: config_file_text(config)},
        },
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


def render_bench_job(config: ToolkitConfig, *, target: str, spec: BenchJobSpec, out_dir: Path) -> Path:
    """Write the Job that benches ``spec.pool`` of cluster ``target``."""
    cluster = cluster_target(target)
    pools = cluster.pools(config)
    if spec.pool not in pools:
        raise DeployError(f"unknown pool {spec.pool!r} for {cluster.name}; known: {', '.join(pools)}")
    if spec.target not in (None, cluster.name):
        raise DeployError(f"bench job target {spec.target!r} does not run on {cluster.name}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", spec.job_name()):
        raise DeployError(f"bench job name must be a short DNS label, got {spec.job_name()!r}")
    (path,) = write_validated(
        {f"50-{spec.job_name()}.yaml": job_documents(config, spec)},
        version=config.kubernetes.version,
        out_dir=Path(out_dir),
    )
    return path
