"""Request/response encoding: REST binary extension and gRPC raw contents, checked with kserve's parsers."""

import json
import struct

import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, deserialize_bytes_tensor

from contracts.errors import BenchError
from workloads.bench.payloads import (
    HEADER_LENGTH,
    decode_grpc_response,
    decode_rest_response,
    deserialize_bytes_elements,
    encode_grpc_request,
    encode_rest_request,
    serialize_bytes_elements,
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
    assert header["outputs"] == [{"name": "probabilities", "parameters": {"binary_data": True}}]
    assert header["parameters"] == {"binary_data_output": True}
    assert raw == images.astype("<f4").tobytes()
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4").reshape(2, 8, 8, 3), images)
    assert request.images == 2


def test_rest_request_parses_back_with_kserves_own_decoder(images):
    request = encode_rest_request(tensor_payload(images))
    parsed = InferRequest.from_bytes(request.body, request.header_length, "m")
    np.testing.assert_array_equal(parsed.inputs[0].as_numpy(), images)


def test_bytes_tensor_elements_are_length_prefixed():
    items = [b"\xff\xd8jpeg-one", b"", b"two"]
    raw = serialize_bytes_elements(items)
    assert raw[:4] == struct.pack("<I", len(items[0]))
    assert deserialize_bytes_elements(raw) == items
    assert list(deserialize_bytes_tensor(raw)) == items  # the server's (kserve's) reading
    with pytest.raises(ValueError):
        deserialize_bytes_elements(raw[:-1])


def test_rest_jpeg_request_sends_a_bytes_tensor():
    files = [b"\xff\xd8first", b"\xff\xd8second!"]
    request = encode_rest_request(tensor_payload(files))
    header = json.loads(request.body[: request.header_length])
    assert header["inputs"][0]["datatype"] == "BYTES"
    assert header["inputs"][0]["shape"] == [2]
    assert deserialize_bytes_elements(request.body[request.header_length :]) == files
    with pytest.raises(BenchError):
        tensor_payload([])


def test_rest_response_decodes_kserves_binary_output():
    probabilities = np.random.default_rng(1).dirichlet(np.ones(21), size=3).astype(np.float32)
    output = InferOutput("probabilities", list(probabilities.shape), "FP32")
    output.set_data_from_numpy(probabilities, binary_data=True)
    body, json_length = InferResponse("id", "m", [output], use_binary_outputs=True).to_rest()
    np.testing.assert_array_equal(decode_rest_response(body, json_length), probabilities)


def test_rest_response_with_other_outputs_before_ours_is_sliced_right():
    ours = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = {
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [2, 3],
                "parameters": {"binary_data_size": 24},
            },
        ]
    }
    encoded = json.dumps(header).encode()
    body = encoded + np.zeros(2, np.float32).tobytes() + ours.tobytes()
    np.testing.assert_array_equal(decode_rest_response(body, len(encoded)), ours)


def test_rest_response_as_json_tensor_or_malformed_is_a_bench_error():
    json_tensor = json.dumps(
        {"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.5]}]}
    ).encode()
    with pytest.raises(BenchError, match="binary tensor extension"):
        decode_rest_response(json_tensor, None)
    header = json.dumps(
        {
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": [1, 21],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    with pytest.raises(BenchError, match="do not fill shape"):
        decode_rest_response(header + b"\0" * 8, len(header))
    with pytest.raises(BenchError, match="header length"):
        decode_rest_response(b"{}", 99)
    with pytest.raises(BenchError, match="no 'probabilities' output"):
        decode_rest_response(b'{"outputs": []}', None)


def test_grpc_request_carries_the_tensor_in_raw_input_contents(images):
    serialized = encode_grpc_request(tensor_payload(images), "bone-marrow-int8")
    request = pb.ModelInferRequest.FromString(serialized)
    assert request.model_name == "bone-marrow-int8"
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("image", "FP32", [2, 8, 8, 3])
    assert not tensor.HasField("contents")
    assert request.raw_input_contents[0] == images.tobytes()
    assert [o.name for o in request.outputs] == ["probabilities"]
    parsed = InferRequest.from_grpc(request)  # kserve's own reading of it
    np.testing.assert_array_equal(parsed.inputs[0].as_numpy(), images)


def test_grpc_jpeg_request_is_a_length_prefixed_bytes_tensor():
    files = [b"\xff\xd8a", b"\xff\xd8bb"]
    request = pb.ModelInferRequest.FromString(encode_grpc_request(tensor_payload(files), "m"))
    assert request.inputs[0].datatype == "BYTES"
    assert list(request.inputs[0].shape) == [2]
    assert deserialize_bytes_elements(request.raw_input_contents[0]) == files


def test_grpc_response_decodes_raw_output_contents():
    probabilities = np.random.default_rng(2).dirichlet(np.ones(21), size=2).astype(np.float32)
    output = InferOutput("probabilities", [2, 21], "FP32")
    output.set_data_from_numpy(probabilities, binary_data=True)
    response = InferResponse("id", "m", [output], use_binary_outputs=True).to_grpc()
    np.testing.assert_array_equal(decode_grpc_response(response), probabilities)
    with pytest.raises(BenchError, match="no 'scores' output"):
        decode_grpc_response(response, output_name="scores")
