"""`invoke bench`: the batch and realtime scenarios against a server or an in-process runtime.

Runtimes: ``server`` (a KServe v2 endpoint: the local server recorded by `invoke up --target
local`, or any ``endpoint`` — OVMS included), ``openvino`` (the same IR compiled in this
process with the server's settings) and ``tensorflow`` (the run's SavedModel). One run:
metadata check → known-answer check → scenarios → known-answer check → results JSON + CSV.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import workloads
from contracts.config import ServingConfig, ToolkitConfig, openvino_properties
from contracts.errors import BenchError, DatasetError, ToolkitError
from contracts.files import sha256_file
from workloads.bench.clients import (
    DEFAULT_RETRY,
    GrpcClient,
    InferenceClient,
    OpenVinoClient,
    RestClient,
    RetryPolicy,
    TensorFlowClient,
    check_input,
    is_loopback,
)
from workloads.bench.cpuinfo import cpu_info
from workloads.bench.inputs import BenchImages, full_batches, load_bench_images, pool_size
from workloads.bench.known_answer import (
    REMOTE_TOLERANCE,
    SAME_MACHINE_TOLERANCE,
    KnownAnswer,
    build_known_answer,
    check_known_answer,
)
from workloads.bench.results import model_version_label, write_results
from workloads.bench.scenarios import (
    SCENARIOS,
    BatchResult,
    RealtimeResult,
    ScenarioSettings,
    prepare_requests,
    run_batch,
    run_realtime,
)
from workloads.optimize.repository import existing_versions, served_name
from workloads.progress import Progress, print_progress
from workloads.telemetry import opt_out_of_openvino_telemetry

RUNTIMES = ("server", "openvino", "tensorflow")
ENDPOINTS_FILE = "endpoints.json"  # written by workloads.serving.local


# --- what is benchmarked ----------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedVersion:
    """One version folder of the OVMS repository: ``<repo>/<model>-<precision>/<version>/``."""

    name: str
    precision: str
    version: int
    directory: Path
    image_size: int
    run_id: str | None

    @property
    def xml(self) -> Path:
        return self.directory / "model.xml"

    @property
    def bin(self) -> Path:
        return self.directory / "model.bin"


def find_published(
    repository: Path, model_name: str, precision: str, version: int | None = None
) -> PublishedVersion:
    """The given version (default: the latest) of ``<model_name>-<precision>`` in the repository."""
    name = served_name(model_name, precision)
    versions = existing_versions(repository / name)
    if not versions:
        raise BenchError(
            f"no published {name} in {repository}; "
            f"run `invoke optimize` with {precision} in optimize.precisions"
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise BenchError(
            f"the endpoint serves {name} version {version}, which {repository} does not have "
            f"(it has {', '.join(map(str, versions))}); the known-answer check needs that version's IR"
        )
    directory = repository / name / str(version)
    card_path = directory / "model_card.json"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        image_size = int(card["image_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(
            f"cannot read image_size from {card_path} ({exc}); republish with `invoke optimize`"
        ) from None
    for path in (directory / "model.xml", directory / "model.bin"):
        if not path.is_file():
            raise BenchError(f"{name} version {version} is incomplete: {path} is missing")
    run_id = card.get("run_id")
    return PublishedVersion(name, precision, version, directory, image_size, str(run_id) if run_id else None)


def compile_config(serving: ServingConfig) -> dict[str, Any]:
    """The OpenVINO properties the local server compiles with (workloads.serving.model.RuntimeSettings)."""
    return openvino_properties(serving.performance_hint, serving.num_streams, serving.inference_threads)


def read_local_endpoints(folder: Path) -> dict[str, Any]:
    path = folder / ENDPOINTS_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"no local server recorded in {path}; run `invoke up --target local`") from None
    except (OSError, ValueError) as exc:
        raise BenchError(
            f"cannot read {path} ({exc}); restart the server with `invoke up --target local`"
        ) from None
    if not isinstance(info, dict) or not info.get("http_url") or not info.get("grpc_target"):
        raise BenchError(f"{path} names no endpoints; restart the server with `invoke up --target local`")
    return info


def detect_runtime(server_name: str, platform: str) -> str:
    """Our KServe+OpenVINO server, OVMS, or another KServe v2 server, from the metadata it reports."""
    name = server_name.lower()
    if "openvino model server" in name or name == "ovms":
        return "ovms"
    if "kserve" in name and "openvino" in platform.lower():
        return "kserve-openvino"
    return "kserve-v2"


@dataclass
class Subject:
    """The client under test and everything the results say about it."""

    client: InferenceClient
    reference: Callable[[Any], Any] | None  # in-process predictor for the known answer
    reference_name: str
    tolerance: float
    target: str
    pool: str | None
    endpoint: str | None
    protocol: str
    runtime: str
    model: dict[str, Any]
    server_version: str | None
    server_cpu: dict[str, Any] | None
    performance_hint: str | None
    tensorflow_version: str | None = None


def _server_subject(
    config: ToolkitConfig, target: str, endpoint: str | None, pool: str | None, retry: RetryPolicy
) -> Subject:
    bench = config.bench
    name = served_name(config.optimize.model_name, bench.precision)
    local = None
    if target == "local":
        local = read_local_endpoints(config.paths.local_server)
        if endpoint is None:
            endpoint = local["http_url"] if bench.protocol == "rest" else local["grpc_target"]
    elif endpoint is None:
        raise BenchError(f"target {target} needs an endpoint (the server's REST URL or gRPC host:port)")
    options = {
        "timeout_seconds": bench.request_timeout_seconds,
        "retry": retry,
        "known_models": sorted((local or {}).get("models") or {}),
        "up_hint": (
            "is the server up and the endpoint right?"
            if target == "endpoint"
            else f"is the server up? `invoke up --target {target}`"
        ),
    }
    client: InferenceClient = (
        RestClient(endpoint, name, **options)
        if bench.protocol == "rest"
        else GrpcClient(endpoint, name, **options)
    )
    try:
        server = client.server_metadata()
        metadata = client.model_metadata()
        published = find_published(
            config.paths.model_repository,
            config.optimize.model_name,
            bench.precision,
            metadata.latest_version,
        )
        for batch_size in (bench.batch_size, 1):
            check_input(metadata, published.image_size, bench.input_format, batch_size)
        client.wait_until_ready()
        reference = None
        if bench.known_answer_images > 0:
            reference = OpenVinoClient(
                published.xml,
                model=name,
                image_size=published.image_size,
                compile_config=compile_config(config.serving),
            ).infer
    except BaseException:
        client.close()
        raise
    same_machine = local is not None or is_loopback(endpoint)
    served = ((local or {}).get("models") or {}).get(name) or {}
    return Subject(
        client=client,
        reference=reference,
        reference_name=f"{name} version {published.version} in-process (OpenVINO)",
        tolerance=SAME_MACHINE_TOLERANCE if local is not None else REMOTE_TOLERANCE,
        target=target,
        pool=pool if pool is not None else ("local" if target == "local" else None),
        endpoint=client.url if isinstance(client, RestClient) else client.target,
        protocol=bench.protocol,
        runtime="kserve-openvino"
        if local is not None
        else detect_runtime(server.name if server else "", metadata.platform),
        model={
            "name": name,
            "version": metadata.latest_version or published.version,
            "precision": bench.precision,
            "image_size": published.image_size,
            "sha256": (served.get("sha256") or sha256_file(published.bin)) if local is not None else None,
        },
        server_version=server.describe() if server else None,
        server_cpu=cpu_info() if same_machine else None,
        performance_hint=((local or {}).get("settings") or {}).get("performance_hint") if local else None,
    )


def _in_process_subject(config: ToolkitConfig, runtime: str) -> Subject:
    bench = config.bench
    published = find_published(config.paths.model_repository, config.optimize.model_name, bench.precision)
    common = {
        "target": "in-process",
        "pool": None,
        "endpoint": None,
        "protocol": "in-process",
        "server_version": None,
    }
    if runtime == "openvino":
        client = OpenVinoClient(
            published.xml,
            model=published.name,
            image_size=published.image_size,
            compile_config=compile_config(config.serving),
        )
        model = {
            "name": published.name,
            "version": published.version,
            "precision": bench.precision,
            "image_size": published.image_size,
            "sha256": sha256_file(published.bin),
        }
        return Subject(
            client=client,
            reference=client.infer,
            reference_name=f"{published.name} version {published.version} (the same in-process model)",
            tolerance=SAME_MACHINE_TOLERANCE,
            runtime="openvino",
            model=model,
            server_cpu=None,
            performance_hint=config.serving.performance_hint,
            **common,
        )
    if not published.run_id:
        raise BenchError(f"{published.directory}/model_card.json names no run_id; cannot find its SavedModel")
    saved_model = config.paths.runs / published.run_id / "saved_model"
    if not saved_model.is_dir():
        raise BenchError(
            f"the tensorflow runtime needs run {published.run_id}'s SavedModel, "
            f"but {saved_model} does not exist"
        )
    client = TensorFlowClient(saved_model, image_size=published.image_size, model=config.optimize.model_name)
    import tensorflow as tf

    return Subject(
        client=client,
        reference=client.infer,
        reference_name=f"run {published.run_id}'s SavedModel (the same in-process model)",
        tolerance=SAME_MACHINE_TOLERANCE,
        runtime="tensorflow",
        model={
            "name": config.optimize.model_name,
            "version": None,
            "run_id": published.run_id,
            "precision": "fp32",
            "image_size": published.image_size,
            "sha256": sha256_file(saved_model / "saved_model.pb"),
        },
        server_cpu=None,
        performance_hint=None,
        tensorflow_version=tf.__version__,
        **common,
    )


# --- the run ----------------------------------------------------------------------------------


def run_bench(
    config: ToolkitConfig,
    *,
    target: str = "local",
    endpoint: str | None = None,
    runtime: str = "server",
    scenarios: Sequence[str] = SCENARIOS,
    pool: str | None = None,
    progress: Progress = print_progress,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> tuple[dict[str, Any], Path]:
    """Benchmark one model on one target; returns the results document and its JSON path.

    ``target`` is "local" (the server recorded by `invoke up --target local`) or a name for an
    ``endpoint`` ("endpoint", "aws", "vsphere"); it is ignored for the in-process runtimes.
    ``pool`` names the node pool the endpoint runs on (e.g. "c6i"), for the report.
    """
    opt_out_of_openvino_telemetry()
    bench = config.bench
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        raise BenchError(
            f"unknown scenario {unknown[0] if unknown else '(none)'}; choose from {', '.join(SCENARIOS)}"
        )
    if runtime not in RUNTIMES:
        raise BenchError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "server" and target not in ("local", "endpoint", "aws", "vsphere"):
        raise BenchError(f"unknown target {target!r}; choose local, endpoint, aws or vsphere")

    subject = (
        _server_subject(config, target, endpoint, pool, retry)
        if runtime == "server"
        else _in_process_subject(config, runtime)
    )
    try:
        images = _load_images(config, subject.model["image_size"])
        where = subject.endpoint or "in process"
        progress(
            f"bench: {subject.runtime} · {subject.model['name']} {model_version_label(subject.model)} "
            f"({subject.model['image_size']} px) · {subject.protocol} {where} · {bench.input_format} · "
            f"batch {bench.batch_size} × {bench.concurrency} concurrent · {bench.repetitions} repetitions of "
            f"≥ {bench.min_duration_seconds:g} s and ≥ {bench.min_requests} requests · "
            f"{len(images)} test images"
        )
        answer = _known_answer(subject, images, bench.known_answer_images, bench.input_format)
        known = {"images": answer.images if answer else 0, "before": "skipped", "after": "skipped"}
        if answer:
            known["before"] = _check(subject, answer, "before", retry, progress)
        results = _run_scenarios(subject.client, images, config, scenarios, progress)
        if answer:
            known["after"] = _check(subject, answer, "after", retry, progress)
    finally:
        subject.client.close()

    document = _document(subject, config, results, known)
    path = write_results(document, config.paths.bench_results)
    for line in summary_lines(document):
        progress(line)
    progress(f"bench: results → {path}")
    return document, path


def _load_images(config: ToolkitConfig, image_size: int) -> BenchImages:
    from workloads.data.manifest import SplitManifest

    bench = config.bench
    try:
        manifest = SplitManifest.load(config.paths.split_manifest)
    except DatasetError as exc:
        raise BenchError(f"the benchmark needs test images: {exc}") from None
    size = pool_size(bench.batch_size, bench.concurrency, bench.paper_images, bench.known_answer_images)
    return load_bench_images(manifest, size, image_size)


def _known_answer(subject: Subject, images: BenchImages, count: int, input_format: str) -> KnownAnswer | None:
    if count <= 0 or subject.reference is None:
        return None
    indices = [i % len(images) for i in range(count)]
    return build_known_answer(
        subject.reference,
        images.tensors[indices],
        images.batch(indices, input_format),
        description=subject.reference_name,
        tolerance=subject.tolerance,
    )


def _check(subject: Subject, answer: KnownAnswer, stage: str, retry: RetryPolicy, progress: Progress) -> str:
    agreement = check_known_answer(subject.client, answer, stage=stage, retry=retry)
    progress(
        f"known answer {stage}: {agreement.images}/{agreement.images} images agree with {answer.reference} "
        f"(max |Δprobability| {agreement.max_abs_diff:.2g})"
    )
    return "pass"


def _run_scenarios(
    client: InferenceClient,
    images: BenchImages,
    config: ToolkitConfig,
    scenarios: Sequence[str],
    progress: Progress,
) -> dict[str, BatchResult | RealtimeResult]:
    bench = config.bench
    settings = ScenarioSettings(
        batch_size=bench.batch_size,
        concurrency=bench.concurrency,
        warmup_seconds=bench.warmup_seconds,
        min_duration_seconds=bench.min_duration_seconds,
        min_requests=bench.min_requests,
        repetitions=bench.repetitions,
        paper_images=bench.paper_images,
    )
    results: dict[str, BatchResult | RealtimeResult] = {}
    for scenario in SCENARIOS:
        if scenario not in scenarios:
            continue
        if scenario == "batch":
            batches = [
                images.batch(b, bench.input_format) for b in full_batches(len(images), bench.batch_size)
            ]
            results["batch"] = run_batch(client, prepare_requests(client, batches), settings, progress)
        else:
            singles = [images.batch([i], bench.input_format) for i in range(len(images))]
            results["realtime"] = run_realtime(client, prepare_requests(client, singles), settings, progress)
    return results


def _document(
    subject: Subject,
    config: ToolkitConfig,
    results: dict[str, BatchResult | RealtimeResult],
    known: dict[str, Any],
) -> dict[str, Any]:
    import openvino

    bench = config.bench
    versions: dict[str, Any] = {"toolkit": workloads.__version__, "openvino": openvino.__version__}
    if subject.tensorflow_version:
        versions["tensorflow"] = subject.tensorflow_version
    versions["server"] = subject.server_version
    return {
        "schema_version": 1,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": subject.target,
        "pool": subject.pool,
        "endpoint": subject.endpoint,
        "protocol": subject.protocol,
        "runtime": subject.runtime,
        "model": subject.model,
        "versions": versions,
        "client": cpu_info(),
        "server": subject.server_cpu,
        "settings": {
            "batch_size": bench.batch_size,
            "concurrency": bench.concurrency,
            "input_format": bench.input_format,
            "warmup_seconds": bench.warmup_seconds,
            "min_duration_seconds": bench.min_duration_seconds,
            "min_requests": bench.min_requests,
            "repetitions": bench.repetitions,
            "paper_images": bench.paper_images,
            "performance_hint": subject.performance_hint,
        },
        "scenarios": {name: result.as_dict() for name, result in results.items()},
        "known_answer": known,
    }


def summary_lines(document: dict[str, Any]) -> list[str]:
    """One compact line per scenario: medians and ranges of the repetitions."""
    model = document["model"]
    settings = document["settings"]
    subject = f"{document['runtime']} {model['name']} ({document['protocol']}, {settings['input_format']})"
    lines = []
    batch = document["scenarios"].get("batch")
    if batch:
        ips = batch["summary"]["images_per_second"]
        lines.append(
            f"batch: {ips['median']:.1f} images/s median (range {ips['min']:.1f}–{ips['max']:.1f}) · "
            f"batch {settings['batch_size']} × {settings['concurrency']} concurrent · {subject}"
        )
    realtime = document["scenarios"].get("realtime")
    if realtime:
        s = realtime["summary"]
        lines.append(
            f"realtime: mean {s['mean_ms']['median']:.2f} ms · p50 {s['p50_ms']['median']:.2f} · "
            f"p90 {s['p90_ms']['median']:.2f} · p99 {s['p99_ms']['median']:.2f} · paper avg "
            f"({settings['paper_images']} images) {s['paper_avg_ms']['median']:.2f} ms "
            f"(range {s['paper_avg_ms']['min']:.2f}–{s['paper_avg_ms']['max']:.2f}) · {subject}"
        )
    return lines


def deployed_endpoints(
    config: ToolkitConfig, *, target: str, pool: str | None = None
) -> list[tuple[str, str]]:
    """(pool, endpoint) pairs recorded by `invoke up --target aws|vsphere`, for ``bench.protocol``."""
    from workloads.k8s.endpoints import load_endpoints

    try:
        recorded = load_endpoints(config, target=target)
    except ToolkitError as exc:
        raise BenchError(str(exc)) from None
    if pool is not None and pool not in recorded:
        raise BenchError(f"{target} has no pool {pool!r}; recorded pools: {', '.join(sorted(recorded))}")
    pools = [pool] if pool is not None else sorted(recorded)
    return [(name, recorded[name][config.bench.protocol]) for name in pools]


def bench_targets(
    config: ToolkitConfig, *, target: str, endpoint: str | None, pool: str | None, runtime: str = "server"
) -> tuple[str, list[tuple[str | None, str | None]]]:
    """The result's target label and the (pool, endpoint) pairs to measure, from the task's flags.

    ``--endpoint`` alone (or with ``--target local``) is labelled "endpoint"; with ``--target aws`` or
    ``vsphere`` it keeps that label and ``--pool`` (the in-cluster Job measures its pool's Service
    this way); ``--target aws|vsphere`` alone measures the endpoints `invoke up` recorded.
    """
    if target not in ("local", "endpoint", "aws", "vsphere"):
        raise BenchError(f"unknown target {target!r}; choose local, aws, vsphere or --endpoint")
    if endpoint:
        if target in ("aws", "vsphere"):
            if runtime == "server" and not pool:
                raise BenchError(f"--endpoint with --target {target} needs --pool (the pool it serves)")
            return target, [(pool, endpoint)]
        return "endpoint", [(pool, endpoint)]
    if target == "endpoint":
        raise BenchError("target endpoint needs --endpoint (the server's REST URL or gRPC host:port)")
    if target in ("aws", "vsphere") and runtime == "server":
        return target, [(name, url) for name, url in deployed_endpoints(config, target=target, pool=pool)]
    return target, [(pool, endpoint)]
