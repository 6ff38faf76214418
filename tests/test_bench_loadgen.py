"""Open-loop arrivals, the stability rule, the latency-bounded rate search and the load modes,
against fake in-process clients of known service time (no network)."""

import threading
import time

import numpy as np
import pytest
from test_bench_scenarios import FakeClient, batches

from contracts.errors import BenchError
from workloads.bench.load_modes import LoadSettings, run_max_rate, run_rate, run_sweep, scenarios_for
from workloads.bench.loadgen import (
    Measurement,
    StabilityRule,
    Window,
    arrival_times,
    measure_until_stable,
    parse_levels,
    run_open_loop,
    search_max_rate,
    sustains,
)
from workloads.bench.results import _LOAD_MODES
from workloads.bench.scenarios import load_threads, prepare_requests


class QueueClient(FakeClient):
    """One request at a time, ``service`` seconds each: a server whose capacity is 1/service req/s."""

    def __init__(self, service: float):
        super().__init__(delay=lambda request: 0.0)
        self.service = service
        self._server = threading.Lock()

    def send(self, prepared):
        with self._server:
            time.sleep(self.service)
        return super().send(prepared)


def singles(client, count=8):
    return prepare_requests(client, batches(count, 1))


# --- arrivals ---------------------------------------------------------------------------------


def test_poisson_gaps_are_exponential_with_the_rates_mean():
    times = arrival_times(200.0, 50.0, "poisson", np.random.default_rng(7))
    gaps = np.diff(times)
    assert 0 < times[0] < 0.05 and np.all(gaps > 0) and times[-1] < 50.0
    assert len(times) == pytest.approx(200 * 50, rel=0.03)
    assert gaps.mean() == pytest.approx(1 / 200, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 200, rel=0.05)  # exponential: std = mean


def test_the_schedule_is_repeatable_from_its_seed_and_constant_is_evenly_spaced():
    first = arrival_times(50.0, 2.0, "poisson", np.random.default_rng(3))
    again = arrival_times(50.0, 2.0, "poisson", np.random.default_rng(3))
    other = arrival_times(50.0, 2.0, "poisson", np.random.default_rng(4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    constant = arrival_times(10.0, 1.0, "constant", np.random.default_rng(0))
    assert np.allclose(constant, np.arange(10) / 10)
    assert len(arrival_times(0.5, 0.1, "poisson", np.random.default_rng(0))) == 1  # never empty


def test_short_windows_hold_the_rate_not_one_request_more():
    rng = np.random.default_rng(11)
    counts = [len(arrival_times(10.0, 0.2, "poisson", rng)) for _ in range(4000)]
    assert np.mean(counts) == pytest.approx(2.0 + np.exp(-2.0), rel=0.05)  # an empty draw gets one


def test_a_window_lasts_long_enough_for_min_requests():
    client = FakeClient(delay=lambda request: 0.001)
    rule = StabilityRule(window_seconds=0.05, percent=100.0, windows=2, max_windows=2)
    result = run_rate(
        client, singles(client), settings(rule=rule, min_requests=12, rates=(40.0,)), lambda line: None
    )
    (point,) = result["points"]
    assert all(window["seconds"] >= 0.3 for window in point["windows"])  # 12 / 40 per second
    assert 12 <= point["scheduled"] <= 36


def test_an_unknown_distribution_is_a_bench_error():
    with pytest.raises(BenchError, match="unknown request distribution 'uniform'"):
        arrival_times(1.0, 1.0, "uniform", np.random.default_rng(0))


# --- open loop --------------------------------------------------------------------------------


def test_requests_are_sent_on_schedule_whatever_the_answers_do():
    """20 ms answers at 100/s: open loop keeps ~2 in flight and sends every scheduled request."""
    client = FakeClient(delay=lambda request: 0.02)
    with load_threads(8) as workers:
        window = run_open_loop(
            client,
            singles(client),
            rate=100.0,
            seconds=0.6,
            max_in_flight=8,
            distribution="constant",
            rng=np.random.default_rng(0),
            workers=workers,
        )
    assert window.scheduled == 60 and window.requests == 60 and window.delayed == window.dropped == 0
    assert client.max_in_flight >= 2  # a closed loop of one would never overlap
    assert window.requests_per_second == pytest.approx(100, rel=0.1)
    assert 18 <= np.median(window.latencies_ms) < 60


def test_latency_counts_the_queue_from_the_scheduled_time():
    """50 ms answers, one in flight, 40/s offered (capacity 20/s): requests wait for the slot, and
    that wait is in their latency; what the window could not send is dropped, not hidden."""
    client = FakeClient(delay=lambda request: 0.05)
    with load_threads(1) as workers:
        window = run_open_loop(
            client,
            singles(client),
            rate=40.0,
            seconds=0.5,
            max_in_flight=1,
            distribution="constant",
            rng=np.random.default_rng(0),
            workers=workers,
        )
    assert window.scheduled == 20
    assert window.delayed > 5 and window.dropped > 5
    assert window.requests + window.dropped == 20
    assert max(window.latencies_ms) > 150  # 50 ms of service + the queue ahead of it
    assert np.median(window.latencies_ms) > 75
    assert window.requests_per_second < 0.7 * 40


def test_a_failed_request_fails_the_window():
    client = FakeClient(delay=lambda request: 0.001, fail_on_call=3)
    with load_threads(2) as workers, pytest.raises(BenchError, match=r"errors is not a result.*boom"):
        run_open_loop(
            client,
            singles(client),
            rate=100.0,
            seconds=0.2,
            max_in_flight=2,
            distribution="poisson",
            rng=np.random.default_rng(0),
            workers=workers,
        )


# --- stability --------------------------------------------------------------------------------


def window(rps: float, ms: float, seconds: float = 1.0) -> Window:
    count = int(rps * seconds)
    return Window(seconds, (1,) * count, (ms,) * count)


RULE = StabilityRule(window_seconds=1.0, percent=10.0, windows=3, max_windows=6)


def from_list(windows):
    queue = list(windows)
    return lambda: queue.pop(0)


def test_windows_that_agree_end_the_measurement():
    measured = measure_until_stable(
        from_list([window(50, 30), window(100, 10), window(102, 10.5), window(98, 9.8), window(1, 1)]), RULE
    )
    assert measured.stable and len(measured.windows) == 4 and measured.used == 3
    assert measured.pooled.requests == 100 + 102 + 98  # the first (warming) window is left out


@pytest.mark.parametrize(
    "windows",
    [
        [window(100, 10), window(100, 10), window(130, 10)] * 2,  # throughput 13 % above, again and again
        [window(100, 10), window(100, 10), window(100, 14)] * 2,  # latency disagrees
    ],
)
def test_windows_that_disagree_stop_at_max_windows_unstable(windows):
    measured = measure_until_stable(from_list(windows), RULE)
    assert not measured.stable and len(measured.windows) == RULE.max_windows
    assert measured.used == 3 and measured.as_dict()["stable"] is False


def test_max_windows_is_never_exceeded():
    calls = []

    def measure():
        calls.append(1)
        return window(100 * len(calls), 10)  # throughput that never settles

    measured = measure_until_stable(measure, StabilityRule(1.0, 10.0, 3, 4))
    assert len(calls) == 4 and not measured.stable


def open_window(answered: int, scheduled: int, ms: float, seconds: float = 1.0) -> Window:
    return Window(seconds, (1,) * answered, (ms,) * answered, 100.0, scheduled, 1.0)


def test_sustained_needs_the_p99_bound_and_95_percent_of_the_scheduled_rate():
    fast = Measurement((open_window(96, 100, 5),), stable=True, used=1)
    assert sustains(fast, p99_bound_ms=10)
    assert not sustains(fast, p99_bound_ms=4)  # p99 5 ms > bound
    assert not sustains(Measurement((open_window(90, 100, 5),), True, 1), p99_bound_ms=10)  # 90 %
    # A draw that scheduled 80 at 100/s offered 80/s; answering all 80 in time keeps up with it.
    assert sustains(Measurement((open_window(80, 80, 5),), True, 1), p99_bound_ms=10)
    # Answers that trail past the window: 96 of 100 over 1.1 s is 87 % of the scheduled rate.
    assert not sustains(Measurement((open_window(96, 100, 5, seconds=1.1),), True, 1), p99_bound_ms=10)


# --- rate search ------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [1.0, 10.0, 1000.0])
def test_the_search_brackets_and_bisects_the_knee(start):
    knee = 137.0
    result = search_max_rate(lambda rate: rate <= knee, start=start, steps=20)
    assert result.best is not None and result.failed is not None
    assert result.best <= knee < result.failed
    assert result.failed - result.best <= 0.05 * result.best
    assert len(result.tried) <= 20


def test_the_search_is_bounded_by_its_steps():
    tried = []
    result = search_max_rate(lambda rate: tried.append(rate) or True, start=1.0, steps=5)
    assert tried == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert result.best == 16.0 and result.failed is None
    nothing = search_max_rate(lambda rate: False, start=8.0, steps=4)
    assert nothing.best is None and [rate for rate, _ in nothing.tried] == [8.0, 4.0, 2.0, 1.0]


def settings(**changes) -> LoadSettings:
    values = dict(
        rule=StabilityRule(window_seconds=0.25, percent=25.0, windows=2, max_windows=3),
        min_requests=1,
        warmup_seconds=0.05,
        concurrencies=(1, 2),
        rates=(20.0, 40.0),
        distribution="poisson",
        max_in_flight=4,
        p99_bound_ms=40.0,
        search_start=20.0,
        search_steps=7,
        seed=1,
    )
    values.update(changes)
    return LoadSettings(**values)


def test_max_rate_finds_the_knee_of_a_server_of_known_capacity():
    """20 ms per request, one at a time: capacity 50/s; beyond it the queue grows without bound and
    under 95 % is achieved. The p99 bound is loose enough for a busy test machine's hiccups."""
    client = QueueClient(service=0.02)
    lines: list[str] = []
    rule = StabilityRule(window_seconds=0.5, percent=25.0, windows=2, max_windows=3)
    result = run_max_rate(
        client,
        singles(client),
        settings(rule=rule, p99_bound_ms=200.0, search_start=10.0, search_steps=6),
        lines.append,
    )
    assert 10 <= result["max_rps"] <= 55  # 10/s is a fifth of the capacity
    assert result["max_rps"] < result["failed_rps"] <= 110  # 80/s achieves at most 50/s
    assert len(result["steps"]) <= 6 and result["min_achieved_fraction"] == 0.95
    assert lines[-1].startswith("max-rate: ") and "p99 ≤ 200 ms" in lines[-1]
    validate(result, "max-rate")


def test_sweep_and_rate_produce_one_measured_point_per_level():
    client = FakeClient(delay=lambda request: 0.005)
    sweep = run_sweep(client, prepare_requests(client, batches(4, 2)), settings(), lambda line: None)
    assert [p["concurrency"] for p in sweep["points"]] == [1, 2] and sweep["batch_size"] == 2
    for point in sweep["points"]:
        assert 2 <= len(point["windows"]) <= 3 and point["requests"] > 0
        assert point["images_per_second"] == pytest.approx(2 * point["requests_per_second"])
    validate(sweep, "sweep")
    rate = run_rate(client, singles(client), settings(distribution="constant"), lambda line: None)
    assert [p["offered_rps"] for p in rate["points"]] == [20.0, 40.0]
    for point in rate["points"]:
        assert point["requests_per_second"] == pytest.approx(point["offered_rps"], rel=0.25)
        assert point["dropped"] == 0 and 5 <= point["p50_ms"] < 50
    validate(rate, "rate")


def validate(result, mode):
    import jsonschema

    jsonschema.validate(result, _LOAD_MODES[mode])


# --- levels -----------------------------------------------------------------------------------


def test_levels_parse_like_perf_analyzer():
    assert parse_levels("1:8:2", int, "--concurrency-range") == (1, 3, 5, 7)
    assert parse_levels("1:4", int, "--concurrency-range") == (1, 2, 3, 4)
    assert parse_levels("1,2,4,8", int, "--concurrency-range") == (1, 2, 4, 8)
    assert parse_levels("10:40:15", float, "--request-rate-range") == (10.0, 25.0, 40.0)


@pytest.mark.parametrize("text", ["8:1", "1:8:0", "a:b", "0,1", "1:2:3:4", "", "2.5"])
def test_bad_levels_are_one_line_errors(text):
    with pytest.raises(BenchError, match="--concurrency-range"):
        parse_levels(text, int, "--concurrency-range")


# --- which scenarios `invoke bench` runs ------------------------------------------------------


def test_a_load_mode_flag_alone_chooses_its_mode_and_nothing_means_batch_and_realtime():
    assert scenarios_for(None, given=set()) == ("batch", "realtime")
    assert scenarios_for(None, given={"max-rate", "sweep"}) == ("sweep", "max-rate")
    assert scenarios_for("rate", given={"rate"}) == ("rate",)
    assert scenarios_for("all", given=set()) == ("batch", "realtime")


@pytest.mark.parametrize(
    ("scenario", "given", "message"),
    [
        ("batch", {"sweep"}, "--concurrency-range applies to the sweep scenario, not --scenario batch"),
        ("rate", {"max-rate"}, "--latency-threshold applies to the max-rate scenario"),
        ("offline", set(), "unknown scenario 'offline'; choose batch, realtime, all, sweep, rate, max-rate"),
    ],
)
def test_a_flag_the_scenario_would_ignore_is_an_error(scenario, given, message):
    with pytest.raises(BenchError, match=message):
        scenarios_for(scenario, given=given)
