"""The load of perf_analyzer's class: open-loop arrivals, stable measurement windows, rate search.

* Open loop (perf_analyzer ``--request-rate-range`` with ``--request-distribution``): requests are
  issued at scheduled times (exponential inter-arrival gaps for ``poisson``, equal ones for
  ``constant``) whatever the answers do. At most ``max_in_flight`` are outstanding; a request due
  while all are busy is sent as soon as one answers (counted ``delayed``), and one still waiting
  when its window ends is never sent (counted ``dropped``). Latency runs from the *scheduled* time,
  so a server that falls behind shows its queue in the figures (no coordinated omission).
* Stability (perf_analyzer's rule): windows are measured until the last ``stable_windows`` agree —
  each one's throughput and mean latency within ±``percent`` % of their mean — or ``max_windows``
  were measured (then ``stable`` is false). The figures pool the last ``stable_windows`` windows.
* Rate search (perf_analyzer ``--latency-threshold``, MLPerf's Server scenario): the highest rate
  whose p99 stays within a bound while at least :data:`SUSTAINED_FRACTION` of the rate scheduled
  is answered per second;
  doubling (or halving) from a start rate until the knee is bracketed, then bisection, in a
  bounded number of steps.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.errors import BenchError
from workloads.bench.clients import InferenceClient
from workloads.bench.stats import latency_figures

DISTRIBUTIONS = ("poisson", "constant")
# A rate is sustained when at least this share of it is achieved (and p99 is within the bound).
SUSTAINED_FRACTION = 0.95
# The search stops bisecting once the bracket is narrower than this share of the sustained rate.
SEARCH_PRECISION = 0.05


# --- arrivals ---------------------------------------------------------------------------------


def arrival_times(rate: float, seconds: float, distribution: str, rng: np.random.Generator) -> np.ndarray:
    """Send offsets (s, ascending) in ``[0, seconds)`` for ``rate`` requests/s.

    Poisson: the arrivals of a Poisson process started at 0 (none forced at 0, which would add one
    request to every window); a draw with none at all gets one at 0, so a window is never empty.
    """
    if rate <= 0 or seconds <= 0:
        raise BenchError(f"an arrival schedule needs a rate and a duration > 0, got {rate} and {seconds}")
    if distribution == "constant":
        return np.arange(0.0, seconds, 1.0 / rate)
    if distribution != "poisson":
        raise BenchError(f"unknown request distribution {distribution!r}; choose {', '.join(DISTRIBUTIONS)}")
    expected = rate * seconds
    gaps = rng.exponential(1.0 / rate, size=int(expected + 6 * math.sqrt(expected) + 16))
    times = np.cumsum(gaps)
    while times[-1] < seconds:  # vanishingly rare: the draw above covers six sigmas
        times = np.concatenate((times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, size=len(gaps)))))
    times = times[times < seconds]
    return times if len(times) else np.zeros(1)


@dataclass(frozen=True)
class Window:
    """One measured window: per answered request its images and latency (ms).

    Open-loop windows also say what was offered (``offered_rps``) and scheduled (``scheduled``
    requests over ``scheduled_seconds``: a Poisson draw holds more or fewer than the rate), how many
    waited for a free in-flight slot (``delayed``) and how many were never sent (``dropped``).
    """

    seconds: float
    images: tuple[int, ...]
    latencies_ms: tuple[float, ...]
    offered_rps: float | None = None
    scheduled: int = 0
    scheduled_seconds: float = 0.0
    delayed: int = 0
    dropped: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def scheduled_rps(self) -> float:
        return self.scheduled / self.scheduled_seconds if self.scheduled_seconds > 0 else 0.0

    @property
    def mean_ms(self) -> float:
        return float(statistics.fmean(self.latencies_ms)) if self.latencies_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "seconds": self.seconds,
            "requests": self.requests,
            "images": sum(self.images),
            "requests_per_second": self.requests_per_second,
            "images_per_second": sum(self.images) / self.seconds if self.seconds > 0 else 0.0,
            **latency_figures(self.latencies_ms),
        }
        if self.offered_rps is not None:
            figures |= {
                "offered_rps": self.offered_rps,
                "scheduled": self.scheduled,
                "scheduled_rps": self.scheduled_rps,
                "delayed": self.delayed,
                "dropped": self.dropped,
            }
        return figures


def run_open_loop(
    client: InferenceClient,
    requests: Sequence[Any],
    *,
    rate: float,
    seconds: float,
    max_in_flight: int,
    distribution: str,
    rng: np.random.Generator,
    workers: ThreadPoolExecutor,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Window:
    """Issue ``requests`` (round-robin :class:`~workloads.bench.scenarios.Prepared`) on the schedule
    of ``rate`` for ``seconds``, at most ``max_in_flight`` at once, on the threads of ``workers``
    (at least ``max_in_flight`` of them); wait for every answer. The first error fails the window."""
    if not requests:
        raise BenchError("no prepared requests to send")
    schedule = arrival_times(rate, seconds, distribution, rng)
    slots = threading.Semaphore(max_in_flight)
    lock = threading.Lock()
    failed = threading.Event()
    images: list[int] = []
    latencies: list[float] = []
    ends: list[float] = []
    errors: list[str] = []

    def send(prepared: Any, due: float) -> None:
        try:
            answers = client.send(prepared.request)
            if len(answers) != prepared.images:
                raise BenchError(f"{prepared.images} images sent, {len(answers)} answers received")
            done = clock()
            with lock:
                images.append(prepared.images)
                latencies.append((done - due) * 1000.0)
                ends.append(done)
        except Exception as exc:  # every failure counts, whatever raised it
            with lock:
                errors.append(str(exc) or type(exc).__name__)
            failed.set()
        finally:
            slots.release()

    delayed = dropped = 0
    sent: list[Future[None]] = []
    start = clock()
    try:
        for number, offset in enumerate(schedule):
            if failed.is_set():
                break
            due = start + float(offset)
            if (wait := due - clock()) > 0:
                sleep(wait)
            if not slots.acquire(blocking=False):
                delayed += 1
                left = start + seconds - clock()
                if left <= 0 or not slots.acquire(timeout=left):
                    dropped = len(schedule) - number
                    break
            sent.append(workers.submit(send, requests[number % len(requests)], due))
    finally:
        for future in sent:  # also on Ctrl-C: every request in flight gets its answer
            future.result()
    if errors:
        raise BenchError(
            f"{len(errors)} of {len(sent)} requests failed at {rate:g} requests/s — a benchmark with "
            f"errors is not a result; first error: {errors[0]}"
        )
    elapsed = max(max(ends, default=start) - start, seconds)
    return Window(
        seconds=elapsed,
        images=tuple(images),
        latencies_ms=tuple(latencies),
        offered_rps=rate,
        scheduled=len(schedule),
        scheduled_seconds=seconds,
        delayed=delayed,
        dropped=dropped,
    )


# --- stability --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StabilityRule:
    """perf_analyzer's: the last ``windows`` windows agree within ±``percent`` % of their mean."""

    window_seconds: float
    percent: float
    windows: int
    max_windows: int

    def is_stable(self, measured: Sequence[Window]) -> bool:
        last = measured[-self.windows :]
        return len(last) == self.windows and all(
            _agree([metric(w) for w in last], self.percent)
            for metric in (lambda w: w.requests_per_second, lambda w: w.mean_ms)
        )


def _agree(values: Sequence[float], percent: float) -> bool:
    mean = statistics.fmean(values)
    return all(abs(value - mean) <= percent / 100 * abs(mean) for value in values)


@dataclass(frozen=True)
class Measurement:
    """The windows of one load point and whether they stabilized; figures pool the last ``used``."""

    windows: tuple[Window, ...]
    stable: bool
    used: int

    @property
    def pooled(self) -> Window:
        last = self.windows[-self.used :]
        offered = last[0].offered_rps
        return Window(
            seconds=sum(w.seconds for w in last),
            images=tuple(n for w in last for n in w.images),
            latencies_ms=tuple(ms for w in last for ms in w.latencies_ms),
            offered_rps=offered,
            scheduled=sum(w.scheduled for w in last),
            scheduled_seconds=sum(w.scheduled_seconds for w in last),
            delayed=sum(w.delayed for w in last),
            dropped=sum(w.dropped for w in last),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "windows_used": self.used,
            "windows": [w.as_dict() for w in self.windows],
            **self.pooled.as_dict(),
        }


def measure_until_stable(measure: Callable[[], Window], rule: StabilityRule) -> Measurement:
    """Measure windows until ``rule`` holds or ``rule.max_windows`` were measured; never more."""
    measured: list[Window] = []
    while len(measured) < rule.max_windows:
        measured.append(measure())
        if rule.is_stable(measured):
            return Measurement(tuple(measured), stable=True, used=rule.windows)
    return Measurement(tuple(measured), stable=False, used=min(rule.windows, len(measured)))


# --- latency-bounded rate ---------------------------------------------------------------------


def sustains(measurement: Measurement, p99_bound_ms: float) -> bool:
    """p99 within the bound, and at least SUSTAINED_FRACTION of the rate scheduled answered per
    second (the scheduled rate, not the nominal one: a short Poisson draw may hold fewer)."""
    pooled = measurement.pooled
    figures = latency_figures(pooled.latencies_ms)
    achieved = pooled.requests_per_second
    return figures["p99_ms"] <= p99_bound_ms and achieved >= SUSTAINED_FRACTION * pooled.scheduled_rps


@dataclass(frozen=True)
class SearchResult:
    """``best``: the highest rate sustained (None if none was); ``failed``: the lowest that was not
    (None if every rate tried was sustained); ``tried``: (rate, sustained) in the order tried."""

    best: float | None
    failed: float | None
    tried: tuple[tuple[float, bool], ...]


def search_max_rate(
    try_rate: Callable[[float], bool], *, start: float, steps: int, precision: float = SEARCH_PRECISION
) -> SearchResult:
    """At most ``steps`` calls of ``try_rate``: double from ``start`` while sustained (halve while
    not) until a sustained and an unsustained rate bracket the knee, then bisect the bracket until
    it is narrower than ``precision`` × the sustained rate."""
    tried: list[tuple[float, bool]] = []
    best: float | None = None
    failed: float | None = None
    rate = start
    while len(tried) < steps and (best is None or failed is None):
        ok = try_rate(rate)
        tried.append((rate, ok))
        if ok:
            best, rate = rate, rate * 2
        else:
            failed, rate = rate, rate / 2
    while best is not None and failed is not None and len(tried) < steps and failed - best > precision * best:
        middle = (best + failed) / 2
        ok = try_rate(middle)
        tried.append((middle, ok))
        if ok:
            best = middle
        else:
            failed = middle
    return SearchResult(best, failed, tuple(tried))


def parse_levels(text: str, kind: type[int] | type[float], key: str) -> tuple[Any, ...]:
    """perf_analyzer's ``start:end:step`` (linear, end included) or a list ``a,b,c``; one-line errors."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [kind(p) for p in text.split(":")]
            if len(parts) == 2:
                parts.append(kind(1))
            if len(parts) != 3:
                raise ValueError
            first, last, step = parts
            if step <= 0 or last < first:
                raise ValueError
            count = math.floor((last - first) / step + 1e-9) + 1
            levels = tuple(kind(first + i * step) for i in range(count))
        else:
            levels = tuple(kind(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise BenchError(
            f"{key} must be start:end[:step] (end >= start, step > 0) or a list like 1,2,4; got {text!r}"
        ) from None
    if not levels or any(level <= 0 for level in levels):
        raise BenchError(f"{key} levels must be > 0; got {text!r}")
    return levels
