"""Stratified, deterministic train/val/test split that copes with very small classes."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TypeVar

from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES
from workloads.data.layout import DatasetScan, ScannedImage
from workloads.data.manifest import SPLITS, ManifestEntry, SplitManifest, relative_posix

T = TypeVar("T")


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of a class's ``n`` images go to (train, val, test).

    The rule, per class:

    * ``n_val = round(n * val_fraction)`` and ``n_test = round(n * test_fraction)``, rounding
      halves up (so 10 images at 0.15 give 2, not Python's banker's-rounded 1.5 -> 2 / 2.5 -> 2);
    * ``n >= 3``: at least 1 image in val, 1 in test and 1 in train. If the rounded sizes leave
      no training image, the larger of val/test (val on a tie) gives one back until one does;
    * ``n == 2``: 1 train + 1 test (a class the model never saw cannot be evaluated, and
      test matters more than val for the reported metrics);
    * ``n == 1``: train only; ``n == 0``: nothing.
    """
    if n <= 0:
        return (0, 0, 0)
    if n == 1:
        return (1, 0, 0)
    if n == 2:
        return (1, 0, 1)
    n_val = max(1, _round_half_up(n * val_fraction))
    n_test = max(1, _round_half_up(n * test_fraction))
    while n_val + n_test > n - 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return (n - n_val - n_test, n_val, n_test)


def _round_half_up(x: float) -> int:
    # The epsilon absorbs float noise such as 30 * 0.15 = 4.499999999999999.
    return math.floor(x + 0.5 + 1e-9)


def class_seed(seed: int, code: str) -> int:
    """The shuffle seed of one class: stable across runs, machines and Python versions."""
    digest = hashlib.sha256(f"{seed}:{code}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_class(
    items: Sequence[T],
    code: str,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    key: Callable[[T], str] = str,
) -> dict[str, list[T]]:
    """Split one class: sort ``items`` by ``key``, shuffle with :func:`class_seed`, then cut.

    The first ``n_test`` shuffled items are test, the next ``n_val`` val, the rest train
    (sizes from :func:`split_sizes`). Sorting first makes the result independent of the
    order in which files were listed.
    """
    ordered = sorted(items, key=key)
    random.Random(class_seed(seed, code)).shuffle(ordered)
    _, n_val, n_test = split_sizes(len(ordered), val_fraction, test_fraction)
    return {
        "train": ordered[n_test + n_val :],
        "val": ordered[n_test : n_test + n_val],
        "test": ordered[:n_test],
    }


def build_manifest(
    scan: DatasetScan,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    source: str,
) -> SplitManifest:
    """Split every class of ``scan`` (see :func:`split_class`) into a :class:`SplitManifest`."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            "val and test fractions must be in [0, 1) and sum to less than 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    root = scan.dataset_root
    by_code: dict[str, list[ScannedImage]] = {code: [] for code in CLASS_CODES}
    for image in scan.images:
        by_code[image.code].append(image)
    files: list[ManifestEntry] = []
    for label, code in enumerate(CLASS_CODES):
        items = sorted(
            ((relative_posix(root, image.path), image) for image in by_code[code]), key=lambda t: t[0]
        )
        parts = split_class(
            [rel for rel, _ in items],
            code,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )
        split_of = {rel: split for split in SPLITS for rel in parts[split]}
        files.extend(
            ManifestEntry(image.path, code, label, split_of[rel], image.sha256) for rel, image in items
        )
    return SplitManifest(
        dataset_root=root,
        source=source,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        files=tuple(files),
        excluded=scan.excluded,
        unknown_folders=scan.unknown_folders,
        empty_classes=scan.empty_classes,
        other_files_skipped=scan.other_files_skipped,
        warnings=scan.warnings,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
