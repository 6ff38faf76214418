"""`invoke data` end to end: prepare_data for the synthetic, local and kaggle sources."""

from __future__ import annotations

import hashlib
from pathlib import Path

import kagglehub
import pytest

from contracts.config import load_config
from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES
from workloads.data import SplitManifest, prepare_data


def config(tmp_path: Path, **data):
    return load_config({"artifacts_dir": str(tmp_path / "artifacts"), "data": {"workers": 2, **data}})


def test_synthetic_end_to_end(tmp_path: Path) -> None:
    cfg = config(tmp_path, synthetic_images_per_class=4, synthetic_image_size=48, seed=1)
    lines: list[str] = []
    manifest = prepare_data(cfg, progress=lines.append)

    path = cfg.paths.split_manifest
    assert path.is_file()
    assert SplitManifest.load(path) == manifest
    assert manifest.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest.source == "synthetic" and manifest.seed == 1
    assert manifest.dataset_root == (cfg.paths.synthetic_dataset / "bone_marrow_cell_dataset").resolve()
    assert manifest.counts_table() == {
        code: {"train": 2, "val": 1, "test": 1, "total": 4} for code in CLASS_CODES
    }
    assert all(entry.path.is_file() for entry in manifest.files)
    assert manifest.excluded == () and manifest.empty_classes == () and manifest.unknown_folders == ()
    assert lines[0] == "[data] source: synthetic"
    assert any(line.startswith("generating synthetic dataset") for line in lines)
    assert manifest.summary_lines()[0] in lines
    assert lines[-1].startswith(f"[data] wrote split manifest {path}")

    # A second run reuses the images and reproduces the same split.
    lines.clear()
    again = prepare_data(cfg, progress=lines.append)
    assert any("skipping generation" in line for line in lines)
    assert again.files == manifest.files


def test_local_source(tmp_path: Path, write_image) -> None:
    data = tmp_path / "download"
    for i in range(1, 4):
        write_image(data / "bone_marrow_cell_dataset" / "NGS" / "0001-1000" / f"NGS_{i:05d}.jpg", seed=i)
    write_image(data / "bone_marrow_cell_dataset" / "ABE" / "ABE_00001.jpg")
    (data / "bone_marrow_cell_dataset" / "LYT").mkdir()
    (data / "bone_marrow_cell_dataset" / "LYT" / "LYT_00001.jpg").write_bytes(b"")
    cfg = config(tmp_path, source="local", path=str(data))
    lines: list[str] = []
    manifest = prepare_data(cfg, progress=lines.append)
    assert manifest.source == "local"
    assert manifest.class_counts() == {code: {"NGS": 3, "ABE": 1}.get(code, 0) for code in CLASS_CODES}
    assert [item.path for item in manifest.excluded] == ["LYT/LYT_00001.jpg"]
    assert "LYT" in manifest.empty_classes
    assert any(line.startswith("excluded 1 unreadable image(s): LYT/LYT_00001.jpg") for line in lines)
    assert SplitManifest.load(cfg.paths.split_manifest) == manifest


def test_local_source_missing_path(tmp_path: Path) -> None:
    cfg = config(tmp_path, source="local", path=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"dataset path .*nowhere does not exist"):
        prepare_data(cfg, progress=lambda _: None)
    assert not cfg.paths.split_manifest.exists()


def test_kaggle_source_offline(tmp_path: Path, synthetic_dataset_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_test")
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle, **kwargs: str(synthetic_dataset_root))
    cfg = config(tmp_path, source="kaggle")
    manifest = prepare_data(cfg, progress=lambda _: None)
    assert manifest.source == "kaggle"
    assert len(manifest.files) == 5 * len(CLASS_CODES)
    assert manifest.class_counts("test") == dict.fromkeys(CLASS_CODES, 1)


def test_kaggle_source_without_credentials(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DatasetError, match="Kaggle credentials not found"):
        prepare_data(config(tmp_path, source="kaggle"), progress=lambda _: None)
