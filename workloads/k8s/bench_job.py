"""The in-cluster bench Job: `invoke bench` against one pool's OVMS Service, next to it on the network."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from contracts.config import BENCH_POOL, ToolkitConfig, config_mapping
from contracts.errors import DeployError
from workloads.k8s import s3sync
from workloads.k8s.render import write_validated
from workloads.k8s.security import container_security, guaranteed, pod_security
from workloads.k8s.serving import APP, BENCH_CLIENT, INSTANCE, OVMS, PART_OF, deployment_name
from workloads.targets import cluster_target

ARTIFACTS = "/work/artifacts"
# Where `invoke bench` writes in the pod (config.paths.bench_results of pod_config).
RESULTS = f"{ARTIFACTS}/bench"
BENCH_CONTAINER = "bench"
UPLOAD_CONTAINER = "results-upload"
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
    manifest with its test images, ``data/``), synced in, with the results alone uploaded under
    ``results`` (``<prefix>/<target>/<pool>/<job name>/``, with its own credentials); or a
    PersistentVolumeClaim holding that tree (:class:`PvcArtifacts`), where results land in ``bench/``.
    Requests come from ``kubernetes.bench_job_cpus`` / ``bench_job_memory_mib``.
    """

    pool: str
    image: str
    artifacts: Artifacts
    results: s3sync.S3Location | None = None
    name: str = ""
    deadline_seconds: int = 3600
    target: str | None = None  # aws or vsphere: label the result with it and print it for the toolkit

    def __post_init__(self) -> None:
        if isinstance(self.artifacts, PvcArtifacts) and self.results is not None:
            raise DeployError("with the artifacts on a PVC the results stay on it: give no results location")
        if not isinstance(self.artifacts, PvcArtifacts) and self.results is None:
            raise DeployError("artifacts synced from S3 need a results location to upload the results to")

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


def results_destination(spec: BenchJobSpec, target: str) -> s3sync.S3Location:
    """Where this Job's results go: ``<results prefix>/<target>/<pool>/<job name>``."""
    assert spec.results is not None
    prefix = "/".join(p for p in (spec.results.prefix.strip("/"), target, spec.pool, spec.job_name()) if p)
    return dataclasses.replace(spec.results, prefix=prefix)


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items in order, each once (the artifacts and results locations may share rules)."""
    kept: list[dict[str, Any]] = []
    for item in items:
        if item not in kept:
            kept.append(item)
    return kept


def job_documents(config: ToolkitConfig, spec: BenchJobSpec, *, target: str) -> list[dict[str, Any]]:
    """ServiceAccount, ConfigMap, egress NetworkPolicy and the Job benching ``spec.pool`` of ``target``.

    Containers, in order: (S3 only) init ``inputs-sync`` (aws s3 sync of the artifacts tree into the
    ``artifacts`` volume at ARTIFACTS), init ``bench`` (the benchmark; results written to RESULTS,
    its own ``results`` volume in S3 mode), then the main container ``results-upload`` (aws s3 sync
    of the ``results`` volume alone). With a PVC, ``bench`` is the only container and RESULTS lies
    on the claim.
    """
    namespace = config.kubernetes.namespace
    cluster = cluster_target(target)
    name = spec.job_name()
    labels = {**PART_OF, APP: BENCH_CLIENT, INSTANCE: name}
    config_map = f"{name}-config"
    bench_mounts: list[dict[str, Any]] = [
        {"name": "artifacts", "mountPath": ARTIFACTS},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {
            "name": "config",
            "configMap": {"name": config_map, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]},
        },
    ]
    bench: dict[str, Any] = {
        "name": BENCH_CONTAINER,
        "image": spec.image,
        "command": bench_command(config, spec.pool, spec.target),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "volumeMounts": bench_mounts,
        "resources": guaranteed(config.kubernetes.bench_job_cpus, config.kubernetes.bench_job_memory_mib),
        "securityContext": container_security(),
    }
    annotations: dict[str, str] = {}
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
        source = spec.artifacts
        results = results_destination(spec, cluster.name)
        sync = s3sync.sync_container(
            name="inputs-sync",
            image=config.ovms.sync_image,
            source=source,
            volume="artifacts",
            mount=ARTIFACTS,
        )
        upload = s3sync.sync_container(
            name=UPLOAD_CONTAINER,
            image=config.ovms.sync_image,
            source=results,
            volume="results",
            mount=RESULTS,
            upload=True,
        )
        # Mounted over <artifacts>/bench: what the bench writes there is all the upload sees, and
        # a bench/ folder synced in with the artifacts tree is neither read nor uploaded again.
        bench_mounts.insert(1, {"name": "results", "mountPath": RESULTS})
        # Init containers run in order: inputs in, the benchmark, then the upload as the main container.
        init_containers, containers = [sync, bench], [upload]
        volumes += [
            {"name": "artifacts", "emptyDir": {"sizeLimit": "8Gi"}},
            {"name": "results", "emptyDir": {"sizeLimit": "256Mi"}},
            *_unique([*s3sync.identity_volumes(source), *s3sync.identity_volumes(results)]),
        ]
        annotations = {
            **s3sync.pod_annotations(source, skip_containers=[BENCH_CONTAINER]),
            **s3sync.pod_annotations(results, skip_containers=[BENCH_CONTAINER]),
        }
        egress += _unique([*s3sync.egress_rules(source), *s3sync.egress_rules(results)])
    else:
        init_containers, containers = [], [bench]
        volumes.append({"name": "artifacts", "persistentVolumeClaim": {"claimName": spec.artifacts.claim}})
    taint = config.kubernetes.bench_taint()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # One identity for the pod (Pod Identity / IRSA bind a service account): read the artifacts,
        # write the results; the bench container itself gets no AWS credentials.
        "serviceAccountName": config.kubernetes.bench_service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(BENCH_UID),
        # The load generator runs on its own pool, never on a node it measures: the client must not
        # take the server's CPUs. Only this Job tolerates the pool's taint.
        "nodeSelector": config.kubernetes.bench_pool_labels(cluster.bench_pool(config)),
        "tolerations": [
            {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}
        ],
        "initContainers": init_containers,
        "containers": containers,
        "volumes": volumes,
    }
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": config.kubernetes.bench_service_account,
                "namespace": namespace,
                "labels": PART_OF,
            },
            "automountServiceAccountToken": False,
        },
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


def check_fits(config: ToolkitConfig, *, target: str, job: dict[str, Any]) -> None:
    """DeployError unless the Job's pod fits one bench-pool node beside its kube-system pods."""
    from workloads.k8s.capacity import fits, pod_requests

    cluster = cluster_target(target)
    node = cluster.node_allocatable(config, BENCH_POOL, cluster.bench_pool(config))
    wanted = pod_requests(job["spec"]["template"]["spec"])
    if not fits(wanted, node):
        free = node.free
        raise DeployError(
            f"the bench Job requests {wanted.cpu_millicores}m CPU / {wanted.memory_mib}Mi, but a "
            f"{node.instance_type} node of the {target} bench pool has {free.cpu_millicores}m / "
            f"{free.memory_mib}Mi beside kube-system: lower kubernetes.bench_job_cpus / "
            "bench_job_memory_mib or give the bench pool a larger machine"
        )


def render_bench_job(config: ToolkitConfig, *, target: str, spec: BenchJobSpec, out_dir: Path) -> Path:
    """Write the Job that benches ``spec.pool`` of cluster ``target`` (validated, fit-checked)."""
    cluster = cluster_target(target)
    pools = cluster.pools(config)
    if spec.pool not in pools:
        raise DeployError(f"unknown pool {spec.pool!r} for {cluster.name}; known: {', '.join(pools)}")
    if spec.target not in (None, cluster.name):
        raise DeployError(f"bench job target {spec.target!r} does not run on {cluster.name}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", spec.job_name()):
        raise DeployError(f"bench job name must be a short DNS label, got {spec.job_name()!r}")
    documents = job_documents(config, spec, target=cluster.name)
    check_fits(config, target=cluster.name, job=documents[-1])
    (path,) = write_validated(
        {f"50-{spec.job_name()}.yaml": documents},
        version=config.kubernetes.version,
        out_dir=Path(out_dir),
    )
    return path
