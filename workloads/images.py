"""Image decoding shared by evaluation, optimization and benchmarking (outside tf.data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode an image file to an RGB float32 array of shape (size, size, 3), values 0..255.

    This is the model's input contract (see the model card): NHWC, RGB, unnormalized; the
    backbone's own preprocessing is part of the exported graph.
    """
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.float32)


def load_batch(paths: list[str | Path] | list[Path], size: int) -> np.ndarray:
    """Stack :func:`load_image` results into an (N, size, size, 3) float32 batch."""
    if not paths:
        return np.zeros((0, size, size, 3), dtype=np.float32)
    return np.stack([load_image(p, size) for p in paths])
