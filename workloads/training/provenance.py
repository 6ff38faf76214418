"""What a run trains on: class counts and weights, absent classes, whether the split can train at all.

Any subset of the 21 classes trains: the model always has 21 outputs in ``CLASS_CODES`` order,
the class-weight map covers all of them, and a class without training images is reported
(progress line, provenance.json, metrics.json, the model card) rather than crashing Keras.

A split is too small to train when it has

* no training image, or
* training images of fewer than 2 classes (a softmax over one class learns nothing), or
* fewer training images than one global batch (``train.batch_size`` x replicas): with less, a
  replica can get an empty batch (a multi-worker job then waits on it forever) and the batch
  statistics of one partial batch are noise. Lowering ``--batch-size`` fixes that.

Each is one :class:`TrainingError` line, raised before anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.config import ToolkitConfig
from contracts.errors import TrainingError
from workloads.classes import CLASS_CODES
from workloads.training.dataset import ABSENT_CLASS_WEIGHT, class_weights

SPLITS = ("train", "val", "test")
PROVENANCE_SCHEMA_VERSION = 1
WEIGHTING = (
    f"square-root inverse frequency of the train split, mean 1 over the classes present; "
    f"classes without training images {ABSENT_CLASS_WEIGHT:g} (no sample carries it)"
)


@dataclass(frozen=True)
class TrainingData:
    """Per-class image counts of a split manifest (all 21 codes) and the class weights derived."""

    counts: Mapping[str, Mapping[str, int]]  # {code: {"train": n, "val": n, "test": n, ...}}
    weights: Mapping[int, float] | None  # label -> weight for every label, None when off

    @classmethod
    def of(cls, manifest: Any, *, use_class_weights: bool) -> TrainingData:
        counts = manifest.counts_table()
        train = [counts[code]["train"] for code in CLASS_CODES]
        return cls(counts=counts, weights=class_weights(train) if use_class_weights else None)

    def absent(self, split: str) -> tuple[str, ...]:
        """Codes with no image in ``split``, in CLASS_CODES order."""
        return tuple(code for code in CLASS_CODES if not self.counts[code][split])

    def present(self, split: str) -> tuple[str, ...]:
        return tuple(code for code in CLASS_CODES if self.counts[code][split])

    def total(self, split: str) -> int:
        return sum(self.counts[code][split] for code in CLASS_CODES)

    def weights_by_code(self) -> dict[str, float] | None:
        if self.weights is None:
            return None
        return {code: round(float(self.weights[i]), 6) for i, code in enumerate(CLASS_CODES)}

    def check_classes(self, manifest_path: Path) -> None:
        """TrainingError unless at least two classes have training images."""
        present = self.present("train")
        if not present:
            raise TrainingError(
                f"the split manifest {manifest_path} has no training images; re-run `invoke data`"
            )
        if len(present) < 2:
            raise TrainingError(
                f"the split manifest {manifest_path} has training images of {len(present)} class "
                f"({', '.join(present)}) only; a classifier needs at least 2 of the "
                f"{len(CLASS_CODES)} classes"
            )

    def check_batch(self, global_batch: int, batch_size: int, replicas: int) -> None:
        """TrainingError when the train split is smaller than one global batch."""
        n = self.total("train")
        if n < global_batch:
            per_replica = f" x {replicas} replicas" if replicas > 1 else ""
            raise TrainingError(
                f"the train split has {n} images, fewer than one batch of {global_batch} "
                f"(train.batch_size {batch_size}{per_replica}); lower --batch-size to at most "
                f"{max(1, n // max(1, replicas))}"
            )

    def summary_line(self) -> str:
        """One progress line: how many of the 21 classes train, and which do not."""
        absent = self.absent("train")
        line = f"classes: {len(CLASS_CODES) - len(absent)}/{len(CLASS_CODES)} with training images"
        if absent:
            line += (
                f"; absent from train: {', '.join(absent)} (the model keeps all {len(CLASS_CODES)} "
                "outputs; these are never learned)"
            )
        untested = [code for code in self.absent("test") if code not in absent]
        if untested:
            line += f"; not in test: {', '.join(untested)}"
        return line

    def report(self) -> dict[str, Any]:
        """The ``data`` block of metrics.json and the model card."""
        return {
            "class_counts": {code: dict(self.counts[code]) for code in CLASS_CODES},
            "absent_classes": {split: list(self.absent(split)) for split in SPLITS},
            "class_weights": self.weights_by_code(),
        }


def effective_config(config: ToolkitConfig, manifest: Any) -> dict[str, Any]:
    """``config`` as recorded in config.json, its ``data`` section as the manifest says it was used.

    Training reads a split manifest, not ``data.*``: the source, dataset root, seed and fractions
    come from the manifest (a local data set otherwise shows up as ``source: synthetic, path: ""``).
    """
    recorded = dataclasses.asdict(config)
    recorded["data"].update(
        source=manifest.source,
        path=str(manifest.dataset_root),
        seed=manifest.seed,
        val_fraction=manifest.val_fraction,
        test_fraction=manifest.test_fraction,
    )
    return recorded


def provenance(
    *,
    run_id: str,
    manifest: Any,
    manifest_path: Path,
    manifest_sha256: str,
    data: TrainingData,
    label_smoothing: float,
    started_at: str | None = None,
) -> dict[str, Any]:
    """The content of provenance.json: where the data came from and how it was weighted."""
    return {
        "schema_version": PROVENANCE_SCHEMA_VERSION,
        "run_id": run_id,
        "started_at": started_at or now(),
        "resumed_at": [],
        "data": {
            "source": manifest.source,
            "dataset_root": str(manifest.dataset_root),
            "split_manifest": str(Path(manifest_path).resolve()),
            "split_manifest_sha256": manifest_sha256,
            "split_manifest_created_at": manifest.created_at,
            "split_seed": manifest.seed,
            "val_fraction": manifest.val_fraction,
            "test_fraction": manifest.test_fraction,
            "images": {split: data.total(split) for split in SPLITS},
            "excluded_files": len(manifest.excluded),
            "empty_classes": list(manifest.empty_classes),
        },
        **data.report(),
        "class_weighting": WEIGHTING if data.weights is not None else "off (train.class_weights false)",
        "label_smoothing": label_smoothing,
    }


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
