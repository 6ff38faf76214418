"""KServe v2 inputs and outputs of the bench, binary only (never JSON tensors), as tritonclient sends them.

A batch is one input ``image``: FP32 [N,S,S,3] for decoded images, BYTES [N] for encoded image
files (each element a 4-byte little-endian length, then its bytes). tritonclient's ``InferInput``
carries the raw bytes in the REST binary tensor extension (a JSON header without tensor data,
then the raw bytes; ``Inference-Header-Content-Length`` says where the JSON ends) or in gRPC
``raw_input_contents``, and its ``InferResult`` decodes the answer of either.

Inputs are encoded once, before a benchmark starts (``set_data_from_numpy`` makes the raw bytes),
so the load generator only sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from contracts.errors import BenchError

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"

Batch = np.ndarray | Sequence[bytes]


@dataclass(frozen=True)
class TensorPayload:
    """One input tensor as KServe v2 describes it: FP32 little-endian pixels, or BYTES elements."""

    datatype: str  # "FP32" for decoded images, "BYTES" for encoded image files
    shape: tuple[int, ...]
    array: np.ndarray  # contiguous "<f4", or an object array of bytes

    @property
    def images(self) -> int:
        return self.shape[0]

    @property
    def raw(self) -> bytes:
        """The tensor's wire format, as sent in the REST body and in ``raw_input_contents``."""
        if self.datatype == "BYTES":
            from tritonclient.utils import serialize_byte_tensor

            return bytes(serialize_byte_tensor(self.array).item())
        return self.array.tobytes()


def tensor_payload(batch: Batch) -> TensorPayload:
    """FP32 [N,S,S,3] for an image array; BYTES [N] for a list of encoded image files."""
    if isinstance(batch, np.ndarray):
        array = np.ascontiguousarray(batch, dtype="<f4")
        return TensorPayload("FP32", tuple(int(d) for d in array.shape), array)
    items = list(batch)
    if not items or not all(isinstance(item, bytes | bytearray | memoryview) for item in items):
        raise BenchError("a JPEG batch must be a non-empty list of encoded image bytes")
    array = np.empty(len(items), dtype=np.object_)
    array[:] = [bytes(item) for item in items]
    return TensorPayload("BYTES", (len(items),), array)


def infer_input(payload: TensorPayload, client_module: ModuleType, *, name: str = INPUT_NAME) -> Any:
    """The payload as an ``InferInput`` of ``tritonclient.http`` or ``tritonclient.grpc`` (binary data)."""
    tensor = client_module.InferInput(name, list(payload.shape), payload.datatype)
    tensor.set_data_from_numpy(payload.array)  # HTTP: binary_data=True by default
    return tensor


@dataclass(frozen=True)
class RestRequest:
    """A whole REST inference body: what tritonclient.http posts for the payload."""

    body: bytes
    header_length: int
    images: int

    @property
    def headers(self) -> dict[str, str]:
        return {HEADER_LENGTH: str(self.header_length), "Content-Type": BINARY_CONTENT_TYPE}


def encode_rest_request(payload: TensorPayload) -> RestRequest:
    """The body tritonclient.http sends for the payload (no outputs named: all of them, in binary)."""
    import tritonclient.http as http

    body, header_length = http.InferenceServerClient.generate_request_body([infer_input(payload, http)])
    return RestRequest(bytes(body), int(header_length), payload.images)


def probabilities(result: Any, *, output_name: str = OUTPUT_NAME) -> np.ndarray:
    """The named output of a tritonclient ``InferResult`` (REST or gRPC) as float32."""
    try:
        array = result.as_numpy(output_name)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"malformed inference response: {' '.join(str(exc).split())}") from None
    if array is None:
        raise BenchError(
            f"the inference response has no '{output_name}' output (outputs: {output_names(result)})"
        )
    if array.dtype.kind != "f":
        raise BenchError(f"the model answered with datatype {array.dtype}; expected FP32 probabilities")
    return array.astype(np.float32, copy=False)


def output_names(result: Any) -> list[str]:
    response = result.get_response()
    outputs = response.get("outputs", []) if isinstance(response, dict) else response.outputs
    return [str(o.get("name") if isinstance(o, dict) else o.name) for o in outputs]
