"""KServe v2 REST infer bodies, JSON or binary tensor extension, decoded without leaving numpy.

The body is read as OVMS reads it (``prepareGrpcRequest`` in its ``http_rest_api_handler.cpp``):
with an ``inference-header-content-length`` header, that many bytes are the JSON part and each
binary input's bytes follow in order (``parameters.binary_data_size``; without it, the size its
shape implies, or the rest of the body for a sole BYTES input); without the header the whole body
is JSON. The content type is not consulted: tritonclient sends JSON without one and
``curl --data`` sends ``application/x-www-form-urlencoded``.

kserve 0.21's own decoder turns every binary input into a Python list of floats, which the model
then turns back into an array; for a batch of 224×224 images that costs more than the inference.
Here a binary input becomes an ndarray over the request body and a JSON tensor's ``data`` one
array, checked against its shape; every malformed request (a truncated payload included) is
kserve's ``InvalidInput``, so a 400 rather than a 500.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput, deserialize_bytes_tensor
from kserve.utils.numpy_codec import to_np_dtype


def decode_rest_request(body: bytes, json_length: str | None, model_name: str) -> InferRequest:
    """A V2 REST infer body: JSON, or (with the header) JSON followed by binary tensor data."""
    if json_length is None:
        return _decode(body, None, model_name)
    return decode_binary_request(body, json_length, model_name)


def decode_binary_request(body: bytes, json_length: str | None, model_name: str) -> InferRequest:
    """A V2 binary-extension request: JSON header, then each binary input's bytes in order."""
    if json_length is None:
        raise InvalidInput(
            f"a binary request body needs the {INFERENCE_CONTENT_LENGTH_HEADER} header "
            "(size of its JSON part)"
        )
    try:
        header_size = int(json_length)
    except ValueError:
        raise InvalidInput(
            f"{INFERENCE_CONTENT_LENGTH_HEADER} must be an integer, got {json_length!r}"
        ) from None
    if not 0 < header_size <= len(body):
        raise InvalidInput(
            f"{INFERENCE_CONTENT_LENGTH_HEADER} is {header_size}, but the body has {len(body)} bytes"
        )
    return _decode(body, header_size, model_name)


def _decode(body: bytes, header_size: int | None, model_name: str) -> InferRequest:
    """``header_size`` None: the whole body is JSON and there is no binary data."""
    json_part = body if header_size is None else body[:header_size]
    try:
        header = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        if header_size is None:
            raise InvalidInput(
                f"the request body is not valid JSON ({exc}); a body with binary tensor data needs the "
                f"{INFERENCE_CONTENT_LENGTH_HEADER} header (size of its JSON part)"
            ) from None
        raise InvalidInput(f"the JSON part of the request is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput('the request JSON must be an object with an "inputs" list')
    view = memoryview(body)
    offset = len(json_part)
    inputs = []
    entries = header["inputs"]
    for entry in entries:
        name, shape, datatype, parameters = _input_fields(entry)
        size = parameters.get("binary_data_size")
        if "data" in entry:
            if size is not None:
                raise InvalidInput(f"input {name!r} has both 'data' and a binary_data_size parameter")
            inputs.append(
                InferInput(
                    name,
                    shape,
                    datatype,
                    data=_json_data(entry["data"], name, shape, datatype),
                    parameters=parameters,
                )
            )
            continue
        if header_size is None:
            raise InvalidInput(
                f"input {name!r} has no 'data'"
                + (
                    f", and its binary_data_size needs the {INFERENCE_CONTENT_LENGTH_HEADER} header "
                    "(size of the JSON part)"
                    if size is not None
                    else "; a JSON tensor carries its values in 'data'"
                )
            )
        if size is None:
            size = _implied_size(name, shape, datatype, len(body) - offset, sole=len(entries) == 1)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {name!r} has a binary_data_size that is not a non-negative integer")
        chunk = view[offset : offset + size]
        if len(chunk) < size:
            raise InvalidInput(
                f"input {name!r} declares {size} bytes of binary data but only {len(chunk)} follow "
                "the JSON part: the request is truncated"
            )
        offset += size
        inputs.append(InferInput(name, shape, datatype, data=_binary_array(chunk, name, shape, datatype)))
    if offset != len(body):
        raise InvalidInput(
            f"{len(body) - offset} bytes follow the last binary input; binary_data_size is wrong"
        )
    outputs = header.get("outputs")
    requested = (
        [RequestedOutput(name=o.get("name", ""), parameters=o.get("parameters")) for o in outputs]
        if isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs)
        else None
    )
    request_parameters = header.get("parameters")
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=header.get("id"),
        parameters=request_parameters if isinstance(request_parameters, dict) else None,
        request_outputs=requested,
    )


def _implied_size(name: str, shape: list[int], datatype: str, remaining: int, *, sole: bool) -> int:
    """OVMS's size for a binary input without binary_data_size: what its shape needs; all the rest
    of the body for the request's only input when it is BYTES."""
    if datatype == "BYTES":
        if sole:
            return remaining
        raise InvalidInput(f"BYTES input {name!r} needs a binary_data_size parameter (one of several inputs)")
    dtype = to_np_dtype(datatype)
    if dtype is None:
        raise InvalidInput(f"input {name!r} has unknown datatype {datatype!r}")
    return math.prod(shape) * np.dtype(dtype).itemsize


def _input_fields(entry: Any) -> tuple[str, list[int], str, dict]:
    if not isinstance(entry, dict):
        raise InvalidInput("each entry of 'inputs' must be an object with name, shape and datatype")
    name, shape, datatype = entry.get("name"), entry.get("shape"), entry.get("datatype")
    parameters = entry.get("parameters") or {}
    if (
        not isinstance(name, str)
        or not isinstance(datatype, str)
        or not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or not isinstance(parameters, dict)
    ):
        raise InvalidInput(
            f"input {name!r} needs a string name, a string datatype and a shape of non-negative integers"
        )
    return name, shape, datatype, parameters


def _binary_array(chunk: memoryview, name: str, shape: list[int], datatype: str) -> np.ndarray:
    dtype = to_np_dtype(datatype)
    if dtype is None:
        raise InvalidInput(f"input {name!r} has unknown datatype {datatype!r}")
    # Python ints: numpy's int64 product wraps around for shapes like [2**40, 2**40, 64, 3].
    count = math.prod(shape)
    if datatype == "BYTES":
        try:
            array = deserialize_bytes_tensor(bytes(chunk))
        except struct.error:
            raise InvalidInput(
                f"BYTES input {name!r} is not a sequence of 4-byte little-endian lengths "
                "each followed by its bytes"
            ) from None
        if array.size != count:
            raise InvalidInput(
                f"BYTES input {name!r} holds {array.size} elements, its shape {shape} says {count}"
            )
        return array.reshape(shape)
    itemsize = np.dtype(dtype).itemsize
    if len(chunk) != count * itemsize:
        raise InvalidInput(
            f"input {name!r} has {len(chunk)} bytes of binary data; "
            f"shape {shape} {datatype} needs {count * itemsize}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _json_data(data: Any, name: str, shape: list[int], datatype: str) -> Any:
    """A JSON tensor's ``data`` (flat or nested, row-major) as an array of ``shape``.

    BYTES elements stay as they are (base64 text; ``inputs.encoded_images`` decodes them).
    """
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r} 'data' must be a list, got {type(data).__name__}")
    if datatype == "BYTES":
        return data
    if datatype == "FP16":
        raise InvalidInput(f"FP16 input {name!r} must be sent as binary data, not JSON")
    dtype = to_np_dtype(datatype)
    if dtype is None:
        raise InvalidInput(f"input {name!r} has unknown datatype {datatype!r}")
    count = math.prod(shape)
    try:
        # No dtype here: numpy would parse strings as numbers; the kind check below refuses them.
        values = np.array(data)
    except (ValueError, TypeError, OverflowError):
        values = None
    wanted = "b" if datatype == "BOOL" else "iuf" if np.dtype(dtype).kind == "f" else "iu"
    if values is None or values.dtype.kind not in wanted:
        kind = "true/false" if datatype == "BOOL" else "numbers" if "f" in wanted else "integers"
        raise InvalidInput(
            f"input {name!r} 'data' must be a list (flat or nested, of one shape) of {kind} for {datatype}"
        )
    if values.size != count:
        raise InvalidInput(
            f"input {name!r} has {values.size} values in 'data'; shape {shape} {datatype} needs {count}"
        )
    if values.dtype.kind in "iu" and values.size and np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        low, high = int(values.min()), int(values.max())
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"input {name!r} has values from {low} to {high}; {datatype} holds {info.min}..{info.max}"
            )
    with np.errstate(over="ignore"):  # FP32 beyond its range becomes ±inf, refused by the pixel check
        return values.astype(dtype, copy=False).reshape(shape)
