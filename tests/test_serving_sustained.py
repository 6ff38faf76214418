"""A sustained load on the local model server: 10,000 batch-1 requests, 8 in flight, zero errors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from loopback import serving

from workloads.classes import CLASS_CODES

pytestmark = pytest.mark.slow

S = 64
REQUESTS = 10_000
CONCURRENCY = 8
TIME_LIMIT_SECONDS = 150.0  # the run stops (and fails) past this, whatever the count
REQUEST_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, served_repository):
    with serving(tmp_path_factory.mktemp("sustained"), served_repository) as info:
        yield info


def _sustained_grpc(target: str, images: np.ndarray) -> tuple[int, list[str], float]:
    """gRPC (faster than REST here); each request sends one of a few images and checks the answer.

    ``CONCURRENCY`` threads share one channel with blocking calls, as `invoke bench`'s client does.
    """
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, S, S, 3])
    requests = [
        pb.ModelInferRequest(
            model_name="bone-marrow-int8", inputs=[tensor], raw_input_contents=[image.tobytes()]
        )
        for image in images
    ]
    lock = threading.Lock()
    done = 0
    errors: list[str] = []
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    answers: dict[int, bytes] = {}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def worker(offset: int) -> None:
            nonlocal done
            index = offset
            while index < REQUESTS and time.monotonic() < deadline:
                which = index % len(requests)
                try:
                    response = stub.ModelInfer(requests[which], timeout=REQUEST_TIMEOUT_SECONDS)
                    raw = response.raw_output_contents[0]
                    with lock:
                        if len(raw) != 4 * len(CLASS_CODES) or answers.setdefault(which, raw) != raw:
                            errors.append(f"request {index}: unexpected answer")
                except grpc.RpcError as exc:
                    with lock:
                        errors.append(f"request {index}: {exc.code()} {exc.details()}")
                with lock:
                    done += 1
                index += CONCURRENCY

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            for future in [pool.submit(worker, i) for i in range(CONCURRENCY)]:
                future.result()
        seconds = time.perf_counter() - started
    return done, errors, seconds


def test_ten_thousand_requests_without_an_error(server, record_property):
    images = np.random.default_rng(0).uniform(0, 255, (4, 1, S, S, 3)).astype(np.float32)
    done, errors, seconds = _sustained_grpc(server.grpc_target, images)
    rate = done / seconds
    record_property("requests_per_second", round(rate, 1))
    print(f"sustained gRPC: {done} requests in {seconds:.1f} s = {rate:.0f} requests/s, {len(errors)} errors")
    assert errors == [], errors[:5]
    assert done == REQUESTS, f"only {done} of {REQUESTS} requests within {TIME_LIMIT_SECONDS:g} s"
    with httpx.Client(trust_env=False) as client:
        assert client.get(f"{server.http_url}/v2/health/ready").json() == {"ready": True}
