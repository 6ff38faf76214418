"""The model's one image decode + resize: every path from an image file (or its bytes) to pixels.

Training's tf.data pipeline (through ``tf.numpy_function``, workloads.training.dataset) and its
val/test evaluation, optimization (TF↔IR parity, INT8 calibration and accuracy control, test
evaluation), the local server's BYTES input and the bench (FP32 tensor payloads, in-process JPEG
decoding) all call :func:`decode_image`, so a model sees bit-identical pixels wherever an image
enters it. tests/test_image_parity.py holds every path to that.

What it does, all in Pillow:

* decode: JPEG through libjpeg-turbo with the accurate integer IDCT (``JDCT_ISLOW``) and fancy
  chroma upsampling; PNG and the other formats Pillow reads. No EXIF rotation.
* ``Image.convert("RGB")``: greyscale replicated, palette expanded, alpha dropped (not composited).
* resize to S×S (aspect ratio not kept), only when the size differs: ``Image.resize`` with
  ``BILINEAR``, a separable triangle filter on half-pixel centres whose support widens with the
  reduction factor — antialiased when shrinking, plain bilinear when enlarging. Pillow computes
  it in fixed point, horizontal pass then vertical, rounding to uint8 after each pass.

Do not swap a step for TensorFlow's: ``tf.io.decode_image`` decodes JPEG with the fast IDCT
(values off by up to ~7 levels), and ``tf.image.resize(antialias=True)``, the same filter in
float without the intermediate rounding, is off by one level on ~10% of the values.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Encoded image bytes → uint8 RGB array of shape (size, size, 3): the one implementation.

    Raises what Pillow raises for bytes that are not a decodable image (``PIL.UnidentifiedImageError``,
    ``OSError``, ``ValueError``).
    """
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """An image file as the model's input: float32 (size, size, 3), RGB, values 0..255.

    This is the model's input contract (see the model card): NHWC, RGB, unnormalized; the
    backbone's own preprocessing is part of the exported graph.
    """
    return decode_image(Path(path).read_bytes(), size).astype(np.float32)


def decode_batch(images: Sequence[bytes], size: int) -> np.ndarray:
    """Encoded images → (N, size, size, 3) float32 batch of :func:`decode_image` results."""
    batch = np.empty((len(images), size, size, 3), dtype=np.float32)
    for index, data in enumerate(images):
        batch[index] = decode_image(data, size)
    return batch


def load_batch(paths: Sequence[str | Path], size: int) -> np.ndarray:
    """Image files → (N, size, size, 3) float32 batch of :func:`load_image` results."""
    batch = np.empty((len(paths), size, size, 3), dtype=np.float32)
    for index, path in enumerate(paths):
        batch[index] = decode_image(Path(path).read_bytes(), size)
    return batch
