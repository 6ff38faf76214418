"""Shared test fixtures (kept generic: any test module may use them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Write a small valid image (format from the suffix) at ``path``; returns the path."""

    def write(
        path: Path, size: int = 16, color: tuple[int, int, int] = (200, 120, 160), seed: int = 0
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        pixels = np.clip(np.array(color) + rng.integers(-20, 21, size=(size, size, 3)), 0, 255).astype(
            np.uint8
        )
        Image.fromarray(pixels, mode="RGB").save(path)
        return path

    return write


@pytest.fixture(scope="session")
def synthetic_dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (5 images per class, 64x64, nested chunk folders), generated once.

    Treat it as read-only; copy it (shutil.copytree) before modifying.
    """
    from workloads.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic") / "dataset"
    return generate_dataset(root, images_per_class=5, image_size=64, seed=0, progress=lambda line: None)


@pytest.fixture(scope="session")
def synthetic_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts folder with a learnable synthetic set (16 images per class) and its split manifest.

    Shared by the training and optimization tests; treat it as read-only apart from ``runs/``.
    """
    from workloads.data.layout import scan_dataset
    from workloads.data.split import build_manifest
    from workloads.data.synthetic import generate_dataset

    artifacts = tmp_path_factory.mktemp("artifacts")
    dataset = generate_dataset(
        artifacts / "data" / "synthetic",
        images_per_class=16,
        image_size=96,
        seed=0,
        progress=lambda line: None,
    )
    scan = scan_dataset(dataset, workers=2, progress=lambda line: None)
    manifest = build_manifest(scan, seed=42, val_fraction=0.15, test_fraction=0.15, source="synthetic")
    manifest.save(artifacts / "data" / "split.json")
    return artifacts


# A tiny trained model, just enough for the optimizer and the model server to work on real IR.
SERVED_TRAIN = {
    "backbone": "mobilenet_v3_small",
    "weights": "none",
    "image_size": 64,
    "batch_size": 16,
    "head_epochs": 1,
    "finetune_epochs": 2,
}


@pytest.fixture(scope="session")
def served_repository(synthetic_split: Path) -> Path:
    """``synthetic_split`` plus a tiny trained run optimized into ``models/`` (fp32 + int8), once.

    Returns the artifacts folder: ``models/bone-marrow-<fp32|int8>/<version>/model.xml|bin``.
    Treat the repository as read-only.
    """
    from contracts.config import load_config
    from workloads.data.manifest import SplitManifest
    from workloads.optimize.pipeline import run_optimize
    from workloads.training.train import run_training

    config = load_config(
        {
            "artifacts_dir": str(synthetic_split),
            "train": SERVED_TRAIN,
            # Every INT8 gate budget lifted: serving tests need a published INT8, not a good one.
            "optimize": {
                "precisions": ["fp32", "int8"],
                "int8_max_accuracy_drop": 100.0,
                "int8_max_balanced_accuracy_drop": 100.0,
                "int8_max_protected_recall_drop": 100.0,
                "int8_max_class_recall_drop": 100.0,
            },
        }
    )
    trained = run_training(config, run_id="served", progress=lambda line: None)
    manifest = SplitManifest.load(config.paths.split_manifest)
    run_optimize(config, trained.run_dir, manifest, progress=lambda line: None)
    return synthetic_split


@pytest.fixture(autouse=True)
def _private_bench_lock_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bench host locks in a folder of this test session, not the machine-wide one: concurrent test
    runs on one machine (each benching its own loopback server) must not refuse each other."""
    from workloads.bench.conditions import LOCK_DIR_ENV

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path_factory.getbasetemp() / "bench-locks"))
