"""`invoke bench`: the batch and realtime scenarios, and the load modes (sweep, rate, max-rate;
workloads.bench.load_modes), against a server or an in-process runtime.

Runtimes: ``server`` (a KServe v2 endpoint: the local server recorded by `invoke up --target
local`, or any ``endpoint`` — OVMS included), ``openvino`` (the same IR compiled in this
process with the server's settings) and ``tensorflow`` (the run's SavedModel). One run:
metadata check → lock of the measured host → known-answer check → scenarios (with the machine's
load before and after) → known-answer check → unlock → results JSON + CSV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import workloads
from contracts.config import ServingConfig, ToolkitConfig, openvino_properties
from contracts.errors import BenchError, DatasetError, ModelRepositoryError, ToolkitError
from contracts.files import sha256_file
from contracts.model_repository import ModelRepository, ModelVersion, execution_precision, served_name
from contracts.run_directory import RunDirectory
from workloads.bench.clients import (
    DEFAULT_RETRY,
    GrpcClient,
    InferenceClient,
    RestClient,
    RetryPolicy,
    TensorFlowClient,
    check_input,
    is_loopback,
)
from workloads.bench.conditions import THIS_MACHINE, HostLock, LoadMonitor, lock_dir, measured_host
from workloads.bench.cpuinfo import cpu_info
from workloads.bench.inprocess import AsyncOpenVinoClient
from workloads.bench.inputs import BenchImages, full_batches, load_bench_images, pool_size
from workloads.bench.known_answer import (
    REMOTE_TOLERANCE,
    SAME_MACHINE_TOLERANCE,
    KnownAnswer,
    build_known_answer,
    check_known_answer,
    stored_known_answer,
)
from workloads.bench.load_modes import LOAD_MODES, RUNNERS, LoadSettings
from workloads.bench.loadgen import StabilityRule
from workloads.bench.results import SCHEMA_VERSION, model_version_label, write_results
from workloads.bench.scenarios import (
    SCENARIOS,
    BatchResult,
    RealtimeResult,
    ScenarioSettings,
    prepare_requests,
    run_batch,
    run_realtime,
)
from workloads.bench.server_metrics import (
    METRICS_BY_RUNTIME,
    Scrape,
    ServerTimer,
    http_scrape,
    in_process_timer,
    metrics_url,
)
from workloads.bench.serving_pools import pools_serving
from workloads.execution_precision import cpu_refusal, execution_facts
from workloads.progress import Progress, print_progress
from workloads.targets import DEPLOY_TARGETS, ClusterTarget, DeployTarget, deploy_target, either
from workloads.telemetry import opt_out_of_openvino_telemetry

RUNTIMES = ("server", "openvino", "tensorflow")
# batch and realtime (repetitions), then the load modes (stable windows), in the order they run.
ALL_SCENARIOS = (*SCENARIOS, *LOAD_MODES)
# The result label of a server named only by --endpoint (no deploy target).
ENDPOINT = "endpoint"
BENCH_LABELS = (*DEPLOY_TARGETS, ENDPOINT)


# --- what is benchmarked ----------------------------------------------------------------------


def find_published(
    repository: Path, model_name: str, precision: str, version: int | None = None
) -> ModelVersion:
    """The given version (default: the latest) of ``<model_name>-<precision>`` in the repository.

    A version is asked for when an endpoint reports the one it serves; the known answer needs its IR.
    """
    try:
        return ModelRepository(repository).find(model_name, precision, version)
    except ModelRepositoryError as exc:
        if version is None:
            raise BenchError(str(exc)) from None
        raise BenchError(
            f"the endpoint serves {served_name(model_name, precision)} version {version}, but {exc}; "
            "the known-answer check needs that version's IR"
        ) from None


def compile_config(serving: ServingConfig, precision: str = "fp32") -> dict[str, Any]:
    """The OpenVINO properties the local server compiles ``precision`` with
    (workloads.serving.model.RuntimeSettings): INFERENCE_PRECISION_HINT pinned to the variant's."""
    return openvino_properties(
        serving.performance_hint,
        serving.num_streams,
        serving.inference_threads,
        execution_precision(precision),
    )


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
    # The published version whose stored known answer (known_answer.json) is the reference.
    stored: ModelVersion | None = None
    # What executed: {"execution_precision", "execution_reported_by", "layer_precisions"} (results schema).
    execution: dict[str, Any] = field(default_factory=dict)
    # The server's Prometheus page (its REST port's /metrics), for server-side time; None in process.
    metrics_url: str | None = None


def _server_subject(
    config: ToolkitConfig, target: str, endpoint: str | None, pool: str | None, retry: RetryPolicy
) -> Subject:
    bench = config.bench
    name = served_name(config.optimize.model_name, bench.precision)
    registered = DEPLOY_TARGETS.get(target)  # None for an anonymous endpoint
    local = _server_record(registered, config)
    if local is not None:
        if endpoint is None:
            endpoint = local["http_url"] if bench.protocol == "rest" else local["grpc_target"]
    elif endpoint is None:
        raise BenchError(f"target {target} needs an endpoint (the server's REST URL or gRPC host:port)")
    client_class = RestClient if bench.protocol == "rest" else GrpcClient
    client: InferenceClient = client_class(
        endpoint,
        name,
        timeout_seconds=bench.request_timeout_seconds,
        retry=retry,
        known_models=sorted((local or {}).get("models") or {}),
        up_hint=(
            "is the server up and the endpoint right?"
            if registered is None
            else f"is the server up? `invoke up --target {target}`"
        ),
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
    except BaseException:
        client.close()
        raise
    same_machine = local is not None or is_loopback(endpoint)
    if pool is None and registered is not None and local is not None:
        (pool,) = registered.pools(config)  # the one server the target runs
    served = ((local or {}).get("models") or {}).get(name) or {}
    return Subject(
        client=client,
        reference=None,  # the known answer is the one stored with the version at publish
        stored=published,
        reference_name=f"{name} version {published.version} (stored at publish)",
        tolerance=SAME_MACHINE_TOLERANCE if local is not None else REMOTE_TOLERANCE,
        target=target,
        pool=pool,
        endpoint=client.endpoint,
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
        execution=_server_execution(served if local is not None else None, registered, bench.precision),
        metrics_url=_metrics_url(
            client.endpoint if bench.protocol == "rest" else (local or {}).get("http_url")
        ),
    )


def _metrics_url(rest_url: str | None) -> str | None:
    return metrics_url(rest_url) if rest_url else None


def _server_execution(
    served: dict[str, Any] | None, registered: DeployTarget | None, precision: str
) -> dict[str, Any]:
    """What a server executes, where knowable: the local server records the hint it pinned (and
    checked OpenVINO reports); a cluster target's OVMS runs the plugin_config its deploy rendered.
    An anonymous endpoint does not say."""
    if served is not None and served.get("execution_precision"):
        return {"execution_precision": served["execution_precision"], "execution_reported_by": "server"}
    if served is None and isinstance(registered, ClusterTarget):
        return {
            "execution_precision": execution_precision(precision),
            "execution_reported_by": "plugin_config",
        }
    return {"execution_precision": None, "execution_reported_by": "unknown"}


def _server_record(target: DeployTarget | None, config: ToolkitConfig) -> dict[str, Any] | None:
    """What the target recorded about the one server it runs (models, settings); None if it runs none."""
    if target is None:
        return None
    try:
        return target.server_record(config)
    except ToolkitError as exc:
        raise BenchError(str(exc)) from None


class _InProcess(TypedDict):
    target: str
    pool: None
    endpoint: None
    protocol: str
    server_version: None


# What every in-process subject says about where it ran: nowhere but here.
_IN_PROCESS = _InProcess(
    target="in-process", pool=None, endpoint=None, protocol="in-process", server_version=None
)


def _in_process_subject(config: ToolkitConfig, runtime: str) -> Subject:
    bench = config.bench
    if runtime == "openvino" and (
        refusal := cpu_refusal(bench.precision, cpu_info()["flags"], "of this machine", "bench.precision")
    ):
        raise BenchError(refusal)
    published = find_published(config.paths.model_repository, config.optimize.model_name, bench.precision)
    if runtime == "openvino":
        # Driven as benchmark_app drives OpenVINO (an async infer queue of the server's nireq).
        client = AsyncOpenVinoClient(
            published.xml,
            model=published.name,
            image_size=published.image_size,
            compile_config=compile_config(config.serving, bench.precision),
            nireq=config.serving.nireq,
        )
        model = {
            "name": published.name,
            "version": published.version,
            "precision": bench.precision,
            "image_size": published.image_size,
            "sha256": published.sha256,
        }
        return Subject(
            client=client,
            reference=None,  # the known answer is the one stored with the version at publish
            stored=published,
            reference_name=f"{published.name} version {published.version} (stored at publish)",
            tolerance=SAME_MACHINE_TOLERANCE,
            runtime="openvino",
            model=model,
            server_cpu=None,
            performance_hint=config.serving.performance_hint,
            execution={**execution_facts(client.compiled), "execution_reported_by": "compiled model"},
            **_IN_PROCESS,
        )
    if not published.run_id:
        raise BenchError(f"{published.model_card} names no run_id; cannot find its SavedModel")
    run = RunDirectory.of(config.paths.runs, published.run_id)
    saved_model = run.saved_model
    if not saved_model.is_dir():
        raise BenchError(
            f"the tensorflow runtime needs run {published.run_id}'s SavedModel, "
            f"but {saved_model} does not exist"
        )
    tf_client = TensorFlowClient(
        saved_model, image_size=published.image_size, model=config.optimize.model_name
    )
    import tensorflow as tf

    return Subject(
        client=tf_client,
        reference=tf_client.infer,
        reference_name=f"run {published.run_id}'s SavedModel (the same in-process model)",
        tolerance=SAME_MACHINE_TOLERANCE,
        runtime="tensorflow",
        model={
            "name": config.optimize.model_name,
            "version": None,
            "run_id": published.run_id,
            "precision": "fp32",
            "image_size": published.image_size,
            "sha256": sha256_file(run.saved_model_graph),
        },
        server_cpu=None,
        performance_hint=None,
        tensorflow_version=tf.__version__,
        execution={"execution_precision": None, "execution_reported_by": "unknown"},
        **_IN_PROCESS,
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
    lock_directory: Path | None = None,
    load_monitor: Callable[[bool], LoadMonitor] = LoadMonitor,
    scrape: Scrape = http_scrape,
) -> tuple[dict[str, Any], Path]:
    """Benchmark one model on one target; returns the results document and its JSON path.

    The measured host is locked for the run (a second bench of it refuses with one line; see
    workloads.bench.conditions, ``lock_directory`` defaults to the machine-wide lock folder), and
    ``load_monitor(server_on_this_machine)`` records the machine's load around the scenarios.

    ``target`` is "local" (the server recorded by `invoke up --target local`) or a name for an
    ``endpoint`` ("endpoint", "aws", "vsphere"); it is ignored for the in-process runtimes.
    ``pool`` names the node pool the endpoint runs on (e.g. "c6i"), for the report.
    """
    opt_out_of_openvino_telemetry()
    bench = config.bench
    unknown = sorted(set(scenarios) - set(ALL_SCENARIOS))
    if unknown or not scenarios:
        raise BenchError(
            f"unknown scenario {unknown[0] if unknown else '(none)'}; choose from {', '.join(ALL_SCENARIOS)}"
        )
    if runtime not in RUNTIMES:
        raise BenchError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "server" and target not in BENCH_LABELS:
        raise BenchError(f"unknown target {target!r}; choose {either(BENCH_LABELS)}")

    subject = (
        _server_subject(config, target, endpoint, pool, retry)
        if runtime == "server"
        else _in_process_subject(config, runtime)
    )
    server_here = subject.protocol != "in-process" and subject.server_cpu is not None
    lock = HostLock(
        THIS_MACHINE if server_here else measured_host(subject.endpoint),
        endpoint=subject.endpoint,
        directory=lock_directory or lock_dir(),
        owner=f"target {subject.target}, artifacts {config.artifacts_dir}",
    )
    try:
        lock.acquire()
    except BaseException:
        subject.client.close()
        raise
    try:
        images = _load_images(config, subject.model["image_size"], scenarios)
        where = subject.endpoint or "in process"
        progress(
            f"bench: {subject.runtime} · {subject.model['name']} {model_version_label(subject.model)} "
            f"({subject.model['image_size']} px) · {subject.protocol} {where} · {bench.input_format} · "
            f"batch {bench.batch_size} × {bench.concurrency} concurrent · {bench.repetitions} repetitions of "
            f"≥ {bench.min_duration_seconds:g} s and ≥ {bench.min_requests} requests · "
            f"{len(images)} test images"
        )
        answer = _known_answer(subject, images, config)
        known = {"images": answer.images if answer else 0, "before": "skipped", "after": "skipped"}
        if answer:
            known["before"] = _check(subject, answer, "before", retry, progress)
        monitor = load_monitor(server_here)
        monitor.start()
        timer = _server_timer(subject, scrape)
        results: dict[str, Any] = {}
        # One scenario at a time, so the server's own time is read around each.
        for scenario in (s for s in ALL_SCENARIOS if s in scenarios):
            with timer.measure(scenario):
                results.update(_run_scenarios(subject.client, images, config, [scenario], progress))
        conditions = monitor.conditions()
        if answer:
            known["after"] = _check(subject, answer, "after", retry, progress)
    finally:
        lock.release()
        subject.client.close()

    document = _document(subject, config, results, known, conditions)
    document["server_time"] = timer.as_dict()
    path = write_results(document, config.paths.bench_results, progress)
    for line in summary_lines(document):
        progress(line)
    progress(f"bench: results → {path}")
    return document, path


def _server_timer(subject: Subject, scrape: Scrape) -> ServerTimer:
    if subject.protocol == "in-process":
        return in_process_timer()
    metrics = METRICS_BY_RUNTIME.get(subject.runtime)
    return ServerTimer(subject.metrics_url, metrics, subject.model["name"], scrape=scrape)


def _load_images(config: ToolkitConfig, image_size: int, scenarios: Sequence[str]) -> BenchImages:
    from workloads.data.manifest import SplitManifest

    bench = config.bench
    try:
        manifest = SplitManifest.load(config.paths.split_manifest)
    except DatasetError as exc:
        raise BenchError(f"the benchmark needs test images: {exc}") from None
    # Enough distinct batches for the most requests in flight (a sweep's last point included).
    in_flight = max((bench.concurrency, *(bench.sweep_concurrency if "sweep" in scenarios else ())))
    size = pool_size(bench.batch_size, in_flight, bench.paper_images, bench.known_answer_images)
    return load_bench_images(manifest, size, image_size)


def _known_answer(subject: Subject, images: BenchImages, config: ToolkitConfig) -> KnownAnswer | None:
    from workloads.data.manifest import SplitManifest

    count, input_format = config.bench.known_answer_images, config.bench.input_format
    if count > 0 and subject.stored is not None:
        return stored_known_answer(
            subject.stored,
            SplitManifest.load(config.paths.split_manifest),
            input_format=input_format,
            count=count,
            same_machine=subject.tolerance == SAME_MACHINE_TOLERANCE,
        )
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
) -> dict[str, BatchResult | RealtimeResult | dict[str, Any]]:
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
    results: dict[str, BatchResult | RealtimeResult | dict[str, Any]] = {}
    for scenario in ALL_SCENARIOS:
        if scenario not in scenarios:
            continue
        if scenario in LOAD_MODES:
            size = bench.batch_size if scenario == "sweep" else bench.rate_batch_size
            batches = [images.batch(b, bench.input_format) for b in full_batches(len(images), size)]
            prepared = prepare_requests(client, batches)
            results[scenario] = RUNNERS[scenario](client, prepared, load_settings(config), progress)
        elif scenario == "batch":
            batches = [
                images.batch(b, bench.input_format) for b in full_batches(len(images), bench.batch_size)
            ]
            results["batch"] = run_batch(client, prepare_requests(client, batches), settings, progress)
        else:
            singles = [images.batch([i], bench.input_format) for i in range(len(images))]
            results["realtime"] = run_realtime(client, prepare_requests(client, singles), settings, progress)
    return results


def load_settings(config: ToolkitConfig) -> LoadSettings:
    bench = config.bench
    return LoadSettings(
        rule=StabilityRule(
            window_seconds=bench.window_seconds,
            percent=bench.stability_percent,
            windows=bench.stable_windows,
            max_windows=bench.max_windows,
        ),
        min_requests=bench.min_requests,
        warmup_seconds=bench.warmup_seconds,
        concurrencies=bench.sweep_concurrency,
        rates=bench.request_rates,
        distribution=bench.request_distribution,
        max_in_flight=bench.max_in_flight,
        p99_bound_ms=bench.p99_bound_ms,
        search_start=bench.rate_search_start,
        search_steps=bench.rate_search_steps,
        seed=bench.arrival_seed,
    )


def _window_settings(config: ToolkitConfig, results: dict[str, Any]) -> dict[str, Any]:
    """The stability rule, for results that ran a load mode (batch/realtime use repetitions)."""
    if not set(results) & set(LOAD_MODES):
        return {}
    bench = config.bench
    return {
        "windows": {
            "window_seconds": bench.window_seconds,
            "stability_percent": bench.stability_percent,
            "stable_windows": bench.stable_windows,
            "max_windows": bench.max_windows,
        }
    }


def _document(
    subject: Subject,
    config: ToolkitConfig,
    results: dict[str, BatchResult | RealtimeResult | dict[str, Any]],
    known: dict[str, Any],
    conditions: dict[str, Any],
) -> dict[str, Any]:
    import openvino

    bench = config.bench
    versions: dict[str, Any] = {"toolkit": workloads.__version__, "openvino": openvino.__version__}
    if subject.tensorflow_version:
        versions["tensorflow"] = subject.tensorflow_version
    versions["server"] = subject.server_version
    return {
        "schema_version": SCHEMA_VERSION,
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
            **_window_settings(config, results),
        },
        "scenarios": {
            name: result if isinstance(result, dict) else result.as_dict() for name, result in results.items()
        },
        "execution_precision": subject.execution.get("execution_precision"),
        "execution_reported_by": subject.execution.get("execution_reported_by", "unknown"),
        "layer_precisions": subject.execution.get("layer_precisions"),
        "known_answer": known,
        "conditions": conditions,
    }


def summary_lines(document: dict[str, Any]) -> list[str]:
    """One compact line per scenario: medians and ranges of the repetitions."""
    model = document["model"]
    settings = document["settings"]
    executed = f", executes {document['execution_precision']}" if document.get("execution_precision") else ""
    how = f"{document['protocol']}, {settings['input_format']}{executed}"
    subject = f"{document['runtime']} {model['name']} ({how})"
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
    lines.extend(load_mode_lines(document["scenarios"], subject))
    lines.extend(server_time_lines(document.get("server_time")))
    conditions = document.get("conditions")
    if conditions and conditions["machine"] == "busy":
        lines.append(f"warning: measured on a busy machine — {'; '.join(conditions['reasons'])}")
    return lines


def server_time_lines(server_time: dict[str, Any] | None) -> list[str]:
    """The server's own mean times per scenario (its metrics), or why they are missing."""
    if not server_time or server_time.get("source") is None:
        return []
    lines = []
    for name, figures in server_time["scenarios"].items():
        parts = [f"{figures['requests']} requests"]
        for key, label in (("mean_request_ms", "request"), ("mean_inference_ms", "inference")):
            if figures[key] is not None:
                parts.append(f"mean {label} {figures[key]:.2f} ms")
        lines.append(f"server time ({name}, from its metrics): {' · '.join(parts)}")
    if server_time.get("reason"):
        lines.append(f"server time: none — {server_time['reason']}")
    return lines


def load_mode_lines(scenarios: dict[str, Any], subject: str) -> list[str]:
    """One line per sweep/rate point and one for the max-rate search."""
    lines = []
    for name in ("sweep", "rate"):
        for point in (scenarios.get(name) or {}).get("points", []):
            level = (
                f"concurrency {point['concurrency']}" if name == "sweep" else f"{point['offered_rps']:g}/s"
            )
            extra = f" · {point['delayed']} delayed, {point['dropped']} dropped" if name == "rate" else ""
            lines.append(
                f"{name} {level}: {point['requests_per_second']:.1f} requests/s "
                f"({point['images_per_second']:.1f} images/s) · p50 {point['p50_ms']:.2f} · "
                f"p90 {point['p90_ms']:.2f} · p99 {point['p99_ms']:.2f} ms"
                f"{'' if point['stable'] else ' · NOT stable'}{extra} · {subject}"
            )
    search = scenarios.get("max-rate")
    if search:
        best = f"{search['max_rps']:.4g} requests/s" if search["max_rps"] is not None else "no rate"
        lines.append(
            f"max-rate: {best} sustained with p99 ≤ {search['p99_bound_ms']:g} ms "
            f"({len(search['steps'])} rates tried) · {subject}"
        )
    return lines


def deployed_endpoints(
    config: ToolkitConfig, *, target: str, pool: str | None = None, progress: Progress = print_progress
) -> list[tuple[str, str]]:
    """(pool, endpoint) pairs recorded by `invoke up --target <target>`, for ``bench.protocol``; on a
    cluster only the pools serving ``bench.precision`` (workloads.bench.serving_pools)."""
    registered = deploy_target(target)
    try:
        recorded = registered.recorded_endpoints(config)
    except ToolkitError as exc:
        raise BenchError(str(exc)) from None
    if pool is not None and pool not in recorded:
        raise BenchError(f"{target} has no pool {pool!r}; recorded pools: {', '.join(sorted(recorded))}")
    pools = [pool] if pool is not None else sorted(recorded)
    if isinstance(registered, ClusterTarget):
        pools = pools_serving(config, registered, pools, asked=pool, progress=progress)
    return [(name, recorded[name][config.bench.protocol]) for name in pools]


def bench_targets(
    config: ToolkitConfig,
    *,
    target: str,
    endpoint: str | None,
    pool: str | None,
    runtime: str = "server",
    progress: Progress = print_progress,
) -> tuple[str, list[tuple[str | None, str | None]]]:
    """The result's target label and the (pool, endpoint) pairs to measure, from the task's flags.

    ``--endpoint`` alone (or with a target that runs no in-cluster bench, like ``local``) is labelled
    "endpoint"; with a cluster target it keeps that label and ``--pool`` (the in-cluster Job measures
    its pool's Service this way); a target alone measures the endpoints `invoke up` recorded.
    """
    if target not in BENCH_LABELS:
        raise BenchError(f"unknown target {target!r}; choose {', '.join(DEPLOY_TARGETS)} or --endpoint")
    registered = DEPLOY_TARGETS.get(target)
    if endpoint:
        if registered is not None and registered.in_cluster_bench:
            if runtime == "server" and not pool:
                raise BenchError(f"--endpoint with --target {target} needs --pool (the pool it serves)")
            return target, [(pool, endpoint)]
        return ENDPOINT, [(pool, endpoint)]
    if registered is None:
        raise BenchError(f"target {ENDPOINT} needs --endpoint (the server's REST URL or gRPC host:port)")
    if runtime == "server":
        recorded = deployed_endpoints(config, target=target, pool=pool, progress=progress)
        return target, [(name, url) for name, url in recorded]
    return target, [(pool, endpoint)]
