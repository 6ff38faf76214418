"""Hostile input against the local model server: every limit is a 4xx with one log line, and the
server answers a normal request after each (serving.max_*, serving.*_timeout_seconds)."""

from __future__ import annotations

import io
import re
import socket
import struct
import zlib
from contextlib import closing
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.infer_type import InferInput
from loopback import free_ports
from PIL import Image

from contracts.config import ConfigError, load_config
from workloads.serving import local, server
from workloads.serving.binary import decode_binary_request, decode_rest_request
from workloads.serving.inputs import decode_images, encoded_images, tensor_batch
from workloads.serving.limits import RequestLimits

S = 64  # the served_repository model's image size
HEADER = "inference-header-content-length"
MODEL = "bone-marrow-int8"
INFER = f"/v2/models/{MODEL}/infer"
# Small limits, so that the tests need no big payloads.
LIMITS = {
    "max_request_bytes": 1024 * 1024,
    "max_batch_size": 8,
    "max_image_pixels": 1024 * 1024,
    "max_request_pixels": 2 * 1024 * 1024,
    "header_timeout_seconds": 1.0,
    "body_timeout_seconds": 2.0,
}
WAIT_SECONDS = 15.0  # the most any socket read here waits (a bound, not a measured figure)


# --- pieces, no server -------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width × height (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_limits_are_validated_config_with_one_line_errors():
    serving = load_config({}).serving
    assert RequestLimits.from_config(serving) == RequestLimits.defaults()
    for bad, message in (
        ({"max_request_bytes": 0}, "serving.max_request_bytes must be > 0"),
        ({"max_batch_size": -1}, "serving.max_batch_size must be > 0"),
        ({"header_timeout_seconds": 0}, "serving.header_timeout_seconds must be > 0"),
        ({"max_request_pixels": 10}, "serving.max_request_pixels (10) must be >="),
        ({"max_request_bytes": 2**31}, "gRPC's limit"),
    ):
        with pytest.raises(ConfigError) as error:
            load_config({"serving": bad})
        assert message in str(error.value) and "\n" not in str(error.value)


def test_limits_reach_the_server_command_line():
    limits = RequestLimits.from_config(load_config({"serving": LIMITS}).serving)
    args = server.parse_args(["--model-repository", "x", *limits.arguments()])
    assert RequestLimits.from_args(args) == limits
    with pytest.raises(SystemExit):
        server.parse_args(["--model-repository", "x", "--max-batch-size", "0"])


def test_a_shape_whose_element_count_overflows_int64_is_invalid_input():
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [2**40, 2**40, 64, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 0},
                }
            ]
        }
    )
    with pytest.raises(InvalidInput, match="needs 928455029464035206174343168"):
        decode_binary_request(header, str(len(header)), "m")
    huge = InferInput("image", [2**62, S, S, 3], "FP32", data=[0.0])
    with pytest.raises(InvalidInput, match="at most 256 per request"):
        tensor_batch(huge, S)


@pytest.mark.parametrize(
    "value",
    [
        np.nan,
        np.inf,
        -np.inf,
        1e30,
        -1.0,
        255.5,
        np.nextafter(np.float32(255), np.float32(np.inf)),  # the next float above 255
        -np.float32(1e-45),  # the smallest negative (subnormal) float
    ],
)
def test_non_finite_and_out_of_range_pixels_are_invalid_input(value):
    batch = np.full((2, 4, 4, 3), 128.0, np.float32)
    batch[1, 2, 3, 1] = value
    tensor = InferInput("image", list(batch.shape), "FP32", data=batch)
    message = "NaN or infinite" if not np.isfinite(value) else "the model takes RGB pixels 0..255"
    with pytest.raises(InvalidInput, match=message):
        tensor_batch(tensor, 4)
    batch[1, 2, 3, 1] = 255.0
    accepted = tensor_batch(InferInput("image", [2, 4, 4, 3], "FP32", data=batch), 4)
    np.testing.assert_array_equal(accepted, batch)


def test_the_range_edges_and_negative_zero_are_valid_pixels():
    edges = np.array([0.0, -0.0, 255.0, np.float32(1e-45)], np.float32)  # 1e-45: the smallest subnormal
    batch = np.resize(edges, (1, 4, 4, 3))
    accepted = tensor_batch(InferInput("image", [1, 4, 4, 3], "FP32", data=batch), 4)
    np.testing.assert_array_equal(accepted, batch)


def test_image_headers_are_checked_before_anything_is_decoded():
    limits = RequestLimits.defaults().replace(max_image_pixels=100 * 100, max_request_pixels=2 * 100 * 100)
    assert decode_images([png(100, 100), png(50, 50)], 8, limits).shape == (2, 8, 8, 3)
    # 20000 × 20000 declared in 200 bytes: refused from the header (decoding it would need 1.2 GB).
    for bomb in (png_header_only(20000, 20000), png_header_only(101, 100)):
        with pytest.raises(InvalidInput, match=r"serving\.max_image_pixels"):
            decode_images([png(8, 8), bomb], 8, limits)
    with pytest.raises(InvalidInput, match=r"serving\.max_request_pixels"):
        decode_images([png(100, 100)] * 3, 8, limits)
    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, format="GIF")
    with pytest.raises(InvalidInput, match=r"not a decodable image \(JPEG or PNG"):
        decode_images([gif.getvalue()], 8, limits)
    too_many = InferInput("image", [9], "BYTES", data=[b"x"] * 9)
    with pytest.raises(InvalidInput, match=r"serving\.max_batch_size"):
        encoded_images(too_many, RequestLimits.defaults().replace(max_batch_size=8))


def test_json_tensors_become_arrays_checked_against_their_shape():
    batch = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    for data in (batch.ravel().tolist(), batch.tolist()):  # flat or nested, row-major
        body = orjson.dumps(
            {"inputs": [{"name": "image", "shape": [2, 3, 3, 3], "datatype": "FP32", "data": data}]}
        )
        (infer_input,) = decode_rest_request(body, None, "m").inputs
        assert isinstance(infer_input.data, np.ndarray) and infer_input.data.dtype == np.float32
        np.testing.assert_array_equal(tensor_batch(infer_input, 3), batch)
    for data, datatype, message in (
        ([1.0] * 5, "FP32", "has 5 values in 'data'; shape [2, 3, 3, 3] FP32 needs 54"),
        ([300] * 54, "INT8", "has values from 300 to 300; INT8 holds -128..127"),
        ([1.5] * 54, "INT32", "of integers for INT32"),
        ([None] * 54, "FP32", "of numbers for FP32"),
        ([0.0] * 54, "FP16", "must be sent as binary data"),
    ):
        body = orjson.dumps(
            {"inputs": [{"name": "image", "shape": [2, 3, 3, 3], "datatype": datatype, "data": data}]}
        )
        with pytest.raises(InvalidInput, match=re.escape(message)):
            decode_rest_request(body, None, "m")


def test_a_body_without_the_header_is_all_json_and_a_binary_one_says_what_it_lacks():
    image = np.zeros((1, S, S, 3), np.float32)
    body, headers = binary(image)
    assert len(decode_rest_request(body, headers[HEADER], "m").inputs) == 1
    with pytest.raises(InvalidInput, match=f"not valid JSON .*needs the {HEADER} header"):
        decode_rest_request(body, None, "m")
    with pytest.raises(InvalidInput, match=f"binary request body needs the {HEADER} header"):
        decode_binary_request(body, None, "m")


# --- against a real server on loopback -------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory, served_repository):
    artifacts = tmp_path_factory.mktemp("limits")
    (artifacts / "models").symlink_to(served_repository / "models")
    http_port, grpc_port = free_ports(2)
    config = load_config(
        {
            "artifacts_dir": str(artifacts),
            "serving": {"http_port": http_port, "grpc_port": grpc_port, "precisions": ["int8"], **LIMITS},
        }
    )
    info = local.start(config, progress=lambda line: None)
    try:
        yield info
    finally:
        local.stop(config, progress=lambda line: None)


@pytest.fixture(scope="module")
def rest(limited):
    with httpx.Client(base_url=limited.http_url, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(limited):
    channel = grpc.insecure_channel(limited.grpc_target)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


@pytest.fixture
def log_lines(limited):
    """The server log lines written during the test (read after the test's requests)."""
    path = Path(limited.log_path)
    start = path.stat().st_size

    def new() -> list[str]:
        with path.open("rb") as log:
            log.seek(start)
            return [line for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]

    return new


def binary(array: np.ndarray, datatype: str = "FP32", shape: list[int] | None = None):
    raw = array.tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": shape or list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    return header + raw, {"content-type": "application/octet-stream", HEADER: str(len(header))}


def bytes_body(images: list[bytes]):
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [len(images)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    return header + raw, {"content-type": "application/octet-stream", HEADER: str(len(header))}


def assert_still_serving(rest, stub):
    """Ready, and a normal request over REST and gRPC is answered."""
    assert rest.get("/v2/health/ready").json() == {"ready": True}
    image = np.random.default_rng(0).uniform(0, 255, (1, S, S, 3)).astype(np.float32)
    body, headers = binary(image)
    response = rest.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, S, S, 3])
    answer = stub.ModelInfer(
        pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[image.tobytes()]),
        timeout=30,
    )
    assert len(answer.raw_output_contents[0]) == 4 * 21


def assert_one_line_each(lines: list[str], count: int, marker: str = "rejected a ") -> None:
    refused = [line for line in lines if marker in line]
    assert len(refused) == count, lines
    assert not any("Traceback" in line or "Exception in ASGI" in line for line in lines), lines


def raw_http(limited) -> socket.socket:
    host, port = limited.http_url.removeprefix("http://").rsplit(":", 1)
    connection = socket.create_connection((host, int(port)), timeout=WAIT_SECONDS)
    connection.settimeout(WAIT_SECONDS)
    return connection


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes; bounded by WAIT_SECONDS per read and 100 reads."""
    data = b""
    for _ in range(100):
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_decompression_bombs_are_400(limited, rest, stub, log_lines):
    cases = [
        ([png_header_only(20000, 20000)], "serving.max_image_pixels"),
        ([png(2000, 2000)], "serving.max_image_pixels"),  # a real 4 Mpx PNG of a few KB
        ([png(1000, 1000)] * 3, "serving.max_request_pixels"),
    ]
    for images, message in cases:
        body, headers = bytes_body(images)
        assert len(body) < 64 * 1024
        response = rest.post(INFER, content=body, headers=headers)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    bomb = png_header_only(20000, 20000)
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(
            pb.ModelInferRequest(
                model_name=MODEL,
                inputs=[tensor],
                raw_input_contents=[struct.pack("<I", len(bomb)) + bomb],
            ),
            timeout=30,
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "serving.max_image_pixels" in error.value.details()
    assert_still_serving(rest, stub)
    assert_one_line_each(log_lines(), len(cases) + 1)


def test_a_body_above_the_limit_is_413_before_it_is_read(limited, rest, stub, log_lines):
    declared = 100 * 1024 * 1024
    with closing(raw_http(limited)) as connection:
        connection.sendall(
            f"POST {INFER} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n"
            f"{HEADER}: 10\r\ncontent-length: {declared}\r\n\r\n".encode()
            + b"x" * 1000
        )
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"serving.max_request_bytes" in answer and b"connection: close" in answer

    # Chunked: no length up front; refused as soon as the body grows past the limit.
    with closing(raw_http(limited)) as connection:
        connection.sendall(
            f"POST {INFER} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n"
            f"{HEADER}: 10\r\ntransfer-encoding: chunked\r\n\r\n".encode()
        )
        piece = b"%x\r\n" % (256 * 1024) + b"y" * (256 * 1024) + b"\r\n"
        for _ in range(5):  # 1.25 MiB > 1 MiB
            connection.sendall(piece)
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]

    # A client that writes a whole oversized body before reading (httpx) still gets the answer.
    too_big = np.zeros((30, S, S, 3), np.float32)  # 48 KiB per image: 1.4 MiB > 1 MiB
    body, headers = binary(too_big)
    assert len(body) > LIMITS["max_request_bytes"]
    big = rest.post(INFER, content=body, headers=headers)
    assert big.status_code == 413
    assert_still_serving(rest, stub)
    assert_one_line_each(log_lines(), 3)


def json_body(batch: np.ndarray) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "data": batch.ravel().tolist(),
                }
            ]
        }
    )


def test_json_bodies_meet_the_same_limits(limited, rest, stub, log_lines):
    """No content type and no binary extension: the body limit, the batch limit and the checks hold."""
    with closing(raw_http(limited)) as connection:
        connection.sendall(
            f"POST {INFER} HTTP/1.1\r\nhost: x\r\ncontent-length: {100 * 1024 * 1024}\r\n\r\n".encode()
            + b'{"inputs": [' * 100
        )
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"serving.max_request_bytes" in answer, answer[:200]

    too_big = json_body(np.full((30, S, S, 3), 1.0, np.float32))
    assert len(too_big) > LIMITS["max_request_bytes"]
    assert rest.post(INFER, content=too_big).status_code == 413

    cases = [
        (json_body(np.zeros((9, S, S, 3), np.float32)), "at most 8 per request (serving.max_batch_size)"),
        (json_body(np.full((1, S, S, 3), -5.0, np.float32)), "the model takes RGB pixels 0..255"),
        (
            orjson.dumps(
                {"inputs": [{"name": "image", "shape": [2**40, S, S, 3], "datatype": "FP32", "data": [1.0]}]}
            ),
            "has 1 values in 'data'",
        ),
    ]
    for body, message in cases:
        assert len(body) < LIMITS["max_request_bytes"]
        response = rest.post(
            INFER, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 400 and message in response.json()["error"], response.text
    assert_still_serving(rest, stub)
    assert_one_line_each(log_lines(), 2 + len(cases))


def test_grpc_messages_above_the_limit_are_resource_exhausted(rest, stub):
    batch = np.zeros((30, S, S, 3), np.float32)  # 48 KiB per image: 1.4 MiB > 1 MiB
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=list(batch.shape))
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(
            pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[batch.tobytes()]),
            timeout=30,
        )
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(rest, stub)


def test_overflowing_shapes_oversized_batches_and_bad_pixels_are_400(rest, stub, log_lines):
    image = np.full((1, S, S, 3), 100.0, np.float32)
    overflow = [2**40, 2**40, 64, 3]
    requests = [
        (binary(image, shape=overflow), "needs"),
        (binary(image, shape=[2**40, S, S, 3]), "needs"),
        (binary(np.zeros((9, 2, 2, 3), np.float32), shape=[9, 2, 2, 3]), "must have shape"),
    ]
    for value in (np.nan, np.inf, 1e30, -5.0):
        bad = image.copy()
        bad[0, 1, 2, 0] = value
        requests.append((binary(bad), "pixels"))
    for (body, headers), message in requests:
        response = rest.post(INFER, content=body, headers=headers)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    payload = {"inputs": [{"name": "image", "shape": overflow, "datatype": "FP32", "data": [1.0]}]}
    assert rest.post(INFER, json=payload).status_code == 400

    grpc_cases = [
        ([2**40, 2**40, 64, 3], image.tobytes()),
        ([9, S, S, 3], np.zeros((9, S, S, 3), np.float32).tobytes()[: 4 * S * S * 3]),
        ([1, S, S, 3], np.full((1, S, S, 3), np.nan, np.float32).tobytes()),
    ]
    for shape, raw in grpc_cases:
        tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=shape)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(
                pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[raw]), timeout=30
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert_still_serving(rest, stub)
    assert_one_line_each(log_lines(), len(requests) + 1 + len(grpc_cases))


def test_slow_headers_and_bodies_are_closed_after_their_timeouts(limited, rest, stub, log_lines):
    connections = [raw_http(limited) for _ in range(3)]
    try:
        silent, slow_headers, slow_body = connections
        slow_headers.sendall(f"POST {INFER} HTTP/1.1\r\nhost: x\r\n".encode())
        slow_body.sendall(
            f"POST {INFER} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n"
            f"{HEADER}: 10\r\ncontent-length: 5000\r\n\r\n".encode()
            + b"z" * 100
        )
        for connection, part in ((silent, b"headers"), (slow_headers, b"headers"), (slow_body, b"body")):
            answer = read_until_closed(connection)  # returns once the server closes (bounded wait)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b"request " + part + b" did not arrive" in answer
    finally:
        for connection in connections:
            connection.close()
    assert_still_serving(rest, stub)
    assert_one_line_each(log_lines(), 3)
