"""The split manifest: which image is in train, val or test, with hashes, as one JSON file.

Every later stage (training, evaluation, calibration, benchmarking) reads the split from here,
and the model card records the manifest's sha256, so a model can be traced to the exact files
it was trained and tested on.

The file is relocatable: a dataset inside the manifest's own folder (``<artifacts>/data/``: the
synthetic and Kaggle sets) is recorded relative to that folder, so a copy or sync of the whole
artifacts tree reads its images wherever it lands. A dataset elsewhere is recorded by its absolute
path and is found only where that path exists. Manifests from before, with an absolute root that
no longer exists, are relocated by the longest tail of that root found under the manifest's folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from contracts.errors import DatasetError
from contracts.files import atomic_write_text
from workloads.classes import CLASS_CODES, CLASS_MEANINGS
from workloads.data.layout import ExcludedFile

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
_RERUN = "re-run `invoke data`"


@dataclass(frozen=True)
class ManifestEntry:
    """One image: absolute path, class code, label (index in CLASS_CODES), split and sha256."""

    path: Path
    code: str
    label: int
    split: str
    sha256: str


@dataclass(frozen=True)
class SplitManifest:
    """A dataset split; ``files`` are ordered by class (CLASS_CODES order), then by relative path.

    ``dataset_root`` is absolute: where the images are now. ``stored_root`` is the text the file
    records for it (see :meth:`anchored_at`), kept while ``dataset_root`` is the folder that text
    was resolved to, so a loaded manifest writes and hashes exactly as its file.
    """

    dataset_root: Path
    source: str
    seed: int
    val_fraction: float
    test_fraction: float
    files: tuple[ManifestEntry, ...]
    excluded: tuple[ExcludedFile, ...] = ()
    unknown_folders: tuple[str, ...] = ()
    empty_classes: tuple[str, ...] = ()
    other_files_skipped: int = 0
    warnings: tuple[str, ...] = ()
    created_at: str = ""
    schema_version: int = SCHEMA_VERSION
    stored_root: tuple[str, Path] | None = field(default=None, compare=False, repr=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASS_CODES

    # --- queries ------------------------------------------------------------------------------
    def entries(self, split: str | None = None) -> list[ManifestEntry]:
        """The entries of one split ('train', 'val', 'test'), or all of them for ``None``."""
        if split is None:
            return list(self.files)
        _check_split(split)
        return [entry for entry in self.files if entry.split == split]

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class code (all 21, CLASS_CODES order) in one split, or in total for ``None``."""
        counts = dict.fromkeys(CLASS_CODES, 0)
        for entry in self.entries(split):
            counts[entry.code] += 1
        return counts

    def counts_table(self) -> dict[str, dict[str, int]]:
        """``{code: {"train": n, "val": n, "test": n, "total": n}}`` for all 21 codes."""
        table = {code: {"train": 0, "val": 0, "test": 0, "total": 0} for code in CLASS_CODES}
        for entry in self.files:
            table[entry.code][entry.split] += 1
            table[entry.code]["total"] += 1
        return table

    # --- serialisation ------------------------------------------------------------------------
    def anchored_at(self, path: str | os.PathLike[str]) -> SplitManifest:
        """This manifest as a file at ``path`` records it: ``dataset_root`` relative to the file's
        folder when the dataset lies inside it (the tree can move), else absolute."""
        folder, root = Path(path).parent, self.dataset_root
        text = os.path.abspath(root)
        # Also with symlinks resolved: the scan resolves the dataset path, the artifacts path may not be.
        for base, inside in ((Path(os.path.abspath(folder)), Path(text)), (folder.resolve(), root.resolve())):
            if inside.is_relative_to(base):
                text = inside.relative_to(base).as_posix()
                break
        return replace(self, stored_root=(text, self.dataset_root))

    @property
    def relocatable(self) -> bool:
        """Whether the recorded ``dataset_root`` is relative (moves with the manifest's folder)."""
        return not Path(self._root_text).is_absolute()

    @property
    def _root_text(self) -> str:
        if self.stored_root is not None and self.stored_root[1] == self.dataset_root:
            return self.stored_root[0]
        return str(self.dataset_root)

    def to_json(self) -> str:
        """The manifest's text (what :meth:`save` writes when anchored where it saves):
        header fields indented, then one line per file."""
        return self._json

    @functools.cached_property
    def _json(self) -> str:
        # Cached: saving and hashing a 170k-file manifest would otherwise serialise it twice.
        header: dict[str, Any] = {
            "schema_version": self.schema_version,
            "created_at": self.created_at,
            "source": self.source,
            "dataset_root": self._root_text,
            "classes": list(CLASS_CODES),
            "seed": self.seed,
            "fractions": {"val": self.val_fraction, "test": self.test_fraction},
            "counts": self.counts_table(),
            "excluded": [{"path": item.path, "reason": item.reason} for item in self.excluded],
            "unknown_folders": list(self.unknown_folders),
            "empty_classes": list(self.empty_classes),
            "other_files_skipped": self.other_files_skipped,
            "warnings": list(self.warnings),
        }
        text = json.dumps(header, indent=2, ensure_ascii=False)
        # One row per file, formatted by hand: json.dumps per row is most of the time for 170k files.
        # Only the path needs escaping; code, label, split and sha256 are validated plain tokens.
        encode = json.JSONEncoder(ensure_ascii=False).encode
        prefix = str(self.dataset_root).rstrip(os.sep) + os.sep
        rows = [
            f'{{"path": {encode(_relative(prefix, self.dataset_root, entry.path))}, "code": "{entry.code}", '
            f'"label": {entry.label}, "split": "{entry.split}", "sha256": "{entry.sha256}"}}'
            for entry in self.files
        ]
        files = "[\n    " + ",\n    ".join(rows) + "\n  ]" if rows else "[]"
        return text[:-2] + f',\n  "files": {files}\n}}\n'

    def sha256(self) -> str:
        """sha256 of the manifest file's content (what :meth:`save` writes), for the model card."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the manifest anchored at ``path`` (:meth:`anchored_at`) atomically (temp sibling +
        rename) and return its path."""
        return atomic_write_text(path, self.anchored_at(path).to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SplitManifest:
        """Read and validate a manifest; any problem is a one-line :class:`DatasetError`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"split manifest {path} not found; run `invoke data` first") from None
        except OSError as err:
            raise DatasetError(f"cannot read split manifest {path}: {err.strerror or err}") from None
        except ValueError as err:
            raise DatasetError(f"split manifest {path} is not valid JSON ({err}); {_RERUN}") from None
        try:
            return _from_dict(data, path)
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            detail = f"missing key {err}" if isinstance(err, KeyError) else str(err)
            raise DatasetError(f"split manifest {path} is malformed ({detail}); {_RERUN}") from None

    # --- human summary ------------------------------------------------------------------------
    def summary_lines(self) -> list[str]:
        """A compact table for the CLI: counts per class and split, totals, then what was left out."""
        table = self.counts_table()
        width = max(len(m) for m in CLASS_MEANINGS.values())
        lines = [
            f"split of {len(self.files)} images from {self.dataset_root} (source {self.source}, "
            f"seed {self.seed}, val {self.val_fraction:g}, test {self.test_fraction:g})",
            f"  {'code':<5}{'class':<{width}}  {'train':>6}{'val':>6}{'test':>6}{'total':>7}",
        ]
        for code in CLASS_CODES:
            row = table[code]
            counts = "".join(f"{row[split]:>6}" for split in SPLITS)
            flag = {0: "  (empty)", 1: "  (train only)", 2: "  (no val)"}.get(row["total"], "")
            lines.append(f"  {code:<5}{CLASS_MEANINGS[code]:<{width}}  {counts}{row['total']:>7}{flag}")
        sums = "".join(f"{sum(row[split] for row in table.values()):>6}" for split in SPLITS)
        lines.append(f"  {'all':<5}{'':<{width}}  {sums}{len(self.files):>7}")
        if self.excluded:
            shown = ", ".join(f"{item.path} ({item.reason})" for item in self.excluded[:3])
            more = f" and {len(self.excluded) - 3} more" if len(self.excluded) > 3 else ""
            lines.append(f"excluded {len(self.excluded)} unreadable image(s): {shown}{more}")
        if self.unknown_folders:
            lines.append(f"ignored unknown folder(s): {', '.join(self.unknown_folders)}")
        if self.empty_classes:
            lines.append(f"empty or missing class(es): {', '.join(self.empty_classes)}")
        if self.other_files_skipped:
            lines.append(f"skipped {self.other_files_skipped} hidden or non-image file(s)")
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return lines


def relative_posix(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` with '/' separators (a string fast path; 170k files add up)."""
    return _relative(str(root).rstrip(os.sep) + os.sep, root, path)


def _relative(prefix: str, root: Path, path: Path) -> str:
    text = str(path)
    if text.startswith(prefix):
        return text[len(prefix) :].replace(os.sep, "/")
    return path.relative_to(root).as_posix()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def _from_dict(data: dict[str, Any], path: Path) -> SplitManifest:
    if not isinstance(data, dict):
        raise DatasetError(f"split manifest {path} is malformed (not a JSON object); {_RERUN}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(
            f"split manifest {path} has schema_version {version!r}, expected {SCHEMA_VERSION}; {_RERUN}"
        )
    if list(data["classes"]) != list(CLASS_CODES):
        raise DatasetError(
            f"split manifest {path} lists classes that differ from the toolkit's 21 codes; {_RERUN}"
        )
    stored = data["dataset_root"]
    root = _resolve_root(stored, Path(os.path.abspath(path.parent)))
    files = []
    prefix = str(root).rstrip(os.sep) + os.sep
    for row in data["files"]:
        rel = row["path"]
        if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"file path {rel!r} is not inside the dataset root")
        code, label, split = row["code"], row["label"], row["split"]
        if code not in CLASS_CODES:
            raise DatasetError(f"split manifest {path} has unknown class code {code!r} for {rel}; {_RERUN}")
        if type(label) is not int or label != CLASS_CODES.index(code):
            raise DatasetError(
                f"split manifest {path} is inconsistent: {rel} has code {code} but label {label!r} "
                f"(expected {CLASS_CODES.index(code)}); {_RERUN}"
            )
        _check_split(split)
        sha = row["sha256"]
        if not (isinstance(sha, str) and len(sha) == 64):
            raise ValueError(f"sha256 of {rel} is not a 64-character hex digest")
        files.append(ManifestEntry(Path(prefix + rel.replace("/", os.sep)), code, label, split, sha))
    manifest = SplitManifest(
        dataset_root=root,
        source=str(data["source"]),
        seed=int(data["seed"]),
        val_fraction=float(data["fractions"]["val"]),
        test_fraction=float(data["fractions"]["test"]),
        files=tuple(files),
        excluded=tuple(ExcludedFile(str(item["path"]), str(item["reason"])) for item in data["excluded"]),
        unknown_folders=tuple(str(name) for name in data["unknown_folders"]),
        empty_classes=tuple(str(code) for code in data["empty_classes"]),
        other_files_skipped=int(data["other_files_skipped"]),
        warnings=tuple(str(w) for w in data.get("warnings", [])),
        created_at=str(data["created_at"]),
        stored_root=(stored, root),
    )
    if data["counts"] != manifest.counts_table():
        raise DatasetError(f"split manifest {path} is inconsistent: 'counts' do not match 'files'; {_RERUN}")
    return manifest


def _resolve_root(stored: Any, folder: Path) -> Path:
    """The dataset folder a manifest in ``folder`` names: relative text under ``folder``; absolute
    text as is, or, when that folder is gone (a tree written before roots were relative, then
    moved), the longest tail of it that exists under ``folder``."""
    if not isinstance(stored, str) or not stored:
        raise ValueError(f"dataset_root {stored!r} is not a folder path")
    root = Path(stored)
    if not root.is_absolute():
        relative = PurePosixPath(stored)
        if ".." in relative.parts:
            raise ValueError(f"dataset_root {stored!r} leaves the manifest's folder")
        return folder.joinpath(*relative.parts)
    if root.is_dir():
        return root
    for start in range(1, len(root.parts)):
        candidate = folder.joinpath(*root.parts[start:])
        if candidate.is_dir():
            return candidate
    return root
