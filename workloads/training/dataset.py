"""tf.data input pipelines built from the split manifest.

decode → resize → (cache as uint8) → shuffle → augment → batch → prefetch, parallel with
AUTOTUNE. Decode + resize is workloads.images.decode_image, the one implementation that
evaluation, optimization, serving and the bench use too; augmentation after it stays in
TensorFlow. Files the manifest already excluded never get here; ``ignore_errors`` is the
second line of defence so a file that goes bad mid-training cannot crash an epoch.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from workloads.images import decode_image

SHUFFLE_BUFFER = 4096


def cache_fits_in_memory(num_images: int, image_size: int, fraction_of_ram: float = 0.25) -> bool:
    """Whether a uint8 cache of the resized images fits in a share of physical memory."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return num_images * image_size * image_size * 3 <= ram * fraction_of_ram


def decode_and_resize(tf: ModuleType, path: Any, image_size: int) -> Any:
    """A file as uint8 (S, S, 3) RGB, decoded and resized by workloads.images.decode_image.

    The very function evaluation, optimization, the server and the bench use (Pillow), not
    ``tf.io.decode_image`` + ``tf.image.resize``, which give other pixels (fast JPEG IDCT, float
    resize): the model trains on exactly what it is later scored and served on. TensorFlow
    reads the file; the decode runs in Python, which Pillow leaves (GIL released) while it
    decodes and resizes, so ``num_parallel_calls`` still spreads it over the cores. uint8 keeps
    the cache 4x smaller than float32.
    """
    data = tf.io.read_file(path)
    # A scalar string tensor reaches the function as Python bytes (TF 2.15 and 2.21 alike).
    image = tf.numpy_function(
        functools.partial(decode_image, size=image_size),
        [data],
        tf.uint8,
        stateful=False,
        name="decode_image",
    )
    # numpy_function's result has no static shape; batching and the model need it.
    return tf.ensure_shape(image, (image_size, image_size, 3))


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
    num_shards: int = 1,
    shard_index: int = 0,
    repeat: bool = False,
) -> Any:
    """A batched ``(image float32 0..255, label int32)`` dataset.

    Multi-worker: with ``num_shards`` workers, this one (``shard_index``) keeps every
    ``num_shards``-th file of the (seeded, hence identical on every worker) order *before*
    decoding, so each rank reads, decodes and caches only its own shard; tf.distribute's
    auto-sharding is off (it would fall back to DATA sharding, where every rank decodes the
    whole set and drops the rest). ``batch_size`` stays the global batch: tf.distribute splits
    each batch of this worker's stream over the replicas, and across workers a step consumes
    ``batch_size`` images. ``repeat`` makes the stream endless and its batches always full (for
    ``fit`` with ``steps_per_epoch``), so no replica ever gets a partial or empty batch.
    """
    if len(paths) != len(labels):
        raise ValueError("paths and labels differ in length")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} is not in 0..{num_shards - 1}")
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
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    ds = ds.map(lambda p, y: (decode_and_resize(tf, p, image_size), y), num_parallel_calls=autotune)
    ds = ds.ignore_errors(log_warning=True)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(paths), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if training and augment_images:
        ds = ds.map(lambda x, y: (augment(tf, x), y), num_parallel_calls=autotune)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    ds = ds.batch(batch_size, drop_remainder=repeat)
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


ABSENT_CLASS_WEIGHT = 1.0


def class_weights(train_counts: Sequence[int]) -> dict[int, float]:
    """Square-root inverse-frequency class weights, mean 1 over the classes present.

    Plain inverse frequency would weight ABE (8 images) ~3600x NGS (~29k) and destabilise
    training; the square root keeps rare classes visible without exploding gradients.

    The map has a key for every output, 0 … len(train_counts) - 1: Keras 2 rejects a
    ``class_weight`` whose keys are not exactly that range, so a class with no training image
    (an empty class folder, a copy of the data set that lacks it) would otherwise crash
    ``fit``. Such a class gets ``ABSENT_CLASS_WEIGHT`` (1.0, neutral): a class weight only
    scales the loss of samples labelled with that class, and there are none, so the value
    never reaches a gradient; 1.0 keeps the map finite and leaves the mean-1 scaling of the
    present classes untouched.
    """
    present = {i: n for i, n in enumerate(train_counts) if n > 0}
    if not present:
        return dict.fromkeys(range(len(train_counts)), ABSENT_CLASS_WEIGHT)
    raw = {i: 1.0 / math.sqrt(n) for i, n in present.items()}
    mean = sum(raw.values()) / len(raw)
    return {i: raw[i] / mean if i in raw else ABSENT_CLASS_WEIGHT for i in range(len(train_counts))}
