"""Synthetic generator: drawings, layout, stamp/skip/replace, determinism, learnability."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES, CLASS_MEANINGS
from workloads.data import synthetic
from workloads.data.layout import read_abbreviations
from workloads.data.synthetic import STAMP_FILENAME, draw_cell, generate_dataset, image_relpath

DS = "bone_marrow_cell_dataset"


def quiet(_: str) -> None:
    pass


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / DS).rglob("*.jpg"))
    }


@pytest.mark.parametrize("code", CLASS_CODES)
def test_draw_cell_every_class(code: str) -> None:
    img = draw_cell(code, np.random.default_rng(1), 96)
    assert img.mode == "RGB" and img.size == (96, 96)
    pixels = np.asarray(img, dtype=np.float32)
    assert pixels.std() > 5  # not a flat image
    again = np.asarray(draw_cell(code, np.random.default_rng(1), 96))
    assert np.array_equal(pixels, again)
    other = np.asarray(draw_cell(code, np.random.default_rng(2), 96))
    assert not np.array_equal(pixels, other)


def test_draw_cell_rejects_unknown_code() -> None:
    with pytest.raises(ValueError, match="unknown class code"):
        draw_cell("XYZ", np.random.default_rng(0), 64)


def test_nested_layout_with_chunk_folders(tmp_path: Path) -> None:
    lines: list[str] = []
    root = generate_dataset(
        tmp_path / "ds",
        images_per_class={"NGS": 5, "ABE": 1},
        image_size=48,
        chunk_size=3,
        progress=lines.append,
    )
    files = sorted(p.relative_to(root / DS).as_posix() for p in (root / DS).rglob("*") if p.is_file())
    assert files == [
        "ABE/0001-0003/ABE_00001.jpg",
        "NGS/0001-0003/NGS_00001.jpg",
        "NGS/0001-0003/NGS_00002.jpg",
        "NGS/0001-0003/NGS_00003.jpg",
        "NGS/0004-0006/NGS_00004.jpg",
        "NGS/0004-0006/NGS_00005.jpg",
    ]
    with Image.open(root / DS / files[0]) as img:
        assert img.format == "JPEG" and img.size == (48, 48)
    assert read_abbreviations(root / "abbreviations.csv") == CLASS_MEANINGS
    assert (root / STAMP_FILENAME).is_file()
    assert "  NGS: 5 images" in lines and "  ABE: 1 images" in lines
    assert image_relpath("NGS", 1000) == "NGS/0001-1000/NGS_01000.jpg"
    assert image_relpath("NGS", 1001) == "NGS/1001-2000/NGS_01001.jpg"


def test_flat_layout_and_empty_class(tmp_path: Path) -> None:
    root = generate_dataset(
        tmp_path / "ds", images_per_class={"LYT": 2, "KSC": 0}, image_size=32, nested=False, progress=quiet
    )
    assert sorted(p.relative_to(root / DS).as_posix() for p in (root / DS).rglob("*")) == [
        "KSC",
        "LYT",
        "LYT/LYT_00001.jpg",
        "LYT/LYT_00002.jpg",
    ]


def test_same_parameters_skip_regeneration(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", images_per_class=1, image_size=32, progress=quiet)
    marker = root / DS / "NGS" / "0001-1000" / "NGS_00001.jpg"
    mtime = marker.stat().st_mtime_ns
    lines: list[str] = []
    generate_dataset(root, images_per_class=1, image_size=32, progress=lines.append)
    assert any("up to date" in line and "skipping generation" in line for line in lines)
    assert marker.stat().st_mtime_ns == mtime


def test_different_parameters_replace_the_dataset_atomically(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", images_per_class=1, image_size=32, progress=quiet)
    lines: list[str] = []
    generate_dataset(root, images_per_class=2, image_size=32, nested=False, progress=lines.append)
    assert lines[0].startswith("regenerating synthetic dataset")
    assert len(list((root / DS).rglob("*.jpg"))) == 2 * len(CLASS_CODES)
    assert not (root / DS / "NGS" / "0001-1000").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or old siblings left


def test_failure_leaves_no_partial_dataset(tmp_path: Path, monkeypatch) -> None:
    def broken(code, rng, size):
        raise RuntimeError("boom")

    monkeypatch.setattr(synthetic, "draw_cell", broken)
    with pytest.raises(RuntimeError, match="boom"):
        generate_dataset(tmp_path / "ds", images_per_class=1, image_size=32, progress=quiet)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_it_did_not_generate(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match=r"not a generated synthetic dataset \(no \.synthetic\.json\)"):
        generate_dataset(tmp_path / "ds", images_per_class=1, image_size=32, progress=quiet)
    assert (tmp_path / "ds" / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images_per_class": {"XYZ": 3}}, "unknown class code"),
        ({"images_per_class": 0}, "not all 0"),
        ({"images_per_class": {"NGS": -1}}, ">= 0"),
        ({"images_per_class": 1, "image_size": 8}, "at least 16 pixels"),
    ],
)
def test_bad_parameters(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        generate_dataset(tmp_path / "ds", progress=quiet, **{"image_size": 32, **kwargs})


def test_deterministic_per_seed_class_and_index(tmp_path: Path) -> None:
    counts = {"NGS": 3, "BLA": 2}
    a = digests(
        generate_dataset(tmp_path / "a", images_per_class=counts, image_size=40, seed=3, progress=quiet)
    )
    b = digests(
        generate_dataset(tmp_path / "b", images_per_class=counts, image_size=40, seed=3, progress=quiet)
    )
    c = digests(
        generate_dataset(tmp_path / "c", images_per_class=counts, image_size=40, seed=4, progress=quiet)
    )
    more = digests(
        generate_dataset(tmp_path / "d", images_per_class={"NGS": 5}, image_size=40, seed=3, progress=quiet)
    )
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    # An image does not depend on how many others are generated.
    assert all(more[k] == a[k] for k in a if k.startswith("bone_marrow_cell_dataset/NGS"))


def test_parallel_generation_matches_serial(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(synthetic, "_PARALLEL_THRESHOLD", 1)
    monkeypatch.setattr(synthetic, "_TASK_SIZE", 2)
    counts = {"EOS": 3, "PLM": 2}
    serial = generate_dataset(
        tmp_path / "s", images_per_class=counts, image_size=32, workers=1, progress=quiet
    )
    lines: list[str] = []
    parallel = generate_dataset(
        tmp_path / "p", images_per_class=counts, image_size=32, workers=2, progress=lines.append
    )
    assert digests(serial) == digests(parallel)
    assert "  EOS: 3 images" in lines and "  PLM: 2 images" in lines


def _features(paths: list[Path]) -> np.ndarray:
    rows = []
    for path in paths:
        with Image.open(path) as img:
            rows.append(np.asarray(img.convert("RGB").resize((32, 32), Image.BILINEAR), np.float32).ravel())
    return np.stack(rows) / 255.0


def test_classes_are_learnable_from_pixels(tmp_path: Path) -> None:
    """A linear model on 32x32 pixels must beat chance (1/21) by far: the classes really differ."""
    root = generate_dataset(tmp_path / "ds", images_per_class=40, image_size=64, seed=0, progress=quiet)
    train_x, train_y, test_x, test_y = [], [], [], []
    for label, code in enumerate(CLASS_CODES):
        paths = sorted((root / DS / code).rglob("*.jpg"))
        train_x += paths[:28]
        train_y += [label] * 28
        test_x += paths[28:]
        test_y += [label] * (len(paths) - 28)
    xtr, xte = _features(train_x), _features(test_x)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-3
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    targets = np.eye(len(CLASS_CODES))[train_y]
    weights = np.linalg.solve(xtr.T @ xtr + 1000.0 * np.eye(xtr.shape[1]), xtr.T @ targets)
    ridge_accuracy = float(((xte @ weights).argmax(1) == np.array(test_y)).mean())
    centroids = np.stack([xtr[np.array(train_y) == k].mean(0) for k in range(len(CLASS_CODES))])
    nearest = ((xte[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    centroid_accuracy = float((nearest == np.array(test_y)).mean())
    chance = 1 / len(CLASS_CODES)
    print(f"ridge {ridge_accuracy:.3f}, nearest centroid {centroid_accuracy:.3f}, chance {chance:.3f}")
    assert ridge_accuracy > 5 * chance, ridge_accuracy
    assert centroid_accuracy > 4 * chance, centroid_accuracy
