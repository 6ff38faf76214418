"""Training throughput with the real input pipeline vs in-memory synthetic tensors.

    .venv/bin/python benchmarks/train_input.py [--backbone mobilenet_v3_large --image-size 224]

Uses the split manifest's train images (run `invoke data` first; the synthetic set is fine:
the pipeline cost depends on JPEG size, not content). Prints images/s for
  tensors        random tensors already in memory (no decoding: the ceiling),
  pipeline-cold  decode → resize → augment → batch → prefetch, nothing cached,
  pipeline-warm  the same after the first epoch filled the uint8 cache (steady state),
and the overhead of each pipeline relative to tensors. Goal: warm overhead ≤ 10%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from workloads.classes import NUM_CLASSES
from workloads.data.manifest import SplitManifest
from workloads.training import dataset as datasets
from workloads.training.keras_compat import import_tf_and_keras
from workloads.training.model import build_model


def epoch_rate(model, ds, images: int) -> float:
    start = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    return images / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/data/split.json"))
    parser.add_argument("--backbone", default="mobilenet_v3_large")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=512, help="images per measured epoch")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median reported)")
    args = parser.parse_args()

    tf, keras = import_tf_and_keras()
    entries = SplitManifest.load(args.manifest).entries("train")[: args.images]
    if len(entries) < args.images:
        print(f"error: the manifest has only {len(entries)} train images; lower --images", file=sys.stderr)
        return 1
    model = build_model(
        keras, backbone=args.backbone, image_size=args.image_size, num_classes=NUM_CLASSES, weights="none"
    ).model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    paths, labels = [str(e.path) for e in entries], [e.label for e in entries]

    def pipeline(cache: bool, augment: bool = True):
        return datasets.build_dataset(
            tf,
            paths,
            labels,
            image_size=args.image_size,
            batch_size=args.batch_size,
            training=True,
            cache=cache,
            augment_images=augment,
        )

    tensors = datasets.synthetic_tensor_dataset(
        tf,
        num_images=args.images,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_classes=NUM_CLASSES,
    )
    print(
        f"{args.backbone} @ {args.image_size}px, batch {args.batch_size}, {args.images} images/epoch",
        flush=True,
    )
    variants = {
        "tensors": tensors,
        "pipeline-cold": pipeline(cache=False),
        "pipeline-warm": pipeline(cache=True),
        "warm-no-augment": pipeline(cache=True, augment=False),
    }
    for ds in variants.values():
        model.fit(ds, epochs=1, verbose=0)  # traces the step for this input signature, fills caches
    # Interleaved rounds, median per variant: drift on a shared machine hits every variant alike.
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(1, args.repeats + 1):
        for name, ds in variants.items():
            rates[name].append(epoch_rate(model, ds, args.images))
        print(
            f"round {round_number}/{args.repeats}: " + ", ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items())
        )
    results = {name: float(np.median(r)) for name, r in rates.items()}
    for name, rate in results.items():
        overhead = results["tensors"] / rate - 1.0
        spread = f"{min(rates[name]):.1f}–{max(rates[name]):.1f}"
        print(f"{name:16s} {rate:7.1f} img/s (range {spread})   overhead vs tensors {overhead:+6.1%}")
    print(f"warm pipeline overhead {results['tensors'] / results['pipeline-warm'] - 1:+.1%} (goal <= +10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
