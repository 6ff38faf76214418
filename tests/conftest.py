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
