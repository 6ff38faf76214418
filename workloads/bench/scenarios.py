"""The two MLPerf-style scenarios: ``batch`` (Offline) and ``realtime`` (SingleStream).

Both warm up for ``warmup_seconds``, then run ``repetitions`` repetitions, each lasting at
least ``min_duration_seconds`` *and* ``min_requests`` requests. Requests are prepared (encoded)
before a scenario starts; the load generator only sends them, so its own work is a fraction
of a millisecond per request. Any failed request fails the repetition: a benchmark with
errors is not a result.

* batch: ``concurrency`` threads, each sending batches of ``batch_size`` back to back (a
  closed loop, as MLPerf Offline keeps the server saturated); figure = images / seconds, the
  seconds from the start until the last answer.
* realtime: one request of one image at a time; mean, p50, p90, p99 latency over the
  repetition, and the reference paper's figure: the mean over its first ``paper_images``
  (distinct) images.

The load modes of perf_analyzer's class (sweep, rate, max-rate), measured in windows until they
are stable, are in workloads.bench.load_modes: the sweep sends through :func:`run_load`, the
open-loop modes through workloads.bench.loadgen.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from contracts.errors import BenchError
from workloads.bench.clients import InferenceClient
from workloads.bench.stats import latency_figures, summary
from workloads.progress import Progress

SCENARIOS = ("batch", "realtime")


@dataclass(frozen=True)
class ScenarioSettings:
    batch_size: int
    concurrency: int
    warmup_seconds: float
    min_duration_seconds: float
    min_requests: int
    repetitions: int
    paper_images: int


@dataclass(frozen=True)
class Prepared:
    """A request encoded once by the client, and how many images it carries."""

    request: Any
    images: int


@dataclass(frozen=True)
class BatchRepetition:
    requests: int
    images: int
    errors: int
    seconds: float
    images_per_second: float


@dataclass(frozen=True)
class RealtimeRepetition:
    requests: int
    errors: int
    seconds: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    paper_avg_ms: float


@dataclass(frozen=True)
class LoadWindow:
    """What one closed-loop run saw: per request its images and latency, in completion order."""

    images: tuple[int, ...]
    latencies_ms: tuple[float, ...]
    errors: int
    first_error: str
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors


def prepare_requests(client: InferenceClient, batches: Sequence[Any]) -> list[Prepared]:
    """Encode every batch (an image array or a list of encoded files) once."""
    return [Prepared(client.prepare(batch), len(batch)) for batch in batches]


def run_load(
    client: InferenceClient,
    requests: Sequence[Prepared],
    *,
    concurrency: int,
    min_seconds: float,
    min_requests: int,
    clock: Callable[[], float] = time.perf_counter,
    workers: ThreadPoolExecutor | None = None,
) -> LoadWindow:
    """Closed loop: ``concurrency`` workers send ``requests`` round-robin until both minimums are met.

    A worker sends another request while fewer than ``min_requests`` were issued or less than
    ``min_seconds`` have passed. The first error stops all workers. The workers run on the threads
    of ``workers`` (at least ``concurrency`` of them) when given, else on threads of this run.
    """
    if not requests:
        raise BenchError("no prepared requests to send")
    lock = threading.Lock()
    go = threading.Event()
    stop = threading.Event()
    issued = 0
    images: list[int] = []
    latencies: list[float] = []
    errors: list[str] = []
    ends: list[float] = []
    start = 0.0

    def take() -> int | None:
        nonlocal issued
        with lock:
            if stop.is_set() or (issued >= min_requests and clock() - start >= min_seconds):
                return None
            issued += 1
            return issued - 1

    def worker(offset: int) -> None:
        go.wait()
        while (number := take()) is not None:
            prepared = requests[(number + offset) % len(requests)]
            sent = clock()
            try:
                probabilities = client.send(prepared.request)
                if len(probabilities) != prepared.images:
                    raise BenchError(f"{prepared.images} images sent, {len(probabilities)} answers received")
            except Exception as exc:  # every failure counts, whatever raised it
                with lock:
                    errors.append(str(exc) or type(exc).__name__)
                    ends.append(clock())
                stop.set()
                return
            done = clock()
            with lock:
                images.append(prepared.images)
                latencies.append((done - sent) * 1000.0)
                ends.append(done)

    with contextlib.ExitStack() as own:
        pool = workers or own.enter_context(load_threads(concurrency))
        running = [pool.submit(worker, i) for i in range(concurrency)]
        start = clock()
        go.set()
        try:
            for future in running:
                future.result()
        finally:
            stop.set()  # also on Ctrl-C: each worker ends after its request in flight
    seconds = (max(ends) if ends else clock()) - start
    return LoadWindow(tuple(images), tuple(latencies), len(errors), errors[0] if errors else "", seconds)


def fail_on_errors(window: LoadWindow, what: str) -> None:
    if window.errors:
        raise BenchError(
            f"{what}: {window.errors} of {window.requests} requests failed — a benchmark with errors is "
            f"not a result; first error: {window.first_error}"
        )


def load_threads(concurrency: int) -> ThreadPoolExecutor:
    """The threads a scenario sends from, kept from its warm-up through its last repetition: what a
    client keeps per thread (tritonclient.http's connection) is made in the warm-up, never measured."""
    return ThreadPoolExecutor(concurrency, thread_name_prefix="bench-load")


def warm_up(
    client: InferenceClient,
    requests: Sequence[Prepared],
    concurrency: int,
    seconds: float,
    workers: ThreadPoolExecutor | None = None,
) -> None:
    if seconds <= 0:
        return
    window = run_load(
        client, requests, concurrency=concurrency, min_seconds=seconds, min_requests=1, workers=workers
    )
    fail_on_errors(window, "warm-up")


@dataclass(frozen=True)
class BatchResult:
    repetitions: tuple[BatchRepetition, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "repetitions": [asdict(r) for r in self.repetitions],
            "summary": {"images_per_second": summary([r.images_per_second for r in self.repetitions])},
        }


@dataclass(frozen=True)
class RealtimeResult:
    repetitions: tuple[RealtimeRepetition, ...]

    def as_dict(self) -> dict[str, Any]:
        keys = ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "paper_avg_ms")
        return {
            "repetitions": [asdict(r) for r in self.repetitions],
            "summary": {key: summary([getattr(r, key) for r in self.repetitions]) for key in keys},
        }


def run_batch(
    client: InferenceClient, requests: Sequence[Prepared], settings: ScenarioSettings, progress: Progress
) -> BatchResult:
    """Offline: images/s with ``concurrency`` requests of ``batch_size`` images in flight."""
    with load_threads(settings.concurrency) as workers:
        return _run_batch(client, requests, settings, progress, workers)


def _run_batch(
    client: InferenceClient,
    requests: Sequence[Prepared],
    settings: ScenarioSettings,
    progress: Progress,
    workers: ThreadPoolExecutor,
) -> BatchResult:
    warm_up(client, requests, settings.concurrency, settings.warmup_seconds, workers)
    repetitions: list[BatchRepetition] = []
    for number in range(1, settings.repetitions + 1):
        window = run_load(
            client,
            requests,
            concurrency=settings.concurrency,
            min_seconds=settings.min_duration_seconds,
            min_requests=settings.min_requests,
            workers=workers,
        )
        fail_on_errors(window, f"batch repetition {number}")
        total = sum(window.images)
        repetition = BatchRepetition(
            requests=window.requests,
            images=total,
            errors=window.errors,
            seconds=window.seconds,
            images_per_second=total / window.seconds,
        )
        repetitions.append(repetition)
        so_far = summary([r.images_per_second for r in repetitions])["median"]
        progress(
            f"batch {number}/{settings.repetitions}: {repetition.images_per_second:.1f} images/s "
            f"({repetition.requests} requests × {settings.batch_size}, {repetition.seconds:.2f} s); "
            f"median so far {so_far:.1f}"
        )
    return BatchResult(tuple(repetitions))


def run_realtime(
    client: InferenceClient, requests: Sequence[Prepared], settings: ScenarioSettings, progress: Progress
) -> RealtimeResult:
    """SingleStream: one image per request, one request at a time.

    ``requests`` must hold single images, at least ``paper_images`` distinct ones: every
    repetition starts with them, and their mean latency is the paper's figure.
    """
    if len(requests) < settings.paper_images or any(r.images != 1 for r in requests):
        raise BenchError(
            f"the realtime scenario needs at least {settings.paper_images} single-image requests "
            f"(bench.paper_images), got {len(requests)}"
        )
    with load_threads(1) as workers:
        return _run_realtime(client, requests, settings, progress, workers)


def _run_realtime(
    client: InferenceClient,
    requests: Sequence[Prepared],
    settings: ScenarioSettings,
    progress: Progress,
    workers: ThreadPoolExecutor,
) -> RealtimeResult:
    warm_up(client, requests, 1, settings.warmup_seconds, workers)
    repetitions: list[RealtimeRepetition] = []
    for number in range(1, settings.repetitions + 1):
        window = run_load(
            client,
            requests,
            concurrency=1,
            min_seconds=settings.min_duration_seconds,
            min_requests=max(settings.min_requests, settings.paper_images),
            workers=workers,
        )
        fail_on_errors(window, f"realtime repetition {number}")
        figures = latency_figures(window.latencies_ms)
        repetition = RealtimeRepetition(
            requests=window.requests,
            errors=window.errors,
            seconds=window.seconds,
            paper_avg_ms=float(np.mean(window.latencies_ms[: settings.paper_images])),
            **figures,
        )
        repetitions.append(repetition)
        progress(
            f"realtime {number}/{settings.repetitions}: mean {repetition.mean_ms:.2f} ms · "
            f"p50 {repetition.p50_ms:.2f} · p90 {repetition.p90_ms:.2f} · p99 {repetition.p99_ms:.2f} · "
            f"paper avg ({settings.paper_images} images) {repetition.paper_avg_ms:.2f} ms "
            f"({repetition.requests} requests, {repetition.seconds:.2f} s)"
        )
    return RealtimeResult(tuple(repetitions))
