"""KServe v2 request and response bodies, binary only (no JSON tensors).

REST uses the binary tensor extension: a JSON header without tensor data, followed by the raw
tensor bytes; ``Inference-Header-Content-Length`` says where the JSON ends, and each tensor's
``binary_data_size`` how many raw bytes are its. gRPC carries the same raw bytes in
``raw_input_contents`` / ``raw_output_contents``. BYTES tensors (encoded images) are, in both,
each element as a 4-byte little-endian length followed by its bytes.

Requests are encoded once, before a benchmark starts, so the load generator only sends bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.errors import BenchError

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"

_NUMPY_DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}

Batch = np.ndarray | Sequence[bytes]


@dataclass(frozen=True)
class TensorPayload:
    """One input tensor as KServe v2 describes it, with its raw (wire-format) contents."""

    datatype: str  # "FP32" for decoded images, "BYTES" for encoded image files
    shape: tuple[int, ...]
    raw: bytes

    @property
    def images(self) -> int:
        return self.shape[0]


def serialize_bytes_elements(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + bytes(item) for item in items)


def deserialize_bytes_elements(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ValueError(f"truncated BYTES element length at offset {offset}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ValueError(f"BYTES element of {length} bytes runs past the end at offset {offset}")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def tensor_payload(batch: Batch) -> TensorPayload:
    """FP32 [N,S,S,3] for an image array; BYTES [N] for a list of encoded image files."""
    if isinstance(batch, np.ndarray):
        array = np.ascontiguousarray(batch, dtype="<f4")
        return TensorPayload("FP32", tuple(int(d) for d in array.shape), array.tobytes())
    items = list(batch)
    if not items or not all(isinstance(item, bytes | bytearray | memoryview) for item in items):
        raise BenchError("a JPEG batch must be a non-empty list of encoded image bytes")
    return TensorPayload("BYTES", (len(items),), serialize_bytes_elements(items))


# --- REST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestRequest:
    body: bytes
    header_length: int
    images: int

    @property
    def headers(self) -> dict[str, str]:
        return {HEADER_LENGTH: str(self.header_length), "Content-Type": BINARY_CONTENT_TYPE}


def encode_rest_request(
    payload: TensorPayload, *, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME
) -> RestRequest:
    header = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(payload.shape),
                "datatype": payload.datatype,
                "parameters": {"binary_data_size": len(payload.raw)},
            }
        ],
        # Both spellings of "answer in binary": per output (KServe, Triton) and per request (OVMS, KServe).
        "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        "parameters": {"binary_data_output": True},
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return RestRequest(encoded + payload.raw, len(encoded), payload.images)


def parse_rest_header(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    """Split a binary-extension body into its JSON header and the raw bytes after it."""
    if header_length is None:
        header_length = len(body)
    if not 0 < header_length <= len(body):
        raise BenchError(
            f"malformed inference response: JSON header length {header_length} of {len(body)} bytes"
        )
    try:
        header = json.loads(body[:header_length])
    except ValueError as exc:
        raise BenchError(f"malformed inference response: the JSON header does not parse ({exc})") from None
    return header, body[header_length:]


def decode_rest_response(
    body: bytes, header_length: int | None, *, output_name: str = OUTPUT_NAME
) -> np.ndarray:
    header, raw = parse_rest_header(body, header_length)
    offset = 0
    for output in header.get("outputs", []):
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if output.get("name") == output_name:
                raise BenchError(
                    f"the server answered '{output_name}' as a JSON tensor although binary output was "
                    "requested; it does not support the KServe v2 binary tensor extension"
                )
            continue
        if output.get("name") == output_name:
            return _to_array(raw[offset : offset + int(size)], output.get("datatype"), output.get("shape"))
        offset += int(size)
    names = [o.get("name") for o in header.get("outputs", [])]
    raise BenchError(f"the inference response has no '{output_name}' output (outputs: {names})")


# --- gRPC -------------------------------------------------------------------------------------


def encode_grpc_request(
    payload: TensorPayload,
    model_name: str,
    *,
    model_version: str = "",
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
) -> bytes:
    """A serialized ``ModelInferRequest``: sent as is, so each call skips protobuf encoding."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=input_name, datatype=payload.datatype, shape=list(payload.shape)
            )
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=output_name)],
        raw_input_contents=[payload.raw],
    )
    return request.SerializeToString()


def decode_grpc_response(response: Any, *, output_name: str = OUTPUT_NAME) -> np.ndarray:
    """The named output of a ``ModelInferResponse`` (raw contents, or typed contents as a fallback)."""
    for index, output in enumerate(response.outputs):
        if output.name != output_name:
            continue
        if index < len(response.raw_output_contents):
            return _to_array(response.raw_output_contents[index], output.datatype, list(output.shape))
        typed = list(output.contents.fp32_contents) or list(output.contents.fp64_contents)
        return np.asarray(typed, dtype=np.float32).reshape(list(output.shape))
    names = [o.name for o in response.outputs]
    raise BenchError(f"the inference response has no '{output_name}' output (outputs: {names})")


def _to_array(raw: bytes, datatype: str | None, shape: Sequence[int] | None) -> np.ndarray:
    dtype = _NUMPY_DTYPES.get(str(datatype))
    if dtype is None:
        raise BenchError(f"the model answered with datatype {datatype}; expected FP32 probabilities")
    try:
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(np.float32)
    except (ValueError, TypeError):
        raise BenchError(
            f"malformed inference response: {len(raw)} bytes of {datatype} do not fill shape {shape}"
        ) from None
