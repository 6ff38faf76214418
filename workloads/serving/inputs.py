"""Turn a V2 inference input into the model's float32 NHWC batch, or say clearly why not.

Two encodings of the same ``image`` input are accepted, as OVMS accepts them:

* FP32 ``[N, S, S, 3]`` RGB 0..255 — binary tensor data (REST binary extension, gRPC
  ``raw_input_contents``) or, slower, JSON / gRPC ``fp32_contents``;
* BYTES ``[N]`` — encoded images (JPEG, PNG, ...) that the server decodes and resizes to S
  with :func:`workloads.images.decode_image`, the implementation training, optimization and the
  bench use, so a JPEG sent as bytes gives the pixels the model was trained and scored on.

Every problem raises kserve's ``InvalidInput`` (HTTP 400 / gRPC INVALID_ARGUMENT), hostile input
included (``limits.RequestLimits``): more than ``serving.max_batch_size`` images; FP32 values that
are not finite or outside the model's 0..255 range; a BYTES element that is not a JPEG or PNG,
or whose header declares more than ``serving.max_image_pixels`` pixels (or all of the request's
images together more than ``serving.max_request_pixels``) — checked before anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
from collections.abc import Sequence

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput
from PIL import Image, UnidentifiedImageError

from workloads.images import decode_image
from workloads.serving.limits import RequestLimits

# The model contract's pixel range (model card, README "Model contract").
PIXEL_MIN, PIXEL_MAX = 0.0, 255.0
_PIXEL_MAX_BITS = int(np.array(PIXEL_MAX, dtype=np.float32).view(np.uint32))
# What OVMS decodes; other Pillow decoders are not exposed to the network.
IMAGE_FORMATS = ("JPEG", "PNG")


def check_single_input(inputs: Sequence[InferInput], expected_name: str, model_name: str) -> InferInput:
    if len(inputs) != 1 or inputs[0].name != expected_name:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise InvalidInput(
            f"model {model_name} takes one input named {expected_name!r}; the request has {names}"
        )
    return inputs[0]


def tensor_batch(infer_input: InferInput, image_size: int, limits: RequestLimits | None = None) -> np.ndarray:
    """An FP32 [N, S, S, 3] input as a float32 array of finite values in 0..255."""
    limits = limits or RequestLimits.defaults()
    shape = list(infer_input.shape)
    if len(shape) != 4 or shape[0] < 1 or shape[1:] != [image_size, image_size, 3]:
        raise InvalidInput(
            f"input {infer_input.name!r} must have shape [N, {image_size}, {image_size}, 3] "
            f"(NHWC, RGB, N >= 1), got {shape}"
        )
    check_batch_size(shape[0], infer_input.name, limits)
    try:
        array = infer_input.as_numpy()
    except (ValueError, TypeError) as exc:
        count = math.prod(int(d) for d in shape)
        raise InvalidInput(
            f"input {infer_input.name!r} data does not match shape {shape}: expected {count} FP32 values "
            f"({count * 4} bytes of binary data) ({exc})"
        ) from None
    batch = np.asarray(array, dtype=np.float32)
    check_pixel_values(batch, infer_input.name)
    return batch


def check_batch_size(count: int, name: str, limits: RequestLimits) -> None:
    if count > limits.max_batch_size:
        raise InvalidInput(
            f"input {name!r} holds {count} images; this server accepts at most "
            f"{limits.max_batch_size} per request (serving.max_batch_size)"
        )


def check_pixel_values(batch: np.ndarray, name: str) -> None:
    """Refuse NaN, ±Inf and values outside 0..255: the model would answer them confidently."""
    if batch.size == 0:
        return
    # One pass instead of min and max: as unsigned integers, the bit patterns of +0.0 … 255.0 are
    # exactly 0 … _PIXEL_MAX_BITS, and every negative value (-0.0 included), NaN and ±Inf lies above.
    if int(batch.view(np.uint32).max()) <= _PIXEL_MAX_BITS:
        return
    low, high = float(batch.min()), float(batch.max())  # NaN anywhere makes both NaN
    if low >= PIXEL_MIN and high <= PIXEL_MAX:
        return  # -0.0 is a valid 0
    finite = np.isfinite(batch)
    if not finite.all():
        bad = int(batch.size - np.count_nonzero(finite))
        raise InvalidInput(f"input {name!r} has {bad} values that are NaN or infinite; pixels are 0..255")
    raise InvalidInput(
        f"input {name!r} has values from {low:g} to {high:g}; the model takes RGB pixels 0..255"
    )


def encoded_images(infer_input: InferInput, limits: RequestLimits | None = None) -> list[bytes]:
    """A BYTES [N] (or [N, 1]) input as a list of encoded images."""
    shape = list(infer_input.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise InvalidInput(
            f"BYTES input {infer_input.name!r} must have shape [N] (one encoded image per element), "
            f"got {shape}"
        )
    check_batch_size(shape[0], infer_input.name, limits or RequestLimits.defaults())
    try:
        elements = infer_input.as_numpy().reshape(-1)
    except (ValueError, TypeError, struct.error) as exc:
        raise InvalidInput(f"BYTES input {infer_input.name!r} does not match shape {shape} ({exc})") from None
    if elements.size != shape[0]:
        raise InvalidInput(
            f"BYTES input {infer_input.name!r} has {elements.size} elements, shape says {shape}"
        )
    return [_as_bytes(e, infer_input.name) for e in elements]


def decode_images(
    images: Sequence[bytes], image_size: int, limits: RequestLimits | None = None
) -> np.ndarray:
    """Each encoded image → S×S RGB float32 by workloads.images.decode_image (the model card's).

    Every image's header is read first: a format other than JPEG/PNG, or more pixels than the
    limits allow, refuses the request before any image is decoded.
    """
    limits = limits or RequestLimits.defaults()
    total = 0
    for index, data in enumerate(images):
        width, height = image_dimensions(data, index)
        pixels = width * height
        if pixels > limits.max_image_pixels:
            raise InvalidInput(
                f"element {index} of the BYTES input is {width} × {height} = {pixels} pixels; this server "
                f"decodes at most {limits.max_image_pixels} per image (serving.max_image_pixels)"
            )
        total += pixels
        if total > limits.max_request_pixels:
            raise InvalidInput(
                f"the BYTES input's images hold more than {limits.max_request_pixels} pixels together "
                "(serving.max_request_pixels); send fewer or smaller images per request"
            )
    batch = np.empty((len(images), image_size, image_size, 3), dtype=np.float32)
    for index, data in enumerate(images):
        try:
            batch[index] = decode_image(data, image_size)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise InvalidInput(
                f"element {index} of the BYTES input is not a decodable image ({exc})"
            ) from None
    return batch


def image_dimensions(data: bytes, index: int) -> tuple[int, int]:
    """(width, height) from the image header alone: Pillow's open parses it and decodes nothing."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        # Pillow's own check (Image.MAX_IMAGE_PIXELS, which the server sets from the limit).
        raise InvalidInput(
            f"element {index} of the BYTES input declares more pixels than this server decodes per "
            "image (serving.max_image_pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = "unknown format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise InvalidInput(
            f"element {index} of the BYTES input is not a decodable image (JPEG or PNG: {reason})"
        ) from None
    return int(width), int(height)


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
