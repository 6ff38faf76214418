"""The load generator and the two scenarios, with a fake in-process client of known latency."""

import threading
import time

import numpy as np
import pytest

from contracts.errors import BenchError
from workloads.bench.clients import InferenceClient, ModelMetadata
from workloads.bench.scenarios import (
    Prepared,
    ScenarioSettings,
    prepare_requests,
    run_batch,
    run_load,
    run_realtime,
)


class FakeClient(InferenceClient):
    """Answers uniform probabilities after ``delay(request)`` seconds; can fail on one call."""

    kind = "fake"
    model = "fake"

    def __init__(
        self, delay=lambda request: 0.001, fail_on_call: int | None = None, short_answer: bool = False
    ):
        self.delay = delay
        self.fail_on_call = fail_on_call
        self.short_answer = short_answer
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.prepared = 0
        self._lock = threading.Lock()

    def prepare(self, batch):
        self.prepared += 1
        return batch

    def send(self, prepared):
        with self._lock:
            self.calls += 1
            call = self.calls
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay(prepared))
            if call == self.fail_on_call:
                raise BenchError("boom: HTTP 500")
            return np.full((len(prepared) - int(self.short_answer), 21), 1 / 21, np.float32)
        finally:
            with self._lock:
                self.in_flight -= 1

    def model_metadata(self):
        return ModelMetadata("fake")


def settings(**changes) -> ScenarioSettings:
    values = dict(
        batch_size=4,
        concurrency=3,
        warmup_seconds=0.05,
        min_duration_seconds=0.1,
        min_requests=5,
        repetitions=3,
        paper_images=10,
    )
    values.update(changes)
    return ScenarioSettings(**values)


def batches(count: int, size: int) -> list[np.ndarray]:
    return [np.full((size, 2, 2, 3), float(i), np.float32) for i in range(count)]


def test_requests_are_prepared_once_before_sending():
    client = FakeClient()
    requests = prepare_requests(client, batches(3, 4))
    assert client.prepared == 3 and all(r.images == 4 for r in requests)
    run_load(client, requests, concurrency=2, min_seconds=0.0, min_requests=12)
    assert client.prepared == 3 and client.calls == 12


def test_min_requests_bounds_a_short_window_exactly():
    client = FakeClient(delay=lambda r: 0.0)
    window = run_load(
        client, prepare_requests(client, batches(2, 4)), concurrency=3, min_seconds=0.0, min_requests=7
    )
    assert window.requests == 7 and window.errors == 0
    assert sum(window.images) == 28


def test_min_duration_keeps_the_load_running():
    client = FakeClient(delay=lambda r: 0.01)
    window = run_load(
        client, prepare_requests(client, batches(2, 4)), concurrency=2, min_seconds=0.25, min_requests=1
    )
    assert window.seconds >= 0.25
    assert window.requests >= 10  # 2 workers × 0.25 s / 10 ms, well above the 1 required
    assert client.max_in_flight == 2


def test_batch_repetitions_honour_both_minimums_and_report_progress():
    client = FakeClient(delay=lambda r: 0.005)
    lines: list[str] = []
    config = settings(min_duration_seconds=0.15, min_requests=40)
    result = run_batch(client, prepare_requests(client, batches(4, 4)), config, lines.append)

    assert len(result.repetitions) == 3
    for repetition in result.repetitions:
        assert repetition.requests >= 40
        assert repetition.seconds >= 0.15
        assert repetition.errors == 0
        assert repetition.images == repetition.requests * 4
        assert repetition.images_per_second == pytest.approx(repetition.images / repetition.seconds)
    assert client.calls > sum(r.requests for r in result.repetitions)  # the warm-up ran too
    assert [line.split(":")[0] for line in lines] == ["batch 1/3", "batch 2/3", "batch 3/3"]
    assert "images/s" in lines[0] and "median so far" in lines[-1]
    summary = result.as_dict()["summary"]["images_per_second"]
    figures = sorted(r.images_per_second for r in result.repetitions)
    assert summary == {"median": figures[1], "min": figures[0], "max": figures[2]}
    # 3 workers with 5 ms per request: far more than one worker could do.
    assert summary["median"] > 4 / 0.005 * 1.5


def test_realtime_is_one_image_at_a_time_and_the_paper_figure_is_its_first_images():
    # The first 10 pool images are slow (20 ms), the others fast: the paper's average sees
    # only slow ones, the window's mean mostly fast ones.
    client = FakeClient(delay=lambda r: 0.02 if r[0, 0, 0, 0] < 10 else 0.001)
    requests = prepare_requests(client, [np.full((1, 2, 2, 3), float(i), np.float32) for i in range(30)])
    lines: list[str] = []
    result = run_realtime(
        client, requests, settings(min_duration_seconds=0.05, min_requests=30), lines.append
    )

    assert client.max_in_flight == 1
    for repetition in result.repetitions:
        assert repetition.requests >= 30
        assert repetition.paper_avg_ms >= 20
        assert repetition.mean_ms < repetition.paper_avg_ms
        assert repetition.p50_ms < 20 <= repetition.p90_ms <= repetition.p99_ms
    summary = result.as_dict()["summary"]
    assert set(summary) == {"mean_ms", "p50_ms", "p90_ms", "p99_ms", "paper_avg_ms"}
    assert lines[0].startswith("realtime 1/3: mean ") and "paper avg (10 images)" in lines[0]


def test_realtime_needs_enough_distinct_single_images():
    client = FakeClient()
    with pytest.raises(BenchError, match="at least 10 single-image requests"):
        run_realtime(client, prepare_requests(client, batches(5, 1)), settings(), print)
    with pytest.raises(BenchError, match="single-image"):
        run_realtime(client, prepare_requests(client, batches(12, 2)), settings(), print)


def test_an_error_in_a_repetition_fails_the_run():
    client = FakeClient(fail_on_call=30)
    with pytest.raises(BenchError) as err:
        run_batch(client, prepare_requests(client, batches(4, 4)), settings(warmup_seconds=0), print)
    message = str(err.value)
    assert message.startswith("batch repetition 1: 1 of ")
    assert "a benchmark with errors is not a result; first error: boom: HTTP 500" in message


def test_an_error_during_warm_up_fails_before_measuring():
    client = FakeClient(fail_on_call=1)
    lines: list[str] = []
    with pytest.raises(BenchError, match=r"^warm-up: 1 of 1 requests failed"):
        run_realtime(client, [Prepared(np.zeros((1, 2, 2, 3)), 1)] * 10, settings(), lines.append)
    assert lines == []


def test_a_wrong_number_of_answers_counts_as_an_error():
    client = FakeClient(short_answer=True)
    with pytest.raises(BenchError, match="4 images sent, 3 answers received"):
        run_batch(client, prepare_requests(client, batches(2, 4)), settings(), print)
