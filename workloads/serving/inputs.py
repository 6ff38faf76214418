"""Turn a V2 inference input into the model's float32 NHWC batch, or say clearly why not.

Two encodings of the same ``image`` input are accepted, as OVMS accepts them:

* FP32 ``[N, S, S, 3]`` RGB 0..255 — binary tensor data (REST binary extension, gRPC
  ``raw_input_contents``) or, slower, JSON / gRPC ``fp32_contents``;
* BYTES ``[N]`` — encoded images (JPEG, PNG, ...) that the server decodes and resizes to S
  with :func:`workloads.images.decode_image`, the implementation training, optimization and the
  bench use, so a JPEG sent as bytes gives the pixels the model was trained and scored on.

Every problem raises kserve's ``InvalidInput`` (HTTP 400 / gRPC INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput
from PIL import Image, UnidentifiedImageError

from workloads.images import decode_image


def check_single_input(inputs: Sequence[InferInput], expected_name: str, model_name: str) -> InferInput:
    if len(inputs) != 1 or inputs[0].name != expected_name:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise InvalidInput(
            f"model {model_name} takes one input named {expected_name!r}; the request has {names}"
        )
    return inputs[0]


def tensor_batch(infer_input: InferInput, image_size: int) -> np.ndarray:
    """An FP32 [N, S, S, 3] input as a float32 array."""
    shape = list(infer_input.shape)
    if len(shape) != 4 or shape[0] < 1 or shape[1:] != [image_size, image_size, 3]:
        raise InvalidInput(
            f"input {infer_input.name!r} must have shape [N, {image_size}, {image_size}, 3] "
            f"(NHWC, RGB, N >= 1), got {shape}"
        )
    try:
        array = infer_input.as_numpy()
    except (ValueError, TypeError) as exc:
        count = int(np.prod(shape))
        raise InvalidInput(
            f"input {infer_input.name!r} data does not match shape {shape}: expected {count} FP32 values "
            f"({count * 4} bytes of binary data) ({exc})"
        ) from None
    return np.asarray(array, dtype=np.float32)


def encoded_images(infer_input: InferInput) -> list[bytes]:
    """A BYTES [N] (or [N, 1]) input as a list of encoded images."""
    shape = list(infer_input.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise InvalidInput(
            f"BYTES input {infer_input.name!r} must have shape [N] (one encoded image per element), "
            f"got {shape}"
        )
    try:
        elements = infer_input.as_numpy().reshape(-1)
    except (ValueError, TypeError, struct.error) as exc:
        raise InvalidInput(f"BYTES input {infer_input.name!r} does not match shape {shape} ({exc})") from None
    if elements.size != shape[0]:
        raise InvalidInput(
            f"BYTES input {infer_input.name!r} has {elements.size} elements, shape says {shape}"
        )
    return [_as_bytes(e, infer_input.name) for e in elements]


def decode_images(images: Sequence[bytes], image_size: int) -> np.ndarray:
    """Each encoded image → S×S RGB float32 by workloads.images.decode_image (the model card's)."""
    batch = np.empty((len(images), image_size, image_size, 3), dtype=np.float32)
    for index, data in enumerate(images):
        try:
            batch[index] = decode_image(data, image_size)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise InvalidInput(
                f"element {index} of the BYTES input is not a decodable image ({exc})"
            ) from None
    return batch


def _as_bytes(element: object, name: str) -> bytes:
    # Binary extension and gRPC carry raw bytes; JSON can only carry text, so it has to be base64
    # (plain or OVMS-style {"b64": "..."}).
    if isinstance(element, bytes):
        return element
    if isinstance(element, dict) and isinstance(element.get("b64"), str):
        element = element["b64"]
    if isinstance(element, str):
        try:
            return base64.b64decode(element, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f'BYTES input {name!r} in JSON must hold base64-encoded images (plain or {{"b64": ...}})'
            ) from None
    raise InvalidInput(f"BYTES input {name!r} has an element of type {type(element).__name__}, not bytes")
