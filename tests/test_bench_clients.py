"""Client logic: retries, the input check, runtime detection, in-process OpenVINO, and the tritonclient
REST and gRPC clients against the real local model server on loopback."""

import functools
import http.server
import io
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from loopback import free_ports, serving
from PIL import Image
from tritonclient.utils import InferenceServerException

from contracts.errors import BenchError
from workloads.bench.clients import (
    BadRequest,
    GrpcClient,
    InferenceClient,
    ModelMetadata,
    ModelMissing,
    NotReady,
    RequestTimeout,
    RestClient,
    RetryPolicy,
    TensorSpec,
    Unreachable,
    check_input,
    is_loopback,
    with_retries,
)
from workloads.bench.inprocess import AsyncOpenVinoClient
from workloads.bench.inputs import load_bench_images
from workloads.bench.run import detect_runtime
from workloads.bench.scenarios import ScenarioSettings, prepare_requests, run_batch, run_realtime
from workloads.data.manifest import SplitManifest

S = 16
FAST = RetryPolicy(
    connect_attempts=3, backoff_seconds=0.1, max_backoff_seconds=0.3, ready_deadline_seconds=1.0
)


def tiny_ir(directory: Path, size: int = S, weights: np.ndarray | None = None) -> Path:
    """image [-1,S,S,3] → mean colour → linear → softmax: probabilities [-1,21] that depend on the input."""
    if weights is None:
        weights = np.random.default_rng(0).normal(0, 0.05, (3, 21)).astype(np.float32)
    image = ops.parameter([-1, size, size, 3], np.float32, name="image")
    colour = ops.reduce_mean(image, ops.constant(np.array([1, 2], np.int64)), keep_dims=False)
    probabilities = ops.softmax(ops.matmul(colour, ops.constant(weights), False, False), 1)
    model = ov.Model([probabilities], [image], "tiny")
    model.output(0).get_tensor().set_names({"probabilities"})
    directory.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(directory / "model.xml"))
    return directory / "model.xml"


class Script:
    """A call that raises the scripted exceptions in turn, then returns "ok"."""

    def __init__(self, *outcomes: Exception):
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.outcomes:
            raise self.outcomes.pop(0)
        return "ok"


def test_retries_while_not_ready_with_growing_backoff():
    sleeps: list[float] = []
    call = Script(NotReady("loading"), NotReady("loading"), NotReady("loading"))
    assert with_retries(call, FAST, sleep=sleeps.append) == "ok"
    assert call.calls == 4
    assert sleeps == [0.1, 0.2, 0.3]  # doubled, capped at max_backoff_seconds


def test_not_ready_past_the_deadline_gives_up_in_one_line():
    policy = RetryPolicy(backoff_seconds=0.05, max_backoff_seconds=0.05, ready_deadline_seconds=0.3)
    call = Script(*[NotReady("model m is not ready (HTTP 503)") for _ in range(1000)])
    with pytest.raises(NotReady, match=r"HTTP 503\); still not ready after 0\.\d s") as err:
        with_retries(call, policy)
    assert 4 <= call.calls <= 8
    assert "\n" not in str(err.value)


def test_unreachable_is_retried_a_bounded_number_of_times():
    sleeps: list[float] = []
    call = Script(*[Unreachable("http://127.0.0.1:9", "connection refused") for _ in range(10)])
    with pytest.raises(Unreachable) as err:
        with_retries(call, FAST, sleep=sleeps.append)
    assert call.calls == 3 and len(sleeps) == 2
    assert str(err.value) == (
        "cannot reach http://127.0.0.1:9 after 3 tries: connection refused "
        "(is the server up? `invoke up --target local`)"
    )


def test_bad_request_is_not_retried():
    sleeps: list[float] = []
    call = Script(BadRequest("HTTP 400: wrong shape"))
    with pytest.raises(BadRequest, match="wrong shape"):
        with_retries(call, FAST, sleep=sleeps.append)
    assert call.calls == 1 and sleeps == []


def metadata(shape, datatype="FP32", name="image") -> ModelMetadata:
    return ModelMetadata("bone-marrow-int8", ("3",), "OpenVINO", (TensorSpec(name, datatype, tuple(shape)),))


def test_input_check_accepts_the_models_contract():
    check_input(metadata([-1, 64, 64, 3]), 64, "tensor", 16)
    check_input(metadata([16, 64, 64, 3]), 64, "tensor", 16)
    check_input(metadata([-1, 64, 64, 3]), 64, "jpeg", 16)  # the server decodes
    check_input(metadata([-1], "BYTES"), 64, "jpeg", 1)
    assert metadata([-1, 64, 64, 3]).latest_version == 3


def test_input_check_names_expected_and_given_shape():
    with pytest.raises(BenchError) as err:
        check_input(metadata([-1, 224, 224, 3]), 64, "tensor", 16)
    message = str(err.value)
    assert "expects 'image' FP32 [-1, 224, 224, 3]" in message
    assert "would send FP32 [16, 64, 64, 3]" in message
    assert "\n" not in message
    with pytest.raises(BenchError, match="FP32 \\[8, 64, 64, 3\\]"):
        check_input(metadata([8, 64, 64, 3]), 64, "tensor", 1)  # a fixed batch of 8 cannot take 1
    with pytest.raises(BenchError, match="has inputs \\['pixels'\\]"):
        check_input(metadata([-1, 64, 64, 3], name="pixels"), 64, "tensor", 16)
    with pytest.raises(BenchError, match="UINT8"):
        check_input(metadata([-1, 64, 64, 3], "UINT8"), 64, "tensor", 16)
    with pytest.raises(BenchError, match="cannot take encoded images"):
        check_input(metadata([-1, 21], "FP32"), 64, "jpeg", 16)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("127.0.0.1:8001", True),
        ("localhost:8001", True),
        ("http://[::1]:8000", True),
        ("grpc.example.com:443", False),
        ("https://10.0.0.5:8443", False),
    ],
)
def test_loopback_endpoints(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_a_grpc_client_given_an_http_url_says_so():
    with pytest.raises(BenchError, match=r"is an HTTP URL but bench\.protocol is grpc"):
        GrpcClient("http://127.0.0.1:8000", "m", timeout_seconds=1)


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: ECONNREFUSED",
            Unreachable,
        ),
        (grpc.StatusCode.UNAVAILABLE, "DNS resolution failed for nowhere:1", Unreachable),
        (grpc.StatusCode.UNAVAILABLE, "Model with name m is not ready.", NotReady),
        (grpc.StatusCode.INVALID_ARGUMENT, "input 'image' must have shape [N, 64, 64, 3]", BadRequest),
        (grpc.StatusCode.NOT_FOUND, "Model with name m does not exist.", ModelMissing),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", RequestTimeout),
        (grpc.StatusCode.INTERNAL, "boom", BenchError),
        (None, "unexpected response", BenchError),  # tritonclient's own, no RPC status
    ],
)
def test_grpc_status_codes_map_to_bench_errors(code, details, expected):
    """tritonclient reports an RPC's status as ``StatusCode.<NAME>``; each becomes one BenchError."""
    client = GrpcClient("127.0.0.1:1", "m", timeout_seconds=1, known_models=("a", "b"))
    try:
        error = client._error(InferenceServerException(details, status=str(code) if code else None))
    finally:
        client.close()
    assert type(error) is expected
    if expected is ModelMissing:
        assert "(it serves: a, b)" in str(error)
    if code is grpc.StatusCode.INTERNAL:
        assert str(error) == "gRPC INTERNAL from 127.0.0.1:1: boom"
    if code is None:
        assert str(error) == "gRPC call to 127.0.0.1:1 failed: unexpected response"


def test_runtime_detection_from_server_metadata():
    assert detect_runtime("OpenVINO Model Server", "") == "ovms"
    assert detect_runtime("kserve", "OpenVINO") == "kserve-openvino"
    assert detect_runtime("kserve", "tensorflow") == "kserve-v2"
    assert detect_runtime("triton", "") == "kserve-v2"


@pytest.fixture(scope="module")
def openvino_client(tmp_path_factory):
    xml = tiny_ir(tmp_path_factory.mktemp("ir"))
    return AsyncOpenVinoClient(
        xml, model="tiny", image_size=S, compile_config={"PERFORMANCE_HINT": "THROUGHPUT"}
    )


def test_openvino_client_answers_probabilities_and_jpeg_equals_decoded_tensor(openvino_client):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (2, S, S, 3), dtype=np.uint8)
    files = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")  # lossless: decoding gives the same pixels
        files.append(buffer.getvalue())
    from_tensor = openvino_client.infer(pixels.astype(np.float32))
    from_files = openvino_client.infer(files)
    assert from_tensor.shape == (2, 21)
    np.testing.assert_allclose(from_tensor.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(from_files, from_tensor)
    assert openvino_client.model_metadata().inputs[0].shape == (-1, S, S, 3)


def test_openvino_client_is_safe_to_call_from_many_threads(openvino_client):
    batches = [np.full((1, S, S, 3), float(i), np.float32) for i in range(8)]
    expected = [openvino_client.infer(b) for b in batches]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(20):
            results[i] = openvino_client.infer(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_array_equal(results[i], expected[i])


def test_openvino_client_wrong_shape_is_a_bad_request(openvino_client):
    with pytest.raises(BadRequest, match="OpenVINO rejected a batch of shape \\(1, 8, 8, 3\\)"):
        openvino_client.infer(np.zeros((1, 8, 8, 3), np.float32))


def test_every_client_names_its_endpoint_through_the_interface():
    rest = RestClient("127.0.0.1:8000/", "m", timeout_seconds=1)
    grpc_client = GrpcClient("grpc://127.0.0.1:8001", "m", timeout_seconds=1)
    try:
        clients: list[InferenceClient] = [rest, grpc_client]
        assert [c.endpoint for c in clients] == ["http://127.0.0.1:8000", "127.0.0.1:8001"]
    finally:
        rest.close()
        grpc_client.close()


class _HtmlEverywhere(http.server.BaseHTTPRequestHandler):
    """A web server that is no model server: 200 with an HTML page for every path."""

    def do_GET(self) -> None:
        body = b"<html><body>hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain_http(tmp_path):
    """`python -m http.server` on 127.0.0.1: 404 for /v2/..., or (html=True) 200 HTML everywhere."""
    servers = []

    def start(html: bool = False) -> str:
        handler = _HtmlEverywhere if html else functools.partial(_Quiet, directory=str(tmp_path))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("html", [False, True], ids=["404", "200-html"])
def test_a_plain_http_server_is_named_as_not_a_kserve_v2_server(plain_http, html):
    url = plain_http(html)
    client = RestClient(url, "bone-marrow-int8", timeout_seconds=5, retry=FAST)
    try:
        with pytest.raises(BenchError, match=r"is not a KServe v2 server \(GET .*/v2 answered HTTP") as error:
            client.model_metadata()
        message = str(error.value)
        assert "\n" not in message and url in message
        assert "invoke optimize" not in message
        assert client.server_metadata() is None
    finally:
        client.close()


@pytest.mark.parametrize("client_class", [RestClient, GrpcClient])
def test_a_closed_port_is_unreachable_in_one_line(client_class):
    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}" if client_class is RestClient else f"127.0.0.1:{port}"
    client = client_class(endpoint, "m", timeout_seconds=5, retry=FAST)
    try:
        with pytest.raises(Unreachable) as err:
            client.server_metadata()
        with pytest.raises(Unreachable):
            client.infer(np.zeros((1, S, S, 3), np.float32))
    finally:
        client.close()
    message = str(err.value)
    assert message.startswith(f"cannot reach {client.endpoint} after 3 tries: ") and "\n" not in message


class ThreadRecorder(InferenceClient):
    """Answers at once and records the thread of every send."""

    kind, model = "recorder", "recorder"

    def __init__(self) -> None:
        self.threads: set[str] = set()  # names: identifiers of ended threads are reused

    def prepare(self, batch):
        return batch

    def send(self, prepared):
        self.threads.add(threading.current_thread().name)
        time.sleep(0.001)
        return np.full((len(prepared), 21), 1 / 21, np.float32)

    def model_metadata(self) -> ModelMetadata:
        return ModelMetadata(self.model)


@pytest.mark.parametrize("scenario", ["batch", "realtime"])
def test_a_scenario_sends_from_the_same_threads_from_warm_up_to_the_last_repetition(scenario):
    """What a client keeps per thread (tritonclient.http's connection) is made in the warm-up: the
    repetitions reuse those threads, so no measured request pays for a new connection."""
    client = ThreadRecorder()
    settings = ScenarioSettings(
        batch_size=2,
        concurrency=3,
        warmup_seconds=0.05,
        min_duration_seconds=0.02,
        min_requests=10,
        repetitions=3,
        paper_images=2,
    )
    singles = prepare_requests(client, [np.zeros((1, S, S, 3), np.float32) for _ in range(2)])
    if scenario == "batch":
        run_batch(client, prepare_requests(client, [np.zeros((2, S, S, 3), np.float32)]), settings, print)
    else:
        run_realtime(client, singles, settings, print)
    assert len(client.threads) == (3 if scenario == "batch" else 1)


# --- against the real local model server --------------------------------------------------------

SERVED = 64  # the served_repository model's image size


@pytest.fixture(scope="module")
def local_server(tmp_path_factory, served_repository):
    with serving(tmp_path_factory.mktemp("clients"), served_repository) as info:
        yield info


@pytest.fixture(scope="module")
def bench_images(served_repository):
    return load_bench_images(SplitManifest.load(served_repository / "data" / "split.json"), 6, SERVED)


def server_clients(info) -> list[InferenceClient]:
    return [
        RestClient(info.http_url, "bone-marrow-fp32", timeout_seconds=10, retry=FAST),
        GrpcClient(info.grpc_target, "bone-marrow-fp32", timeout_seconds=10, retry=FAST),
    ]


@pytest.mark.slow
def test_rest_and_grpc_answer_as_the_model_does_in_process(local_server, bench_images, served_repository):
    """Both tritonclient clients, tensors and JPEG files: the server's answers equal the IR's in process."""
    (xml,) = (served_repository / "models" / "bone-marrow-fp32").glob("*/model.xml")
    reference = AsyncOpenVinoClient(xml, model="fp32", image_size=SERVED, compile_config={})
    indices = list(range(len(bench_images)))
    expected = {fmt: reference.infer(bench_images.batch(indices, fmt)) for fmt in ("tensor", "jpeg")}
    for client in server_clients(local_server):
        try:
            assert client.server_metadata().name == "kserve"
            assert client.model_metadata().inputs == (TensorSpec("image", "FP32", (-1, SERVED, SERVED, 3)),)
            client.wait_until_ready()
            for input_format, answer in expected.items():
                got = client.send(client.prepare(bench_images.batch(indices, input_format)))
                assert got.dtype == np.float32 and got.shape == (len(indices), 21)
                np.testing.assert_allclose(got, answer, atol=1e-3, err_msg=f"{client.kind} {input_format}")
        finally:
            client.close()


def send_from_fresh_threads(client: InferenceClient, prepared: list, expected: list) -> list[str]:
    """Three runs of four new threads, each sending every request: what differs from ``expected``."""
    failures: list[str] = []

    def work(offset: int) -> None:
        for n in range(12):
            i = (offset + n) % len(prepared)
            if not np.array_equal(client.send(prepared[i]), expected[i]):
                failures.append(f"{client.kind}: thread {offset} request {n} got another answer")

    for _ in range(3):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return failures


@pytest.mark.slow
def test_concurrent_senders_each_get_their_answer_and_ended_threads_free_their_connection(
    local_server, bench_images
):
    """tritonclient.http is bound to its thread: the REST client keeps one per live thread, closing
    those of ended threads; gRPC shares one channel. As the load generator does: fresh threads per run."""
    singles = [bench_images.batch([i], "tensor") for i in range(len(bench_images))]
    for client in server_clients(local_server):
        try:
            prepared = [client.prepare(batch) for batch in singles]
            expected = [client.send(request) for request in prepared]
            assert send_from_fresh_threads(client, prepared, expected) == []
            if isinstance(client, RestClient):
                # This thread's and the last run's four: the eight of earlier runs were closed when
                # the next run's threads made theirs.
                assert len(client._clients._owned) == 1 + 4
        finally:
            client.close()
