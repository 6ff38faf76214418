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
    assert data["dataset_root"] == "data/bone_marrow_cell_dataset"  # relative to the manifest's folder
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
        (_set("dataset_root", "../outside"), "dataset_root '../outside' leaves the manifest's folder"),
        (_set("dataset_root", ""), "dataset_root '' is not a folder path"),
        (_set("dataset_root", None), "dataset_root None is not a folder path"),
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


# --- a relocatable tree ---------------------------------------------------------------------------
def _tree(root: Path, write_image) -> SplitManifest:
    """An artifacts tree with a real dataset under data/ and its manifest at data/split.json."""
    from workloads.data.layout import scan_dataset

    dataset = root / "data" / "synthetic" / "bone_marrow_cell_dataset"
    for code in ("ABE", "NGS", "LYT"):
        for i in range(3):
            write_image(dataset / code / f"{code}_{i:05d}.jpg", seed=i)
    scan = scan_dataset(root / "data" / "synthetic", workers=1, progress=lambda line: None)
    manifest = build_manifest(scan, seed=1, val_fraction=0.15, test_fraction=0.3, source="synthetic")
    manifest.save(root / "data" / "split.json")
    return manifest


def test_a_moved_tree_reads_its_images_where_it_lands(tmp_path: Path, write_image) -> None:
    built = _tree(tmp_path / "laptop" / "artifacts", write_image)
    text = (tmp_path / "laptop" / "artifacts" / "data" / "split.json").read_text()
    assert json.loads(text)["dataset_root"] == "synthetic/bone_marrow_cell_dataset"
    assert str(tmp_path) not in text  # nothing in the file names where it was written

    moved = tmp_path / "pod" / "work" / "artifacts"
    moved.parent.mkdir(parents=True)
    (tmp_path / "laptop" / "artifacts").rename(moved)
    loaded = SplitManifest.load(moved / "data" / "split.json")

    assert loaded.dataset_root == moved / "data" / "synthetic" / "bone_marrow_cell_dataset"
    assert loaded.relocatable
    assert [e.path.relative_to(moved) for e in loaded.files] == [
        e.path.relative_to(tmp_path / "laptop" / "artifacts") for e in built.files
    ]
    for entry in loaded.entries("test"):
        assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256
    # The same file text wherever the tree lies: the model card's manifest sha256 still matches.
    assert loaded.sha256() == hashlib.sha256(text.encode()).hexdigest()
    assert loaded.to_json() == text


def test_a_manifest_with_an_absolute_root_from_before_is_relocated_and_hashes_as_its_file(
    tmp_path: Path, write_image
) -> None:
    old_tree = tmp_path / "home" / "me" / "artifacts"
    _tree(old_tree, write_image)
    path = old_tree / "data" / "split.json"
    # As the toolkit wrote it before roots were relative: the absolute folder.
    absolute = str(old_tree / "data" / "synthetic" / "bone_marrow_cell_dataset")
    text = path.read_text().replace('"synthetic/bone_marrow_cell_dataset"', json.dumps(absolute))
    path.write_text(text)
    assert (
        SplitManifest.load(path).dataset_root == old_tree / "data" / "synthetic" / "bone_marrow_cell_dataset"
    )

    moved = tmp_path / "work" / "artifacts"
    moved.parent.mkdir(parents=True)
    old_tree.rename(moved)
    loaded = SplitManifest.load(moved / "data" / "split.json")
    assert loaded.dataset_root == moved / "data" / "synthetic" / "bone_marrow_cell_dataset"
    assert all(entry.path.is_file() for entry in loaded.files)
    assert loaded.to_json() == text and not loaded.relocatable
    # Saved again, it is written relocatable.
    resaved = json.loads(loaded.save(moved / "data" / "split.json").read_text())
    assert resaved["dataset_root"] == "synthetic/bone_marrow_cell_dataset"


def test_an_absolute_root_found_nowhere_is_kept_so_errors_name_it(tmp_path: Path, manifest) -> None:
    path = _rewrite(manifest.save(tmp_path / "split.json"), _set("dataset_root", "/nowhere/bmc/dataset"))
    loaded = SplitManifest.load(path)
    assert loaded.dataset_root == Path("/nowhere/bmc/dataset")
    assert str(loaded.files[0].path).startswith("/nowhere/bmc/dataset/")


def test_a_dataset_outside_the_manifests_folder_is_recorded_absolute(tmp_path: Path, write_image) -> None:
    _tree(tmp_path / "elsewhere", write_image)
    manifest = SplitManifest.load(tmp_path / "elsewhere" / "data" / "split.json")
    path = manifest.save(tmp_path / "artifacts" / "data" / "split.json")
    data = json.loads(path.read_text())
    assert data["dataset_root"] == str(
        tmp_path / "elsewhere" / "data" / "synthetic" / "bone_marrow_cell_dataset"
    )
    assert not SplitManifest.load(path).relocatable
    assert SplitManifest.load(path).files == manifest.files


def test_a_manifest_moved_to_another_root_records_that_root(tmp_path: Path, manifest) -> None:
    """What the remote-training exchange does: the same split, its files under another folder."""
    import dataclasses

    saved = SplitManifest.load(manifest.save(tmp_path / "split.json"))
    remote = Path("/mnt/data/dataset")
    files = tuple(
        dataclasses.replace(e, path=remote / e.path.relative_to(saved.dataset_root)) for e in saved.files
    )
    moved = dataclasses.replace(saved, dataset_root=remote, files=files)
    assert json.loads(moved.to_json())["dataset_root"] == "/mnt/data/dataset"
