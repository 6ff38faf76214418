"""`invoke bench --target aws|vsphere --in-cluster`: the bench Job next to OVMS, its result brought back.

Render every pool's bench Job (workloads.k8s.bench_job; `--dry-run` stops here) → scale the
load-generator pool to one node and wait until it is Ready → per pool: apply the Job → wait for it →
read the bench container's log through the Kubernetes API → take the result document printed between
the marker lines (`invoke bench --print-result`) → validate it and write it under
``<artifacts>/bench/`` like a local run (JSON + CSV line), so `invoke bench.report` merges it with the
other targets → always scale the pool back to its min_size. The Job's own result storage (the S3
upload under the results identity, or the PVC) stays as an archive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from contracts.aws_names import BENCH_RESULTS_PREFIX
from contracts.config import ToolkitConfig
from contracts.errors import BenchError, DeployError, ToolkitError
from workloads.bench.result_frame import extract_result, last_line
from workloads.bench.results import write_results
from workloads.bench.serving_pools import pools_serving
from workloads.deploy.bench_pool import wait_for_ready_node
from workloads.k8s import s3sync
from workloads.k8s.apply import apply_manifests, wait_for_job
from workloads.k8s.bench_job import (
    BENCH_CONTAINER,
    Artifacts,
    BenchJobSpec,
    PvcArtifacts,
    render_bench_job,
)
from workloads.k8s.cluster_api import ClusterApi
from workloads.progress import Progress, print_progress
from workloads.targets import ClusterTarget, DeployTarget, ModelRequest, either, target_names
from workloads.targets import deploy_target as registered_target

# Room for the image pull and the inputs sync on top of the Job's own deadline.
WAIT_MARGIN_SECONDS = 300


class JobClusterApi(ClusterApi, Protocol):
    def job_log(self, *, name: str, namespace: str, container: str) -> str: ...

    def list(
        self, *, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]: ...

    def replace(self, document: dict[str, Any]) -> dict[str, Any]: ...


def in_cluster_target(target: str) -> ClusterTarget:
    """The cluster target that runs the bench Job; a one-line BenchError for any other name."""
    try:
        found: DeployTarget | None = registered_target(target)
    except ToolkitError:
        found = None
    if not isinstance(found, ClusterTarget) or not found.in_cluster_bench:
        choices = either(target_names(lambda t: t.in_cluster_bench))
        raise BenchError(f"--in-cluster needs --target {choices}, not {target!r}")
    return found


def kubeconfig_for(config: ToolkitConfig, target: str) -> Path:
    """The kubeconfig `invoke up --target <target>` wrote; a one-line error when there is none."""
    path = in_cluster_target(target).kubeconfig(config)
    if not path.is_file():
        raise BenchError(f"no kubeconfig for {target} at {path}; run `invoke up --target {target}` first")
    return path


def artifacts_source(
    config: ToolkitConfig,
    *,
    target: str,
    s3_uri: str | None = None,
    pvc: str | None = None,
    endpoint_url: str = "",
) -> Artifacts:
    """What the Job reads its artifacts tree (models/, data/) from: an S3 prefix or a PVC; neither
    given, the target's own (aws: ``aws.bench_artifacts_prefix`` of the models bucket).

    The S3 sync runs with the bench Job's credentials for reading (aws: the Pod Identity of
    ``kubernetes.bench_service_account``; vsphere: the keys of the ``ovms.eksa_credentials_secret``
    Secret, ``endpoint_url``: an S3-compatible store).
    """
    if s3_uri and pvc:
        raise BenchError(
            "--in-cluster needs exactly one of --artifacts-s3 s3://bucket/prefix or --artifacts-pvc NAME"
        )
    if not s3_uri and not pvc:
        try:
            s3_uri = in_cluster_target(target).bench_artifacts_s3(config)
        except DeployError as exc:
            raise BenchError(
                "--in-cluster needs exactly one of --artifacts-s3 s3://bucket/prefix or --artifacts-pvc "
                f"NAME ({exc})"
            ) from None
    if pvc:
        try:
            return PvcArtifacts(claim=pvc)
        except DeployError as exc:
            raise BenchError(f"--artifacts-pvc: {exc}") from None
    assert s3_uri is not None
    if not s3_uri.startswith("s3://") or not s3_uri[5:].split("/", 1)[0]:
        raise BenchError(f"--artifacts-s3 must look like s3://bucket/prefix, got {s3_uri!r}")
    bucket, _, prefix = s3_uri[5:].partition("/")
    cluster = in_cluster_target(target)
    try:
        return cluster.bench_s3_source(
            config,
            ModelRequest(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=endpoint_url),
            results=False,
        )
    except DeployError as exc:
        raise BenchError(f"--artifacts-s3: {exc}") from None


def results_location(
    config: ToolkitConfig, *, target: str, s3_uri: str | None = None, endpoint_url: str = ""
) -> s3sync.S3Location:
    """Where the Job uploads its results (under ``<target>/<pool>/<job>/``), with the results identity.

    ``s3_uri`` (``--results-s3``), else the target's own (aws: the results bucket of the data stack,
    ``bench-results/``; vsphere: ``vsphere.bench_results_s3``). A bucket alone gets ``bench-results/``.
    """
    cluster = in_cluster_target(target)
    if not s3_uri:
        try:
            s3_uri = cluster.bench_results_s3(config)
        except DeployError as exc:
            raise BenchError(f"{exc} (or give --results-s3 s3://BUCKET/PREFIX)") from None
    if not s3_uri.startswith("s3://") or not s3_uri[5:].split("/", 1)[0]:
        raise BenchError(f"--results-s3 must look like s3://bucket/prefix, got {s3_uri!r}")
    bucket, _, prefix = s3_uri[5:].partition("/")
    request = ModelRequest(
        bucket=bucket, prefix=prefix.strip("/") or BENCH_RESULTS_PREFIX, endpoint_url=endpoint_url
    )
    try:
        return cluster.bench_s3_source(config, request, results=True)
    except DeployError as exc:
        raise BenchError(f"--results-s3: {exc}") from None


def job_name(pool: str, now: datetime) -> str:
    """A fresh name per run: a finished Job's template is immutable and its old log must not be read."""
    return f"bench-{pool}-{now.strftime('%Y%m%d%H%M%S')}"


def _pools(config: ToolkitConfig, cluster: ClusterTarget, pool: str | None, progress: Progress) -> list[str]:
    """The asked-for pools (``pool``, else every pool) that serve ``bench.precision``."""
    known = cluster.pools(config)
    if pool is not None and pool not in known:
        raise BenchError(f"{cluster.name} has no pool {pool!r}; configured pools: {', '.join(known)}")
    return pools_serving(config, cluster, known, asked=pool, progress=progress)


def render_jobs(
    config: ToolkitConfig,
    *,
    target: str,
    pool: str | None,
    image: str,
    artifacts: Artifacts,
    results: s3sync.S3Location | None,
    names: Callable[[str], str] = lambda pool: "",
    progress: Progress = print_progress,
) -> list[tuple[BenchJobSpec, Path]]:
    """Every asked-for pool's Job rendered, validated and fit-checked (``names``: pool → Job name);
    pools that do not serve ``bench.precision`` are skipped (``progress`` says which)."""
    cluster = in_cluster_target(target)
    if not image:
        raise BenchError("--in-cluster needs the bench image (--image REGISTRY/bench:TAG)")
    out_dir = cluster.work_dir(config) / "bench-jobs"
    rendered = []
    for name_of_pool in _pools(config, cluster, pool, progress):
        try:
            spec = BenchJobSpec(
                pool=name_of_pool,
                image=image,
                artifacts=artifacts,
                results=results,
                name=names(name_of_pool),
                target=target,
            )
            rendered.append((spec, render_bench_job(config, target=cluster.name, spec=spec, out_dir=out_dir)))
        except DeployError as exc:
            raise BenchError(str(exc)) from None
    return rendered


def dry_run(
    config: ToolkitConfig,
    *,
    target: str,
    pool: str | None,
    image: str,
    artifacts: Artifacts,
    results: s3sync.S3Location | None,
    progress: Progress = print_progress,
) -> list[Path]:
    """Render and validate each pool's Job (ServiceAccount, ConfigMap, NetworkPolicy, Job) offline."""
    rendered = render_jobs(
        config,
        target=target,
        pool=pool,
        image=image,
        artifacts=artifacts,
        results=results,
        progress=progress,
    )
    cluster = in_cluster_target(target)
    labels = config.kubernetes.bench_pool_labels(cluster.bench_pool(config))
    for spec, path in rendered:
        progress(f"rendered {path} (Job {spec.job_name()} on the node labelled {labels})")
    progress("dry run: no cluster touched and the bench pool not scaled")
    return [path for _spec, path in rendered]


def run_in_cluster(
    config: ToolkitConfig,
    *,
    target: str,
    pool: str | None,
    image: str,
    kubeconfig: Path,
    artifacts: Artifacts,
    results: s3sync.S3Location | None = None,
    progress: Progress = print_progress,
    api: JobClusterApi | None = None,
    session: Any = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Path]:
    """Run the bench Job on ``pool`` (default: every pool of the target's cluster); the written JSON paths.

    The load-generator pool is scaled to (at least) one node first and always back to its min_size
    afterwards, on success, on an error and on Ctrl-C. ``api``: the Kubernetes API (default: from
    ``kubeconfig``); ``session``: a boto3 session for the aws scaling calls.
    """
    cluster = in_cluster_target(target)
    rendered = render_jobs(
        config,
        target=target,
        pool=pool,
        image=image,
        artifacts=artifacts,
        results=results,
        names=lambda name_of_pool: job_name(name_of_pool, now()),
        progress=progress,
    )
    if api is None:
        from workloads.k8s.cluster_api import DynamicClusterApi

        api = DynamicClusterApi(kubeconfig=kubeconfig)
    bench_pool = cluster.bench_pool(config)

    def scale(nodes: int) -> None:
        cluster.scale_bench_pool(
            config, nodes=nodes, kubeconfig=kubeconfig, progress=progress, api=api, session=session
        )

    finished = False
    try:
        scale(max(1, bench_pool.min_size))
        wait_for_ready_node(
            api,
            labels=config.kubernetes.bench_pool_labels(bench_pool),
            progress=progress,
            clock=clock,
            sleep=sleep,
        )
        written = [
            _run_job(
                config,
                spec,
                manifest,
                kubeconfig=kubeconfig,
                api=api,
                progress=progress,
                clock=clock,
                sleep=sleep,
            )
            for spec, manifest in rendered
        ]
        finished = True
    finally:
        try:
            progress(f"== bench pool back to {bench_pool.min_size} node(s)")
            scale(bench_pool.min_size)
        except ToolkitError as exc:
            if finished:
                raise BenchError(
                    f"the results are written, but the bench pool was not scaled back: {exc}"
                ) from None
            progress(f"warning: the bench pool was not scaled back to {bench_pool.min_size}: {exc}")
    return written


def _run_job(
    config: ToolkitConfig,
    spec: BenchJobSpec,
    manifest: Path,
    *,
    kubeconfig: Path,
    api: JobClusterApi,
    progress: Progress,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Path:
    namespace = config.kubernetes.namespace
    name, target = spec.job_name(), spec.target
    progress(f"== bench Job {name} on {target}/{spec.pool} ({manifest})")
    apply_manifests([manifest], kubeconfig=kubeconfig, api=api, progress=progress, clock=clock, sleep=sleep)
    try:
        wait_for_job(
            api,
            name=name,
            namespace=namespace,
            timeout_s=spec.deadline_seconds + WAIT_MARGIN_SECONDS,
            progress=progress,
            clock=clock,
            sleep=sleep,
        )
    except DeployError as exc:
        # The benchmark may have finished and printed its result before a later step (the
        # archive upload) failed: keep a valid result, and say what failed after it.
        document = _result_or_none(api, name, namespace)
        if document is None:
            raise BenchError(f"{exc}; last log line: {_last_log_line(api, name, namespace)}") from None
        progress(f"warning: {exc} — after the benchmark printed its result, which is kept")
    else:
        log = api.job_log(name=name, namespace=namespace, container=BENCH_CONTAINER)
        document = extract_result(log)
    if document["target"] != target or document["pool"] != spec.pool:
        raise BenchError(
            f"Job {name} measured target {document['target']!r} pool {document['pool']!r}, "
            f"expected {target!r} pool {spec.pool!r}; is the image's toolkit current?"
        )
    path = write_results(document, config.paths.bench_results, progress)
    progress(f"wrote {path}")
    return path


def _result_or_none(api: JobClusterApi, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return extract_result(api.job_log(name=name, namespace=namespace, container=BENCH_CONTAINER))
    except (BenchError, DeployError):
        return None


def _last_log_line(api: JobClusterApi, name: str, namespace: str) -> str:
    try:
        return last_line(api.job_log(name=name, namespace=namespace, container=BENCH_CONTAINER))
    except DeployError as exc:
        return f"(log unavailable: {exc})"
