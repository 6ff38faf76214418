"""The three load modes beyond batch/realtime, each point measured until its windows are stable.

* sweep (perf_analyzer ``--concurrency-range``): closed loop at each concurrency; the points make
  the throughput–latency curve.
* rate (``--request-rate-range``): open loop at each request rate (Poisson or constant arrivals);
  achieved rate and latency from the scheduled send time.
* max-rate (``--latency-threshold``; MLPerf Server): the highest request rate whose p99 is within
  ``p99_bound_ms`` while ≥ 95 % of it is achieved, by a bounded search (workloads.bench.loadgen).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.errors import BenchError
from workloads.bench.clients import InferenceClient
from workloads.bench.loadgen import (
    SUSTAINED_FRACTION,
    Measurement,
    StabilityRule,
    Window,
    measure_until_stable,
    run_open_loop,
    search_max_rate,
    sustains,
)
from workloads.bench.scenarios import Prepared, fail_on_errors, load_threads, run_load, warm_up
from workloads.progress import Progress

LOAD_MODES = ("sweep", "rate", "max-rate")


@dataclass(frozen=True)
class LoadSettings:
    rule: StabilityRule
    # Every window also holds at least this many requests (scheduled ones, in the open loop).
    min_requests: int
    warmup_seconds: float
    concurrencies: tuple[int, ...]
    rates: tuple[float, ...]
    distribution: str
    max_in_flight: int
    p99_bound_ms: float
    search_start: float
    search_steps: int
    seed: int


def _describe(measurement: Measurement) -> str:
    pooled = measurement.pooled.as_dict()
    state = "stable" if measurement.stable else "NOT stable"
    return (
        f"{pooled['requests_per_second']:.1f} requests/s · p50 {pooled['p50_ms']:.2f} · "
        f"p99 {pooled['p99_ms']:.2f} ms · {state} after {len(measurement.windows)} window(s)"
    )


def run_sweep(
    client: InferenceClient, requests: Sequence[Prepared], settings: LoadSettings, progress: Progress
) -> dict[str, Any]:
    """Closed loop at each of ``settings.concurrencies``, in order."""
    with load_threads(max(settings.concurrencies)) as workers:
        warm_up(client, requests, max(settings.concurrencies), settings.warmup_seconds, workers)
        points = []
        for concurrency in settings.concurrencies:

            def window(concurrency: int = concurrency) -> Window:
                measured = run_load(
                    client,
                    requests,
                    concurrency=concurrency,
                    min_seconds=settings.rule.window_seconds,
                    min_requests=max(concurrency, settings.min_requests),
                    workers=workers,
                )
                fail_on_errors(measured, f"sweep at concurrency {concurrency}")
                return Window(measured.seconds, measured.images, measured.latencies_ms)

            measurement = measure_until_stable(window, settings.rule)
            progress(f"sweep concurrency {concurrency}: {_describe(measurement)}")
            points.append({"concurrency": concurrency, **measurement.as_dict()})
    return {"batch_size": requests[0].images, "points": points}


def _open_loop(
    client: InferenceClient,
    requests: Sequence[Prepared],
    settings: LoadSettings,
    rate: float,
    workers: ThreadPoolExecutor,
    rng: np.random.Generator,
) -> Measurement:
    def window() -> Window:
        return run_open_loop(
            client,
            requests,
            rate=rate,
            seconds=max(settings.rule.window_seconds, settings.min_requests / rate),
            max_in_flight=settings.max_in_flight,
            distribution=settings.distribution,
            rng=rng,
            workers=workers,
        )

    return measure_until_stable(window, settings.rule)


def _open_loop_settings(requests: Sequence[Prepared], settings: LoadSettings) -> dict[str, Any]:
    return {
        "batch_size": requests[0].images,
        "distribution": settings.distribution,
        "max_in_flight": settings.max_in_flight,
        "seed": settings.seed,
    }


def run_rate(
    client: InferenceClient, requests: Sequence[Prepared], settings: LoadSettings, progress: Progress
) -> dict[str, Any]:
    """Open loop at each of ``settings.rates`` (requests/s), in order."""
    rng = np.random.default_rng(settings.seed)
    with load_threads(settings.max_in_flight) as workers:
        warm_up(client, requests, settings.max_in_flight, settings.warmup_seconds, workers)
        points = []
        for rate in settings.rates:
            measurement = _open_loop(client, requests, settings, rate, workers, rng)
            pooled = measurement.pooled
            progress(
                f"rate {rate:g}/s ({settings.distribution}): {_describe(measurement)} · "
                f"{pooled.delayed} delayed, {pooled.dropped} dropped"
            )
            points.append(measurement.as_dict())
    return {**_open_loop_settings(requests, settings), "points": points}


def run_max_rate(
    client: InferenceClient, requests: Sequence[Prepared], settings: LoadSettings, progress: Progress
) -> dict[str, Any]:
    """The highest request rate sustained under ``settings.p99_bound_ms``."""
    rng = np.random.default_rng(settings.seed)
    steps: list[dict[str, Any]] = []
    with load_threads(settings.max_in_flight) as workers:
        warm_up(client, requests, settings.max_in_flight, settings.warmup_seconds, workers)

        def try_rate(rate: float) -> bool:
            measurement = _open_loop(client, requests, settings, rate, workers, rng)
            ok = sustains(measurement, settings.p99_bound_ms)
            progress(
                f"max-rate step {len(steps) + 1}/{settings.search_steps} at {rate:.4g}/s: "
                f"{_describe(measurement)} → {'sustained' if ok else 'not sustained'}"
            )
            steps.append({"sustained": ok, **measurement.as_dict()})
            return ok

        found = search_max_rate(try_rate, start=settings.search_start, steps=settings.search_steps)
    images = requests[0].images
    progress(
        f"max-rate: {f'{found.best:.4g} requests/s' if found.best else 'no rate'} sustained with "
        f"p99 ≤ {settings.p99_bound_ms:g} ms"
        + (f" (not {found.failed:.4g}/s)" if found.failed else " (no rate tried failed: raise the start)")
    )
    return {
        **_open_loop_settings(requests, settings),
        "p99_bound_ms": settings.p99_bound_ms,
        "min_achieved_fraction": SUSTAINED_FRACTION,
        "max_rps": found.best,
        "max_images_per_second": found.best * images if found.best is not None else None,
        "failed_rps": found.failed,
        "steps": steps,
    }


RUNNERS = {"sweep": run_sweep, "rate": run_rate, "max-rate": run_max_rate}

# `invoke bench --scenario`: each name and the scenarios it runs.
SCENARIO_CHOICES = {
    "batch": ("batch",),
    "realtime": ("realtime",),
    "all": ("batch", "realtime"),
    **{mode: (mode,) for mode in LOAD_MODES},
}
# The flag that sets each load mode's levels; given alone, it chooses its mode.
_MODE_FLAGS = {
    "sweep": "--concurrency-range",
    "rate": "--request-rate-range",
    "max-rate": "--latency-threshold",
}


def scenarios_for(scenario: str | None, *, given: set[str]) -> tuple[str, ...]:
    """The scenarios `invoke bench` runs: ``--scenario``'s, else the load modes whose flags are
    ``given`` (by mode name), else batch and realtime. A mode's flag with a scenario that does not
    run it is an error (it would be ignored)."""
    if scenario is None:
        chosen = tuple(mode for mode in LOAD_MODES if mode in given)
        return chosen or SCENARIO_CHOICES["all"]
    if scenario not in SCENARIO_CHOICES:
        raise BenchError(f"unknown scenario {scenario!r}; choose {', '.join(SCENARIO_CHOICES)}")
    chosen = SCENARIO_CHOICES[scenario]
    for mode in sorted(given - set(chosen)):
        raise BenchError(f"{_MODE_FLAGS[mode]} applies to the {mode} scenario, not --scenario {scenario}")
    return chosen
