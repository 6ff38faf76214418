"""`invoke bench --target aws|vsphere --in-cluster`: the bench Job next to OVMS, its result brought back.

Per pool: render the bench Job (workloads.k8s.bench_job) → apply it → wait for it → read the bench
container's log through the Kubernetes API → take the result document printed between the marker
lines (`invoke bench --print-result`) → validate it and write it under ``<artifacts>/bench/`` like a
local run (JSON + CSV line), so `invoke bench.report` merges it with the other targets. The Job's own
result storage (S3 upload or the PVC) stays as an archive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from contracts.config import ToolkitConfig
from contracts.errors import BenchError, DeployError, ToolkitError
from workloads.bench.results import validate_results, write_results
from workloads.k8s.apply import apply_manifests, wait_for_job
from workloads.k8s.bench_job import Artifacts, BenchJobSpec, PvcArtifacts, render_bench_job
from workloads.k8s.cluster_api import ClusterApi
from workloads.progress import Progress, print_progress
from workloads.targets import ClusterTarget, DeployTarget, ModelRequest, either, target_names
from workloads.targets import deploy_target as registered_target

RESULT_BEGIN = "--- bmc-result-begin ---"
RESULT_END = "--- bmc-result-end ---"
BENCH_CONTAINER = "bench"
# Room for the image pull and the inputs sync on top of the Job's own deadline.
WAIT_MARGIN_SECONDS = 300


class JobClusterApi(ClusterApi, Protocol):
    def job_log(self, *, name: str, namespace: str, container: str) -> str: ...


def framed_result(document: Mapping[str, Any]) -> str:
    """The result document between the marker lines, as the Job prints it (one JSON line)."""
    return f"{RESULT_BEGIN}\n{json.dumps(document, separators=(',', ':'))}\n{RESULT_END}"


def last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def extract_result(log: str) -> dict[str, Any]:
    """The document between the last pair of markers in a pod log, validated; BenchError (one line) if not."""
    lines = log.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == RESULT_BEGIN]
    if not begins:
        raise BenchError(
            f"the bench log holds no result (no {RESULT_BEGIN!r} line); last line: {last_line(log)}"
        )
    start = begins[-1] + 1
    ends = [i for i in range(start, len(lines)) if lines[i].strip() == RESULT_END]
    if not ends:
        raise BenchError(f"the bench log's result is cut off (no {RESULT_END!r} line after the begin marker)")
    text = "\n".join(lines[start : ends[0]])
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BenchError(f"the bench log's result is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BenchError("the bench log's result is not a JSON object")
    validate_results(document)
    return document


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
    """What the Job reads its artifacts tree (models/, data/) from: an S3 prefix or a PVC.

    The S3 sync runs with the target's pod credentials (aws: the pod identity of the model-sync
    service account; vsphere: the keys of the ``ovms.eksa_credentials_secret`` Secret,
    ``endpoint_url``: an S3-compatible store).
    """
    if bool(s3_uri) == bool(pvc):
        raise BenchError(
            "--in-cluster needs exactly one of --artifacts-s3 s3://bucket/prefix or --artifacts-pvc NAME"
        )
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
        return cluster.s3_source(
            config, ModelRequest(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=endpoint_url)
        )
    except DeployError as exc:
        raise BenchError(f"--artifacts-s3: {exc}") from None


def job_name(pool: str, now: datetime) -> str:
    """A fresh name per run: a finished Job's template is immutable and its old log must not be read."""
    return f"bench-{pool}-{now.strftime('%Y%m%d%H%M%S')}"


def run_in_cluster(
    config: ToolkitConfig,
    *,
    target: str,
    pool: str | None,
    image: str,
    kubeconfig: Path,
    artifacts: Artifacts,
    progress: Progress = print_progress,
    api: JobClusterApi | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Path]:
    """Run the bench Job on ``pool`` (default: every pool of the target's cluster); the written JSON paths."""
    cluster = in_cluster_target(target)
    if not image:
        raise BenchError("--in-cluster needs the bench image (--image REGISTRY/bench:TAG)")
    known = cluster.pools(config)
    if pool is not None and pool not in known:
        raise BenchError(f"{target} has no pool {pool!r}; configured pools: {', '.join(known)}")
    pools = [pool] if pool is not None else list(known)
    if api is None:
        from workloads.k8s.cluster_api import DynamicClusterApi

        api = DynamicClusterApi(kubeconfig=kubeconfig)
    namespace = config.kubernetes.namespace
    out_dir = cluster.work_dir(config) / "bench-jobs"
    written = []
    for name_of_pool in pools:
        spec = BenchJobSpec(
            pool=name_of_pool,
            image=image,
            artifacts=artifacts,
            name=job_name(name_of_pool, now()),
            target=target,
        )
        name = spec.job_name()
        manifest = render_bench_job(config, target=cluster.name, spec=spec, out_dir=out_dir)
        progress(f"== bench Job {name} on {target}/{name_of_pool} ({manifest})")
        apply_manifests(
            [manifest], kubeconfig=kubeconfig, api=api, progress=progress, clock=clock, sleep=sleep
        )
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
        if document["target"] != target or document["pool"] != name_of_pool:
            raise BenchError(
                f"Job {name} measured target {document['target']!r} pool {document['pool']!r}, "
                f"expected {target!r} pool {name_of_pool!r}; is the image's toolkit current?"
            )
        path = write_results(document, config.paths.bench_results)
        progress(f"wrote {path}")
        written.append(path)
    return written


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
