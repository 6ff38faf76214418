"""The stratified, deterministic split rule (workloads/data/split.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES
from workloads.data.layout import DatasetScan, ScannedImage
from workloads.data.split import build_manifest, split_class, split_sizes


def fake_scan(root: Path, counts: dict[str, int], reverse: bool = False) -> DatasetScan:
    """A scan result without files on disk: the split only needs paths, codes and hashes."""
    images = [
        ScannedImage(
            root / code / f"{code}_{i:05d}.jpg", code, hashlib.sha256(f"{code}{i}".encode()).hexdigest()
        )
        for code, n in counts.items()
        for i in range(1, n + 1)
    ]
    if reverse:
        images.reverse()
    empty = tuple(code for code in CLASS_CODES if not counts.get(code))
    return DatasetScan(root, tuple(images), (), (), empty, 0, ())


def split_of(manifest) -> dict[str, str]:
    return {entry.path.name: entry.split for entry in manifest.files}


def make(root: Path, counts: dict[str, int], seed: int = 42, val: float = 0.15, test: float = 0.15, **kw):
    return build_manifest(
        fake_scan(root, counts, **kw), seed=seed, val_fraction=val, test_fraction=test, source="t"
    )


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, (0, 0, 0)),
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (4, (2, 1, 1)),
        (8, (6, 1, 1)),  # 1.2 rounds to 1
        (10, (6, 2, 2)),  # 1.5 rounds half up to 2
        (20, (14, 3, 3)),
        (30, (20, 5, 5)),  # 4.5 -> 5 despite 30 * 0.15 == 4.499999999999999
        (42, (30, 6, 6)),
        (100, (70, 15, 15)),
        (29424, (20596, 4414, 4414)),
    ],
)
def test_split_sizes_rule(n: int, expected: tuple[int, int, int]) -> None:
    assert split_sizes(n, 0.15, 0.15) == expected


@pytest.mark.parametrize("fractions", [(0.15, 0.15), (0.1, 0.2), (0.49, 0.49), (0.3, 0.01), (0.0, 0.0)])
def test_split_sizes_invariants(fractions: tuple[float, float]) -> None:
    for n in range(200):
        train, val, test = split_sizes(n, *fractions)
        assert train + val + test == n
        if n >= 3:
            assert min(train, val, test) >= 1, (n, train, val, test)
        if n == 2:
            assert (train, val, test) == (1, 0, 1)


def test_large_fractions_leave_one_training_image() -> None:
    assert split_sizes(4, 0.49, 0.49) == (1, 1, 2)
    assert split_sizes(3, 0.49, 0.49) == (1, 1, 1)


def test_tiny_classes_are_split_per_the_rule(tmp_path: Path) -> None:
    counts = {"ABE": 1, "KSC": 2, "FGC": 3, "LYI": 8}
    manifest = make(tmp_path, counts)
    table = manifest.counts_table()
    assert table["ABE"] == {"train": 1, "val": 0, "test": 0, "total": 1}
    assert table["KSC"] == {"train": 1, "val": 0, "test": 1, "total": 2}
    assert table["FGC"] == {"train": 1, "val": 1, "test": 1, "total": 3}
    assert table["LYI"] == {"train": 6, "val": 1, "test": 1, "total": 8}
    assert table["NGS"] == {"train": 0, "val": 0, "test": 0, "total": 0}


def test_same_seed_same_split_and_input_order_does_not_matter(tmp_path: Path) -> None:
    counts = {"NGS": 50, "EBO": 40, "ABE": 8, "KSC": 3}
    first = make(tmp_path, counts, seed=7)
    again = make(tmp_path, counts, seed=7, reverse=True)
    assert first.files == again.files


def test_different_seed_gives_a_different_split(tmp_path: Path) -> None:
    counts = {"NGS": 50, "EBO": 40}
    a, b = split_of(make(tmp_path, counts, seed=1)), split_of(make(tmp_path, counts, seed=2))
    assert a.keys() == b.keys()
    assert a != b
    assert make(tmp_path, counts, seed=1).counts_table() == make(tmp_path, counts, seed=2).counts_table()


def test_one_class_does_not_disturb_another(tmp_path: Path) -> None:
    before = split_of(make(tmp_path, {"NGS": 30, "LYT": 20}))
    after = split_of(make(tmp_path, {"NGS": 30, "LYT": 25}))
    assert {k: v for k, v in before.items() if k.startswith("NGS")} == {
        k: v for k, v in after.items() if k.startswith("NGS")
    }


def test_stratification_on_imbalanced_classes(tmp_path: Path) -> None:
    counts = {"NGS": 2000, "EBO": 900, "LYT": 300, "ABE": 8, "KSC": 42, "FGC": 47, "LYI": 65, "BAS": 3}
    manifest = make(tmp_path, counts)
    for split in ("train", "val", "test"):
        present = {code for code, n in manifest.class_counts(split).items() if n}
        assert present == set(counts), split
    big = manifest.counts_table()["NGS"]
    assert abs(big["val"] / big["total"] - 0.15) < 0.005
    assert abs(big["test"] / big["total"] - 0.15) < 0.005
    assert manifest.class_counts() == {code: counts.get(code, 0) for code in CLASS_CODES}


def test_manifest_files_are_ordered_by_class_then_path(tmp_path: Path) -> None:
    manifest = make(tmp_path, {"PMO": 3, "ABE": 4}, reverse=True)
    names = [entry.path.name for entry in manifest.files]
    assert names == [f"ABE_{i:05d}.jpg" for i in range(1, 5)] + [f"PMO_{i:05d}.jpg" for i in range(1, 4)]
    assert {entry.label for entry in manifest.files if entry.code == "PMO"} == {CLASS_CODES.index("PMO")}


def test_split_class_shuffles_deterministically() -> None:
    items = [f"x{i:03d}" for i in range(100)]
    parts = split_class(items, "NGS", seed=3, val_fraction=0.15, test_fraction=0.15)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [70, 15, 15]
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == items
    assert parts["test"] != items[:15]  # shuffled, not a prefix
    assert parts == split_class(items[::-1], "NGS", seed=3, val_fraction=0.15, test_fraction=0.15)
    assert parts != split_class(items, "EBO", seed=3, val_fraction=0.15, test_fraction=0.15)


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.6, 0.5), (1.0, 0.0)])
def test_bad_fractions_are_rejected(tmp_path: Path, val: float, test: float) -> None:
    with pytest.raises(DatasetError, match="fractions"):
        make(tmp_path, {"NGS": 5}, val=val, test=test)


# --- the split `invoke data` writes travels with the artifacts tree ------------------------------
def test_the_split_invoke_data_writes_reads_the_same_files_after_the_tree_moves(tmp_path: Path) -> None:
    import hashlib as _hashlib

    from contracts.config import load_config
    from workloads.data.manifest import SplitManifest
    from workloads.data.prepare import prepare_data

    built = tmp_path / "laptop" / "artifacts"
    config = load_config(
        {"artifacts_dir": str(built), "data": {"synthetic_images_per_class": 4, "synthetic_image_size": 32}}
    )
    lines: list[str] = []
    written = prepare_data(config, progress=lines.append)
    assert written.relocatable and not any("outside" in line for line in lines)
    text = config.paths.split_manifest.read_text()
    assert str(tmp_path) not in text

    moved = tmp_path / "pod" / "artifacts"
    moved.parent.mkdir()
    built.rename(moved)
    loaded = SplitManifest.load(moved / "data" / "split.json")
    assert loaded.sha256() == written.sha256()  # what the model card records still matches
    assert [e.path.relative_to(moved) for e in loaded.files] == [
        e.path.relative_to(built) for e in written.files
    ]
    for entry in loaded.files:
        assert _hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256


def test_a_local_dataset_outside_the_tree_is_named_absolute_with_a_warning(
    tmp_path: Path, write_image
) -> None:
    from contracts.config import load_config
    from workloads.data.manifest import SplitManifest
    from workloads.data.prepare import prepare_data

    dataset = tmp_path / "datasets" / "bone_marrow_cell_dataset"
    for code in ("ABE", "NGS"):
        for i in range(3):
            write_image(dataset / code / f"{code}_{i:05d}.jpg", seed=i)
    config = load_config(
        {
            "artifacts_dir": str(tmp_path / "artifacts"),
            "data": {"source": "local", "path": str(tmp_path / "datasets")},
        }
    )
    lines: list[str] = []
    prepare_data(config, progress=lines.append)
    (warning,) = [line for line in lines if line.startswith("warning: the dataset")]
    assert f"place the dataset under {config.paths.split_manifest.parent}/" in warning
    loaded = SplitManifest.load(config.paths.split_manifest)
    assert not loaded.relocatable and loaded.dataset_root == dataset
