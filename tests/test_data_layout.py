"""Dataset location, abbreviations.csv parsing and the image scan (workloads/data/layout.py)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES, CLASS_MEANINGS
from workloads.data import layout
from workloads.data.layout import (
    abbreviation_warnings,
    inspect_image,
    locate_dataset,
    read_abbreviations,
    scan_dataset,
)

DS = "bone_marrow_cell_dataset"


def scan(path: Path, lines: list[str] | None = None, workers: int = 2):
    return scan_dataset(
        path, workers=workers, progress=(lines.append if lines is not None else lambda _: None)
    )


def jpeg_bytes(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (180, 100, 150)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --- locating the dataset -------------------------------------------------------------------------
def test_scan_of_generated_nested_dataset(synthetic_dataset_root: Path) -> None:
    result = scan(synthetic_dataset_root)
    assert result.dataset_root == (synthetic_dataset_root / DS).resolve()
    assert len(result.images) == 5 * len(CLASS_CODES)
    assert {image.code for image in result.images} == set(CLASS_CODES)
    first = result.images[0]
    assert first.path.is_absolute()
    assert first.path.relative_to(result.dataset_root).as_posix() == "ABE/0001-1000/ABE_00001.jpg"
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert result.excluded == () and result.unknown_folders == () and result.empty_classes == ()
    assert result.warnings == ()


def test_root_may_be_the_parent_or_the_dataset_folder_itself(synthetic_dataset_root: Path) -> None:
    from_parent = scan(synthetic_dataset_root)
    from_dataset = scan(synthetic_dataset_root / DS)
    assert from_parent == from_dataset


@pytest.mark.parametrize("wrapper", ["archive", "archive/extra"])
def test_dataset_found_below_extra_archive_folders(tmp_path: Path, write_image, wrapper: str) -> None:
    write_image(tmp_path / wrapper / DS / "LYT" / "LYT_00001.jpg")
    assert locate_dataset(tmp_path) == (tmp_path / wrapper / DS).resolve()


def test_doubly_nested_dataset_folder(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / DS / DS / "NGS" / "NGS_00001.jpg")
    assert locate_dataset(tmp_path) == (tmp_path / DS / DS).resolve()


def test_class_folders_directly_in_the_given_root(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "EBO" / "EBO_00001.jpg")
    assert locate_dataset(tmp_path) == tmp_path.resolve()


def _make_missing(root: Path) -> None:
    pass


def _make_file(root: Path) -> None:
    root.write_text("not a folder")


def _make_unrelated_folders(root: Path) -> None:
    (root / "photos" / "misc").mkdir(parents=True)


def _make_dataset_without_class_folders(root: Path) -> None:
    (root / DS / "XYZ").mkdir(parents=True)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_make_missing, "does not exist"),
        (_make_file, "is not a directory"),
        (_make_unrelated_folders, f"no {DS}/ folder and no class folders"),
        (_make_dataset_without_class_folders, "no class folders in"),
    ],
)
def test_missing_dataset_is_a_one_line_dataset_error(tmp_path: Path, build, message: str) -> None:
    root = tmp_path / "data"
    build(root)
    with pytest.raises(DatasetError) as err:
        scan(root)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_no_class_folders_error_names_what_was_found(tmp_path: Path) -> None:
    (tmp_path / DS / "XYZ").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"found only: XYZ"):
        scan(tmp_path)


def test_no_readable_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / DS / "NGS").mkdir(parents=True)
    (tmp_path / DS / "NGS" / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / DS / "NGS" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"no readable images under .*1 unreadable, 1 non-image"):
        scan(tmp_path)


# --- abbreviations.csv ----------------------------------------------------------------------------
def _abbreviations_text(header: str | None, sep: str = ";", quote: str = "") -> str:
    rows = [f"{quote}{code}{quote}{sep}{quote}{meaning}{quote}" for code, meaning in CLASS_MEANINGS.items()]
    return "\n".join(([header] if header else []) + rows) + "\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (_abbreviations_text("Abbreviation;Meaning"), "utf-8"),
        (_abbreviations_text("Abbreviation;Meaning"), "utf-8-sig"),
        (_abbreviations_text(None), "utf-8-sig"),
        (_abbreviations_text("CODE;MEANING").replace("\n", "\r\n"), "utf-8"),
        (_abbreviations_text("code,meaning", sep=",", quote='"'), "utf-8"),
        (_abbreviations_text("Abbreviation;Meaning").replace("\n", ";;\n"), "cp1252"),
    ],
    ids=["header", "bom-header", "bom-no-header", "crlf-upper-header", "comma-quoted", "padded-cp1252"],
)
def test_read_abbreviations_variants(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "abbreviations.csv"
    path.write_bytes(text.encode(encoding))
    assert read_abbreviations(path) == CLASS_MEANINGS
    assert abbreviation_warnings(path) == []


def test_abbreviations_disagreement_is_a_warning_not_a_crash(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / DS / "NGS" / "NGS_00001.jpg")
    rows = [f"{code};{CLASS_MEANINGS[code]}" for code in CLASS_CODES if code not in ("ABE", "KSC")]
    (tmp_path / "abbreviations.csv").write_text(
        "\ufeffAbbreviation;Meaning\n" + "\n".join(rows) + "\nXYZ;Mystery\n"
    )
    lines: list[str] = []
    result = scan(tmp_path, lines)
    assert len(result.warnings) == 2
    assert any("XYZ" in w for w in result.warnings)
    assert any("ABE, KSC" in w for w in result.warnings)
    assert sum(line.startswith("warning:") and "abbreviations.csv" in line for line in lines) == 2


def test_abbreviations_found_inside_the_dataset_folder_too(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / DS / "NGS" / "NGS_00001.jpg")
    (tmp_path / DS / "abbreviations.csv").write_text("Abbreviation;Meaning\nNGS;Segmented neutrophil\n")
    result = scan(tmp_path / DS)
    assert len(result.warnings) == 1 and "does not list known code(s): ABE" in result.warnings[0]


# --- file handling --------------------------------------------------------------------------------
def test_flat_layout_mixed_extensions_and_case(tmp_path: Path, write_image) -> None:
    base = tmp_path / DS
    names = ["ngs/A.JPG", "ngs/b.jpeg", "NGS/c.png", "NGS/d.bmp", "NGS/sub/e.TIF", "NGS/f.tiff", "LYT/g.Jpg"]
    for name in names:
        write_image(base / name)
    result = scan(tmp_path)
    by_code = {code: sorted(i.path.name for i in result.images if i.code == code) for code in ("NGS", "LYT")}
    assert by_code == {"NGS": ["A.JPG", "b.jpeg", "c.png", "d.bmp", "e.TIF", "f.tiff"], "LYT": ["g.Jpg"]}
    assert set(result.empty_classes) == set(CLASS_CODES) - {"NGS", "LYT"}


def test_corrupt_images_are_excluded_with_paths_and_reasons(tmp_path: Path, write_image) -> None:
    folder = tmp_path / DS / "NGS" / "0001-1000"
    write_image(folder / "NGS_00001.jpg")
    good = jpeg_bytes()
    (folder / "NGS_00002.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (folder / "NGS_00003.jpg").write_bytes(b"")  # zero bytes
    (folder / "NGS_00004.jpg").write_bytes(bytes(range(256)) * 4)  # garbage
    (folder / "NGS_00005.jpg").write_text("this is a text file, not a jpeg\n")
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(png, "PNG")
    (folder / "NGS_00006.png").write_bytes(png.getvalue()[:60])  # truncated PNG
    lines: list[str] = []
    result = scan(tmp_path, lines)
    assert [i.path.name for i in result.images] == ["NGS_00001.jpg"]
    reasons = {Path(item.path).name: item.reason for item in result.excluded}
    assert set(reasons) == {f"NGS_0000{i}.{'png' if i == 6 else 'jpg'}" for i in range(2, 7)}
    assert "truncated" in reasons["NGS_00002.jpg"].lower()
    assert reasons["NGS_00003.jpg"] == "empty file (0 bytes)"
    assert reasons["NGS_00004.jpg"] == "not an image (unrecognised format)"
    assert reasons["NGS_00005.jpg"] == "not an image (unrecognised format)"
    assert reasons["NGS_00006.png"].startswith("corrupt image")
    assert all(item.path.startswith("NGS/0001-1000/") for item in result.excluded)
    assert any("excluded NGS/0001-1000/NGS_00002.jpg: " in line for line in lines)
    assert any(line.startswith("  NGS: 1 images, 5 excluded") for line in lines)


def test_truncated_images_are_caught_even_if_pillow_was_relaxed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    good = jpeg_bytes(64)
    (tmp_path / DS / "LYT").mkdir(parents=True)
    (tmp_path / DS / "LYT" / "ok.jpg").write_bytes(good)
    (tmp_path / DS / "LYT" / "cut.jpg").write_bytes(good[: len(good) // 2])
    result = scan(tmp_path)
    assert [Path(item.path).name for item in result.excluded] == ["cut.jpg"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


def test_inspect_image_hashes_good_files(tmp_path: Path, write_image) -> None:
    path = write_image(tmp_path / "a.png")
    assert inspect_image(path) == (hashlib.sha256(path.read_bytes()).hexdigest(), None)
    digest, reason = inspect_image(tmp_path / "missing.jpg")
    assert digest is None and reason.startswith("unreadable file")


def test_hidden_and_non_image_files_are_skipped_and_counted(tmp_path: Path, write_image) -> None:
    folder = tmp_path / DS / "EOS"
    write_image(folder / "EOS_00001.jpg")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    (folder / "._EOS_00001.jpg").write_bytes(b"\0AppleDouble")
    (folder / "Thumbs.db").write_bytes(b"\0")
    (folder / "readme.txt").write_text("notes")
    write_image(folder / ".thumbnails" / "EOS_00001.jpg")  # hidden folder: not descended into
    lines: list[str] = []
    result = scan(tmp_path, lines)
    assert [i.path.name for i in result.images] == ["EOS_00001.jpg"]
    assert result.other_files_skipped == 4
    assert result.excluded == ()
    assert any("skipping 4 hidden or non-image file(s)" in line for line in lines)


def test_unknown_folders_and_empty_classes_are_reported(tmp_path: Path, write_image) -> None:
    base = tmp_path / DS
    write_image(base / "NGS" / "NGS_00001.jpg")
    (base / "KSC").mkdir()  # empty class folder
    (base / "FGC").mkdir()
    (base / "FGC" / "FGC_00001.jpg").write_bytes(b"")  # only an unreadable image
    write_image(base / "XYZ" / "x.jpg")
    (base / "misc").mkdir()
    (base / ".hidden").mkdir()
    (base / "__MACOSX").mkdir()
    lines: list[str] = []
    result = scan(tmp_path, lines)
    assert result.unknown_folders == ("XYZ", "misc")
    assert "KSC" in result.empty_classes and "FGC" in result.empty_classes
    assert set(result.empty_classes) == set(CLASS_CODES) - {"NGS"}
    assert any("not class codes: XYZ, misc" in line for line in lines)
    assert "  KSC: 0 images — EMPTY (no readable images)" in lines
    assert "  FGC: 0 images, 1 excluded — EMPTY (no readable images)" in lines
    assert "  ABE: MISSING (no ABE/ folder)" in lines


def test_progress_every_n_files_and_per_class(tmp_path: Path, write_image, monkeypatch) -> None:
    monkeypatch.setattr(layout, "PROGRESS_EVERY", 4)
    for i in range(10):
        write_image(tmp_path / DS / "LYT" / f"LYT_{i:05d}.jpg", size=8)
    lines: list[str] = []
    scan(tmp_path, lines, workers=3)
    assert "  scanned 4/10 files (0 excluded)" in lines
    assert "  scanned 8/10 files (0 excluded)" in lines
    assert "  LYT: 10 images" in lines
    assert any(line.startswith("scanning 10 image files in 1 class folders") for line in lines)


def test_scan_does_not_depend_on_worker_count(synthetic_dataset_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_dataset_root, copy)
    one = scan(copy, workers=1)
    many = scan(copy, workers=8)
    assert one == many
