"""The bench's KServe v2 payloads (tritonclient's encoding), checked with kserve's own parsers: the
REST binary tensor extension, BYTES elements, and answers of either protocol decoded to probabilities."""

import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton_http
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, deserialize_bytes_tensor

from contracts.errors import BenchError
from workloads.bench.clients import tritonclient_grpc
from workloads.bench.payloads import (
    HEADER_LENGTH,
    encode_rest_request,
    infer_input,
    probabilities,
    tensor_payload,
)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)


def test_rest_tensor_request_is_a_json_header_then_the_raw_little_endian_floats(images):
    request = encode_rest_request(tensor_payload(images))
    header = json.loads(request.body[: request.header_length])
    raw = request.body[request.header_length :]

    assert request.headers[HEADER_LENGTH] == str(request.header_length)
    assert request.headers["Content-Type"] == "application/octet-stream"
    (tensor,) = header["inputs"]
    assert tensor == {
        "name": "image",
        "shape": [2, 8, 8, 3],
        "datatype": "FP32",
        "parameters": {"binary_data_size": images.nbytes},
    }
    assert "data" not in tensor  # never a JSON tensor
    assert header["parameters"] == {"binary_data_output": True}  # every output, in binary
    assert raw == images.astype("<f4").tobytes() == tensor_payload(images).raw
    assert request.images == 2


def test_rest_request_parses_back_with_kserves_own_decoder(images):
    request = encode_rest_request(tensor_payload(images))
    parsed = InferRequest.from_bytes(request.body, request.header_length, "m")
    np.testing.assert_array_equal(parsed.inputs[0].as_numpy(), images)


def test_bytes_tensor_elements_are_length_prefixed_as_the_server_reads_them():
    items = [b"\xff\xd8jpeg-one", b"", b"two"]
    raw = tensor_payload(items).raw
    assert raw[:4] == struct.pack("<I", len(items[0]))
    assert list(deserialize_bytes_tensor(raw)) == items  # the server's (kserve's) reading


def test_rest_jpeg_request_sends_a_bytes_tensor():
    files = [b"\xff\xd8first", b"\xff\xd8second!"]
    request = encode_rest_request(tensor_payload(files))
    header = json.loads(request.body[: request.header_length])
    assert header["inputs"][0]["datatype"] == "BYTES"
    assert header["inputs"][0]["shape"] == [2]
    assert list(deserialize_bytes_tensor(request.body[request.header_length :])) == files
    with pytest.raises(BenchError):
        tensor_payload([])
    with pytest.raises(BenchError):
        tensor_payload(["not bytes"])  # type: ignore[list-item]


def test_grpc_input_carries_the_tensor_as_raw_contents(images):
    grpc = tritonclient_grpc()
    tensor = infer_input(tensor_payload(images), grpc)
    assert (tensor.name(), tensor.datatype(), tensor.shape()) == ("image", "FP32", [2, 8, 8, 3])
    assert tensor._get_content() == images.tobytes()
    files = infer_input(tensor_payload([b"\xff\xd8a", b"bb"]), grpc)
    assert files.datatype() == "BYTES" and list(deserialize_bytes_tensor(files._get_content())) == [
        b"\xff\xd8a",
        b"bb",
    ]


def kserve_rest_answer(*outputs: tuple[str, np.ndarray]):
    """A binary REST answer as kserve's server writes it, read by tritonclient."""
    infer_outputs = []
    for name, array in outputs:
        output = InferOutput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64")
        output.set_data_from_numpy(array, binary_data=True)
        infer_outputs.append(output)
    body, json_length = InferResponse("id", "m", infer_outputs, use_binary_outputs=True).to_rest()
    return triton_http.InferenceServerClient.parse_response_body(body, header_length=json_length)


def test_rest_answer_decodes_the_named_output_even_after_others():
    ours = np.random.default_rng(1).dirichlet(np.ones(21), size=3).astype(np.float32)
    result = kserve_rest_answer(("logits", np.zeros(2, np.float32)), ("probabilities", ours))
    np.testing.assert_array_equal(probabilities(result), ours)
    with pytest.raises(BenchError, match=r"no 'scores' output \(outputs: \['logits', 'probabilities'\]\)"):
        probabilities(result, output_name="scores")


def test_an_answer_that_is_not_probabilities_is_a_bench_error():
    result = kserve_rest_answer(("probabilities", np.arange(3, dtype=np.int64)))
    with pytest.raises(BenchError, match="datatype int64; expected FP32 probabilities"):
        probabilities(result)
    output = {"name": "probabilities", "datatype": "FP32", "shape": [1, 21]}
    header = json.dumps({"outputs": [{**output, "parameters": {"binary_data_size": 8}}]}).encode()
    short = triton_http.InferenceServerClient.parse_response_body(
        header + b"\0" * 8, header_length=len(header)
    )
    with pytest.raises(BenchError, match="malformed inference response"):
        probabilities(short)


def test_grpc_answer_decodes_raw_output_contents():
    grpc = tritonclient_grpc()
    ours = np.random.default_rng(2).dirichlet(np.ones(21), size=2).astype(np.float32)
    response = grpc.service_pb2.ModelInferResponse(
        model_name="m",
        outputs=[
            grpc.service_pb2.ModelInferResponse.InferOutputTensor(
                name="probabilities", datatype="FP32", shape=[2, 21]
            )
        ],
        raw_output_contents=[ours.tobytes()],
    )
    result = grpc.InferResult(response)
    np.testing.assert_array_equal(probabilities(result), ours)
    with pytest.raises(BenchError, match=r"no 'scores' output \(outputs: \['probabilities'\]\)"):
        probabilities(result, output_name="scores")
