"""The benchmark's inputs: real test-split images, decoded once as the model card says.

A fixed, class-balanced pool (deterministic: round-robin over classes, each class in path
order) serves every scenario and the known-answer check, whose images are the pool's first
``known_answer_images``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.errors import BenchError
from workloads.bench.payloads import Batch
from workloads.images import decode_batch
from workloads.optimize.selection import LabelledImage, SplitEntries, class_balanced_sample

# Enough distinct images that requests do not repeat one cached input, small enough to keep
# in memory at 224 px (64 × 600 KB).
MIN_POOL_IMAGES = 64


@dataclass(frozen=True)
class BenchImages:
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    tensors: np.ndarray  # (N, S, S, 3) float32 RGB 0..255: workloads.images.decode_batch(encoded)
    encoded: tuple[bytes, ...]  # the files' bytes, for input_format "jpeg"

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: Sequence[int], input_format: str) -> Batch:
        if input_format == "jpeg":
            return [self.encoded[i] for i in indices]
        return self.tensors[list(indices)]


def pool_size(batch_size: int, concurrency: int, paper_images: int, known_answer_images: int) -> int:
    return max(MIN_POOL_IMAGES, batch_size * concurrency, paper_images, known_answer_images)


def load_bench_images(manifest: SplitEntries, size: int, image_size: int) -> BenchImages:
    entries: list[LabelledImage] = class_balanced_sample(manifest.entries("test"), size)
    if not entries:
        raise BenchError("the split manifest has no test images; run `invoke data` to split a dataset")
    paths = tuple(Path(e.path) for e in entries)
    try:
        encoded = tuple(p.read_bytes() for p in paths)
        # The tensor payload is decoded from the very bytes the JPEG payload sends, by the server's
        # (and training's) decode: both input formats give the model the same pixels.
        tensors = decode_batch(encoded, image_size)
    except FileNotFoundError as exc:
        # Where the manifest resolved it: under the manifest's folder (data/) wherever the tree lies.
        raise BenchError(
            f"test image {exc.filename} is missing, where the split manifest expects it: copy or sync "
            "the whole artifacts tree (data/ holds the images), or re-run `invoke data`"
        ) from None
    except OSError as exc:
        raise BenchError(f"cannot read a test image ({exc}); re-run `invoke data`") from None
    return BenchImages(paths, tuple(int(e.label) for e in entries), tensors, encoded)


def full_batches(count: int, batch_size: int) -> list[list[int]]:
    """Index lists of ``batch_size`` covering ``count`` images at least once, wrapping around."""
    n_batches = -(-count // batch_size)
    return [[(b * batch_size + i) % count for i in range(batch_size)] for b in range(n_batches)]
