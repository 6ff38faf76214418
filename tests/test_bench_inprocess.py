"""The benchmark_app-style in-process runner: an AsyncInferQueue with answers equal to sync infer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from contracts.errors import BenchError
from workloads.bench.clients import BadRequest
from workloads.bench.inprocess import AsyncOpenVinoClient, AsyncRunner, compile_ir, optimal_nireq
from workloads.bench.scenarios import prepare_requests, run_load

S = 8
PROPERTIES = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def tiny_xml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_bench_clients import tiny_ir

    return tiny_ir(tmp_path_factory.mktemp("tiny"), size=S)


def images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, S, S, 3)).astype(np.float32)


def sync_infer(xml: Path, batch: np.ndarray) -> np.ndarray:
    compiled = ov.Core().compile_model(str(xml), "CPU", PROPERTIES)
    return np.array(compiled.create_infer_request().infer({"image": batch})["probabilities"])


def test_the_queue_answers_every_batch_in_order_as_sync_infer_does(tiny_xml):
    runner = AsyncRunner(compile_ir(tiny_xml, PROPERTIES), nireq=3)
    batches = [images(4, seed) for seed in range(10)]
    outputs = runner.infer_all(batches)
    assert len(outputs) == 10
    for batch, output in zip(batches, outputs, strict=True):
        expected = sync_infer(tiny_xml, batch)
        np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
        assert (output.argmax(1) == expected.argmax(1)).all()
    # distinct inputs, distinct answers: the outputs are not one request's buffer seen ten times
    assert len({output.tobytes() for output in outputs}) == 10


def test_nireq_defaults_to_openvinos_optimal_number(tiny_xml):
    compiled = compile_ir(tiny_xml, PROPERTIES)
    assert AsyncRunner(compiled).nireq == optimal_nireq(compiled) >= 1
    assert AsyncRunner(compiled, nireq=5).nireq == 5
    with pytest.raises(BenchError, match="nireq must be >= 0"):
        AsyncRunner(compiled, nireq=-1)


def test_a_static_batch_is_made_as_benchmark_app_reshapes(tiny_xml):
    static = compile_ir(tiny_xml, PROPERTIES, batch_size=4)
    assert [d.get_length() for d in static.input("image").get_partial_shape()] == [4, S, S, 3]
    assert compile_ir(tiny_xml, PROPERTIES).input("image").get_partial_shape()[0].is_dynamic


@pytest.mark.parametrize("batch_size", [None, 4])
def test_every_request_of_the_queue_has_run_once_before_any_callback_thread(tiny_xml, batch_size):
    # The queue's callbacks read outputs in OpenVINO's threads; the first numpy use of a tensor must
    # not happen there concurrently (workloads.openvino_warmup): the constructor runs each request.
    runner = AsyncRunner(compile_ir(tiny_xml, PROPERTIES, batch_size=batch_size), nireq=3)
    shapes = [tuple(runner._queue[i].get_output_tensor(0).shape) for i in range(3)]
    assert shapes == [(batch_size or 1, 21)] * 3  # run on zeros: a dynamic batch as 1, a static as is
    assert runner.submit(images(batch_size or 2, 1)).shape == (batch_size or 2, 21)


def test_the_loop_runs_at_least_the_requests_asked_for(tiny_xml):
    runner = AsyncRunner(compile_ir(tiny_xml, PROPERTIES), nireq=2)
    window = runner.run([images(4, 0), images(4, 1)], min_seconds=0.0, min_requests=25)
    assert window.requests == 25  # no time bound: exactly the count, every one completed
    assert len(window.latencies_ms) == 25 and window.images == 100
    assert all(latency > 0 for latency in window.latencies_ms)
    assert window.images_per_second == pytest.approx(100 / window.seconds)
    assert window.nireq == 2


def test_the_loop_ends_once_the_duration_has_passed(tiny_xml):
    runner = AsyncRunner(compile_ir(tiny_xml, PROPERTIES), nireq=2)
    window = runner.run([images(2, 0)], min_seconds=0.3, min_requests=1)
    assert 0.3 <= window.seconds < 2.0  # the bound plus the requests in flight, not an endless loop
    assert window.requests > 2  # the duration, not the single request asked for, ended it
    assert window.requests == len(window.latencies_ms)


def test_the_loop_refuses_mixed_batch_sizes_and_no_batches(tiny_xml):
    runner = AsyncRunner(compile_ir(tiny_xml, PROPERTIES), nireq=2)
    with pytest.raises(BenchError, match=r"one size, got sizes \[2, 3\]"):
        runner.run([images(2, 0), images(3, 0)], min_seconds=0, min_requests=1)
    with pytest.raises(BenchError, match="no batches"):
        runner.run([], min_seconds=0, min_requests=1)


def test_the_bench_client_answers_callers_on_many_threads_correctly(tiny_xml):
    client = AsyncOpenVinoClient(tiny_xml, model="tiny", image_size=S, compile_config=PROPERTIES, nireq=2)
    batches = [images(3, seed) for seed in range(12)]
    with ThreadPoolExecutor(6) as threads:  # more callers than infer requests
        answers = list(threads.map(client.infer, batches))
    for batch, answer in zip(batches, answers, strict=True):
        np.testing.assert_allclose(answer, sync_infer(tiny_xml, batch), rtol=1e-5, atol=1e-6)
    assert client.model_metadata().inputs[0].shape == (-1, S, S, 3)
    assert client.nireq == 2
    client.close()


def test_the_bench_client_under_the_closed_loop(tiny_xml):
    client = AsyncOpenVinoClient(tiny_xml, model="tiny", image_size=S, compile_config=PROPERTIES)
    window = run_load(
        client, prepare_requests(client, [images(2, s) for s in range(4)]), concurrency=3, min_seconds=0.0,
        min_requests=30,
    )  # fmt: skip
    assert window.errors == 0 and window.requests == 30 and sum(window.images) == 60


def test_a_batch_of_the_wrong_shape_is_one_bad_request(tiny_xml):
    client = AsyncOpenVinoClient(tiny_xml, model="tiny", image_size=S, compile_config=PROPERTIES)
    with pytest.raises(BadRequest, match=r"OpenVINO rejected a batch of shape \(1, 5, 5, 3\)"):
        client.infer(np.zeros((1, 5, 5, 3), np.float32))
