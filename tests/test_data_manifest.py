"""SplitManifest: JSON schema, save/load round trip, validation, queries (workloads/data/manifest.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES
from workloads.data.layout import DatasetScan, ExcludedFile, ScannedImage
from workloads.data.manifest import SCHEMA_VERSION, ManifestEntry, SplitManifest
from workloads.data.split import build_manifest


@pytest.fixture
def manifest(tmp_path: Path) -> SplitManifest:
    root = tmp_path / "data" / "bone_marrow_cell_dataset"
    counts = {"ABE": 1, "EBO": 2, "NGS": 10, "LYT": 4}
    images = tuple(
        ScannedImage(
            root / code / "0001-1000" / f"{code}_{i:05d}.jpg", code, hashlib.sha256(bytes([i])).hexdigest()
        )
        for code, n in counts.items()
        for i in range(1, n + 1)
    )
    scan = DatasetScan(
        dataset_root=root,
        images=images,
        excluded=(ExcludedFile("NGS/0001-1000/NGS_00011.jpg", "empty file (0 bytes)"),),
        unknown_folders=("XYZ",),
        empty_classes=tuple(code for code in CLASS_CODES if code not in counts),
        other_files_skipped=3,
        warnings=("abbreviations.csv lists code(s) the toolkit does not know: XYZ",),
    )
    return build_manifest(scan, seed=5, val_fraction=0.15, test_fraction=0.15, source="local")


def test_save_load_round_trip(manifest: SplitManifest, tmp_path: Path) -> None:
    path = manifest.save(tmp_path / "out" / "split.json")
    loaded = SplitManifest.load(path)
    assert loaded == manifest
    assert loaded.sha256() == manifest.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.to_json() == path.read_text(encoding="utf-8")


def test_json_schema(manifest: SplitManifest, tmp_path: Path) -> None:
    data = json.loads(manifest.save(tmp_path / "split.json").read_text())
    assert list(data) == [
        "schema_version",
        "created_at",
        "source",
        "dataset_root",
        "classes",
        "seed",
        "fractions",
        "counts",
        "excluded",
        "unknown_folders",
        "empty_classes",
        "other_files_skipped",
        "warnings",
        "files",
    ]
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["classes"] == list(CLASS_CODES)
    assert Path(data["dataset_root"]).is_absolute()
    assert data["fractions"] == {"val": 0.15, "test": 0.15}
    assert data["counts"]["NGS"] == {"train": 6, "val": 2, "test": 2, "total": 10}
    assert data["counts"]["PMO"] == {"train": 0, "val": 0, "test": 0, "total": 0}
    assert data["excluded"] == [{"path": "NGS/0001-1000/NGS_00011.jpg", "reason": "empty file (0 bytes)"}]
    assert data["unknown_folders"] == ["XYZ"]
    assert data["other_files_skipped"] == 3
    first = data["files"][0]
    assert first == {
        "path": "ABE/0001-1000/ABE_00001.jpg",
        "code": "ABE",
        "label": 0,
        "split": "train",
        "sha256": hashlib.sha256(bytes([1])).hexdigest(),
    }


def test_entries_and_class_counts(manifest: SplitManifest) -> None:
    train = manifest.entries("train")
    assert all(isinstance(e, ManifestEntry) and e.path.is_absolute() and e.split == "train" for e in train)
    assert len(manifest.entries("train")) + len(manifest.entries("val")) + len(manifest.entries("test")) == 17
    assert manifest.entries() == list(manifest.files)
    assert manifest.class_counts("test")["EBO"] == 1
    assert manifest.class_counts()["LYT"] == 4
    assert list(manifest.class_counts()) == list(CLASS_CODES)
    with pytest.raises(ValueError, match="split must be one of"):
        manifest.entries("validation")


def test_summary_lines(manifest: SplitManifest) -> None:
    lines = manifest.summary_lines()
    text = "\n".join(lines)
    assert lines[0].startswith("split of 17 images from ")
    assert len([line for line in lines if line.startswith("  ") and line[2:5] in CLASS_CODES]) == 21
    ngs = next(line for line in lines if line.startswith("  NGS"))
    assert ngs.split()[-4:] == ["6", "2", "2", "10"]
    assert "(train only)" in next(line for line in lines if line.startswith("  ABE"))
    assert "(no val)" in next(line for line in lines if line.startswith("  EBO"))
    assert "excluded 1 unreadable image(s): NGS/0001-1000/NGS_00011.jpg (empty file (0 bytes))" in text
    assert "ignored unknown folder(s): XYZ" in text
    assert "empty or missing class(es): ART" in text
    assert "skipped 3 hidden or non-image file(s)" in text
    assert "warning: abbreviations.csv lists" in text


def test_save_is_atomic(manifest: SplitManifest, tmp_path: Path, monkeypatch) -> None:
    path = manifest.save(tmp_path / "split.json")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        manifest.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # no temp file left behind


def _rewrite(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _set(key, value):
    return lambda data: data.__setitem__(key, value)


def _file_field(key, value):
    return lambda data: data["files"][0].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("schema_version", 99), "schema_version 99, expected 1"),
        (lambda data: data.pop("schema_version"), "schema_version None"),
        (_file_field("label", 3), "inconsistent: ABE/0001-1000/ABE_00001.jpg has code ABE but label 3"),
        (_file_field("label", "0"), "has code ABE but label '0'"),
        (_file_field("code", "ZZZ"), "unknown class code 'ZZZ'"),
        (_file_field("split", "holdout"), "malformed (split must be one of"),
        (_file_field("path", "../../etc/passwd"), "is not inside the dataset root"),
        (_file_field("sha256", "abc"), "not a 64-character hex digest"),
        (lambda data: data["files"].pop(), "'counts' do not match 'files'"),
        (lambda data: data.pop("files"), "malformed (missing key 'files')"),
        (_set("classes", ["ABE"]), "classes that differ"),
        (_set("dataset_root", "relative/dir"), "is not absolute"),
        (_set("fractions", None), "malformed"),
    ],
)
def test_load_rejects_bad_manifests(manifest: SplitManifest, tmp_path: Path, change, message: str) -> None:
    path = _rewrite(manifest.save(tmp_path / "split.json"), change)
    with pytest.raises(DatasetError) as err:
        SplitManifest.load(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found; run `invoke data` first"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_load_missing_or_unparsable(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "split.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        SplitManifest.load(path)


def test_empty_manifest_serialises(tmp_path: Path) -> None:
    empty = SplitManifest(tmp_path, "synthetic", 0, 0.15, 0.15, files=(), created_at="t")
    assert SplitManifest.load(empty.save(tmp_path / "m.json")) == empty
