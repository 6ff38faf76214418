"""tf.data input pipelines built from the split manifest.

decode → resize → (cache as uint8) → shuffle → augment → batch → prefetch, parallel with
AUTOTUNE. Files the manifest already excluded never get here; ``ignore_errors`` is the
second line of defence so a file that goes bad mid-training cannot crash an epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

SHUFFLE_BUFFER = 4096


def cache_fits_in_memory(num_images: int, image_size: int, fraction_of_ram: float = 0.25) -> bool:
    """Whether a uint8 cache of the resized images fits in a share of physical memory."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return num_images * image_size * image_size * 3 <= ram * fraction_of_ram


def decode_and_resize(tf: ModuleType, path: Any, image_size: int) -> Any:
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    # antialias=True matches PIL's bilinear downscaling (workloads.images.load_image), so the
    # model sees the same pixels in training as in evaluation and serving.
    image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    # uint8 keeps the cache 4x smaller and matches what PIL decoding + resizing produces.
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def augment(tf: ModuleType, image: Any) -> Any:
    """Label-preserving augmentation for isolated cells: any rotation/flip, mild photometric jitter."""
    image = tf.cast(image, tf.float32)
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_flip_up_down(image)
    image = tf.image.rot90(image, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
    image = tf.image.random_brightness(image, max_delta=20.0)
    image = tf.image.random_contrast(image, 0.85, 1.15)
    return tf.clip_by_value(image, 0.0, 255.0)


def build_dataset(
    tf: ModuleType,
    paths: Sequence[str],
    labels: Sequence[int],
    *,
    image_size: int,
    batch_size: int,
    training: bool,
    augment_images: bool = True,
    cache: bool = True,
    seed: int = 42,
) -> Any:
    """A batched ``(image float32 0..255, label int32)`` dataset."""
    if len(paths) != len(labels):
        raise ValueError("paths and labels differ in length")
    paths = list(paths)
    labels = list(labels)
    if training:
        # Pre-shuffle once so the cached order is mixed across classes; the per-epoch
        # shuffle buffer then only has to mix locally.
        order = np.random.default_rng(seed).permutation(len(paths))
        paths = [paths[i] for i in order]
        labels = [labels[i] for i in order]
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, dtype=np.int32)))
    ds = ds.map(lambda p, y: (decode_and_resize(tf, p, image_size), y), num_parallel_calls=autotune)
    ds = ds.ignore_errors(log_warning=True)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(paths), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        if augment_images:
            ds = ds.map(lambda x, y: (augment(tf, x), y), num_parallel_calls=autotune)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    ds = ds.batch(batch_size, drop_remainder=False)
    return ds.prefetch(autotune)


def synthetic_tensor_dataset(
    tf: ModuleType, *, num_images: int, image_size: int, batch_size: int, num_classes: int
) -> Any:
    """One random batch held in memory and repeated: the ceiling for input-pipeline cost."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(batch_size, image_size, image_size, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=batch_size).astype(np.int32)
    batches = max(1, num_images // batch_size)
    return tf.data.Dataset.from_tensors((images, labels)).repeat(batches).prefetch(tf.data.AUTOTUNE)


def class_weights(train_counts: Sequence[int]) -> dict[int, float]:
    """Square-root inverse-frequency class weights, mean 1 over the classes present.

    Plain inverse frequency would weight ABE (8 images) ~3600x NGS (~29k) and destabilise
    training; the square root keeps rare classes visible without exploding gradients.
    """
    present = {i: n for i, n in enumerate(train_counts) if n > 0}
    if not present:
        return {}
    raw = {i: 1.0 / math.sqrt(n) for i, n in present.items()}
    mean = sum(raw.values()) / len(raw)
    return {i: w / mean for i, w in raw.items()}
