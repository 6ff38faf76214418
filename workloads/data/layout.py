"""Finding and scanning the Matek et al. (2021) bone-marrow dataset layout.

The Kaggle / TCIA copy looks like::

    ROOT/abbreviations.csv                       code;meaning (header line optional, maybe a BOM)
    ROOT/bone_marrow_cell_dataset/ABE/ABE_00001.jpg
    ROOT/bone_marrow_cell_dataset/NGS/0001-1000/NGS_00001.jpg   (big classes: chunk folders)

:func:`scan_dataset` accepts ROOT or ROOT/bone_marrow_cell_dataset, decodes every image fully
(so truncated and fake files are caught here, not in the middle of training), hashes the good
ones and reports everything odd without stopping: unknown folders, empty classes, skipped
files, unreadable images.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

from contracts.errors import DatasetError
from workloads.classes import CLASS_CODES
from workloads.progress import Progress, print_progress

DATASET_DIRNAME = "bone_marrow_cell_dataset"
ABBREVIATIONS_FILENAME = "abbreviations.csv"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
PROGRESS_EVERY = 1000
_MAX_LISTED = 20  # excluded files printed one per line; the manifest lists them all
_SEARCH_DEPTH = 3
_HEADER_WORDS = {"abbreviation", "abbreviations", "abbr", "code", "class", "label"}


@dataclass(frozen=True)
class ScannedImage:
    """A readable image: absolute path, class code and sha256 of the file."""

    path: Path
    code: str
    sha256: str


@dataclass(frozen=True)
class ExcludedFile:
    """A file that looked like an image but could not be decoded; path relative to the dataset root."""

    path: str
    reason: str


@dataclass(frozen=True)
class DatasetScan:
    """Everything :func:`scan_dataset` found; ``dataset_root`` is the folder holding the class folders."""

    dataset_root: Path
    images: tuple[ScannedImage, ...]
    excluded: tuple[ExcludedFile, ...]
    unknown_folders: tuple[str, ...]
    empty_classes: tuple[str, ...]
    other_files_skipped: int
    warnings: tuple[str, ...]


# --- locating -----------------------------------------------------------------------------------
def locate_dataset(path: str | os.PathLike[str]) -> Path:
    """Return the folder that holds the class folders, given ROOT or ROOT/bone_marrow_cell_dataset.

    Also looks a few levels down for a ``bone_marrow_cell_dataset`` folder, since archives are
    often unpacked with an extra top-level directory.
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise DatasetError(
            f"dataset path {given} does not exist; pass the folder that contains {DATASET_DIRNAME}/"
        )
    if not given.is_dir():
        raise DatasetError(
            f"dataset path {given} is not a directory; pass the folder that contains {DATASET_DIRNAME}/"
        )
    root = given.resolve()
    for _ in range(_SEARCH_DEPTH):
        if _class_folders(root) or not (root / DATASET_DIRNAME).is_dir():
            break
        root = root / DATASET_DIRNAME
    if _class_folders(root):
        return root
    if root.name == DATASET_DIRNAME:
        others = sorted(p.name for p in root.iterdir() if p.is_dir() and not _hidden(p.name))
        seen = f" (found only: {', '.join(others[:5])})" if others else ""
        raise DatasetError(
            f"no class folders in {root}{seen}: expected sub-folders named by class code "
            f"({', '.join(CLASS_CODES[:3])}, ... {CLASS_CODES[-1]})"
        )
    found = _search(root, _SEARCH_DEPTH)
    if found is None:
        raise DatasetError(
            f"no {DATASET_DIRNAME}/ folder and no class folders (ABE, ART, ... PMO) under {given}; "
            "check the dataset path"
        )
    return locate_dataset(found)


def _class_folders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and p.name.upper() in CLASS_CODES]
    except OSError:
        return []


def _search(folder: Path, depth: int) -> Path | None:
    """Breadth-first search for a folder named bone_marrow_cell_dataset, at most ``depth`` levels down."""
    level = [folder]
    for _ in range(depth):
        children: list[Path] = []
        for parent in level:
            with contextlib.suppress(OSError):
                children.extend(sorted(p for p in parent.iterdir() if p.is_dir() and not _hidden(p.name)))
        for child in children:
            if child.name == DATASET_DIRNAME:
                return child
        level = children
    return None


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


# --- abbreviations.csv --------------------------------------------------------------------------
def find_abbreviations(dataset_root: Path) -> Path | None:
    """abbreviations.csv in the dataset folder or its parent (where the Kaggle copy has it)."""
    for folder in (dataset_root, dataset_root.parent):
        candidate = folder / ABBREVIATIONS_FILENAME
        if candidate.is_file():
            return candidate
    return None


def read_abbreviations(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse ``code;meaning`` lines (a header line, a UTF-8 BOM, quotes and commas are tolerated)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    mapping: dict[str, str] = {}
    first = True
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        sep = ";" if ";" in line else "," if "," in line else None
        code, meaning = (line.split(sep, 1) if sep else [line, ""])[:2]
        code = code.strip().strip('"').strip()
        meaning = (
            meaning.strip().rstrip(sep or ";").strip().strip('"').strip()
        )  # spreadsheet exports pad with ;;
        if (
            first
            and code.upper() not in CLASS_CODES
            and (code.lower() in _HEADER_WORDS or not code.isupper())
        ):
            first = False
            continue
        first = False
        if code:
            mapping[code.upper()] = meaning
    return mapping


def abbreviation_warnings(path: Path | None) -> list[str]:
    """Warnings when abbreviations.csv is missing, unreadable or disagrees with the 21 known codes."""
    if path is None:
        return []
    try:
        mapping = read_abbreviations(path)
    except OSError as err:
        return [f"could not read {path}: {err.strerror or err}"]
    warnings = []
    unknown = sorted(set(mapping) - set(CLASS_CODES))
    missing = sorted(set(CLASS_CODES) - set(mapping))
    if unknown:
        warnings.append(f"{path} lists code(s) the toolkit does not know: {', '.join(unknown)}")
    if missing:
        warnings.append(f"{path} does not list known code(s): {', '.join(missing)}")
    return warnings


# --- image checks ---------------------------------------------------------------------------------
def inspect_image(path: Path) -> tuple[str | None, str | None]:
    """Return ``(sha256, None)`` for a fully decodable image, else ``(None, reason)``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"unreadable file: {err.strerror or err}"
    if not data:
        return None, "empty file (0 bytes)"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.width < 1 or img.height < 1:
                return None, f"image has no pixels ({img.width}x{img.height})"
    except UnidentifiedImageError:
        return None, "not an image (unrecognised format)"
    except Exception as err:  # any decoder failure means "exclude this file"
        message = " ".join(str(err).split())[:200] or "decoding failed"
        return None, f"corrupt image ({type(err).__name__}: {message})"
    return hashlib.sha256(data).hexdigest(), None


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make Pillow fail on truncated files even if something in the process relaxed it."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


# --- scanning -------------------------------------------------------------------------------------
def scan_dataset(
    path: str | os.PathLike[str], *, workers: int = 4, progress: Progress = print_progress
) -> DatasetScan:
    """Find, decode and hash every image of the dataset at ``path`` (see the module docstring).

    Raises :class:`DatasetError` when there is no dataset, no class folder or no readable image;
    everything else (unknown folders, empty classes, corrupt or non-image files, an
    abbreviations.csv that disagrees) is reported through ``progress`` and the returned scan.
    """
    root = locate_dataset(path)
    class_dirs: dict[str, list[Path]] = {}
    unknown: list[str] = []
    for entry in sorted(root.iterdir()):
        if _hidden(entry.name) or not entry.is_dir():
            continue
        code = entry.name.upper()
        if code in CLASS_CODES:
            class_dirs.setdefault(code, []).append(entry)
        else:
            unknown.append(entry.name)

    warnings = abbreviation_warnings(find_abbreviations(root))
    for warning in warnings:
        progress(f"warning: {warning}")
    if unknown:
        progress(f"warning: ignoring {len(unknown)} folder(s) that are not class codes: {', '.join(unknown)}")

    candidates: dict[str, list[Path]] = {}
    skipped: list[Path] = []
    for code, dirs in class_dirs.items():
        files: list[Path] = []
        for folder in dirs:
            for file in _walk(folder):
                if _hidden(file.name) or file.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append(file)
                else:
                    files.append(file)
        candidates[code] = sorted(files)
    total = sum(len(files) for files in candidates.values())
    progress(
        f"scanning {total} image files in {len(class_dirs)} class folders under {root} ({workers} threads)"
    )
    if skipped:
        example = skipped[0].relative_to(root).as_posix()
        progress(f"skipping {len(skipped)} hidden or non-image file(s), e.g. {example}")

    images: list[ScannedImage] = []
    excluded: list[ExcludedFile] = []
    empty: list[str] = []
    done = 0
    with _strict_decoding(), concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for code in CLASS_CODES:
            if code not in class_dirs:
                empty.append(code)
                progress(f"  {code}: MISSING (no {code}/ folder)")
                continue
            kept = bad = 0
            for file, (digest, reason) in zip(
                candidates[code], pool.map(inspect_image, candidates[code]), strict=True
            ):
                done += 1
                if digest is not None:
                    images.append(ScannedImage(file, code, digest))
                    kept += 1
                else:
                    rel = file.relative_to(root).as_posix()
                    excluded.append(ExcludedFile(rel, reason or "unknown"))
                    bad += 1
                    if len(excluded) <= _MAX_LISTED:
                        progress(f"  excluded {rel}: {reason}")
                if done % PROGRESS_EVERY == 0:
                    progress(f"  scanned {done}/{total} files ({len(excluded)} excluded)")
            if kept == 0:
                empty.append(code)
            note = f", {bad} excluded" if bad else ""
            progress(
                f"  {code}: {kept} images{note}" + (" — EMPTY (no readable images)" if kept == 0 else "")
            )
    if len(excluded) > _MAX_LISTED:
        progress(
            f"  ... and {len(excluded) - _MAX_LISTED} more excluded files (listed in the split manifest)"
        )
    if not images:
        raise DatasetError(
            f"no readable images under {root} ({len(excluded)} unreadable, {len(skipped)} non-image files); "
            "check the dataset path"
        )
    progress(
        f"scan done: {len(images)} images kept, {len(excluded)} excluded, "
        f"{len(skipped)} other files skipped, {len(empty)} empty/missing classes"
    )
    return DatasetScan(
        dataset_root=root,
        images=tuple(images),
        excluded=tuple(excluded),
        unknown_folders=tuple(unknown),
        empty_classes=tuple(empty),
        other_files_skipped=len(skipped),
        warnings=tuple(warnings),
    )


def _walk(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` (any depth), skipping hidden directories."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for name in sorted(filenames):
            yield Path(dirpath) / name
