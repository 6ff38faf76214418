"""The known-answer reference stored with each published version, and the version's checksums.

``invoke optimize`` writes, into every version folder it publishes:

- ``known_answer.json``: the answers of that precision's IR, at optimize time, for a few fixed
  test images (each named by its sha256 and split-manifest path): expected classes and
  probabilities. ``invoke bench`` compares a served model against these stored answers instead of
  recomputing them from the served file, so a damaged or swapped model cannot agree with itself.
- ``SHA256SUMS``: the sha256 of every other file of the version (model.xml, model.bin,
  model_card.json, known_answer.json), in the format ``sha256sum -c`` reads, computed from the
  files optimize evaluated. ``invoke up --target local`` (:func:`verify_version`) and the cluster
  model-sync init container (``sha256sum --check --strict``) refuse a version that does not match.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import ModelRepositoryError
from contracts.files import sha256_file

KNOWN_ANSWER_FILE = "known_answer.json"
CHECKSUM_FILE = "SHA256SUMS"
KNOWN_ANSWER_SCHEMA_VERSION = 1
_LINE = re.compile(r"^([0-9a-f]{64}) [ *]([^/\\\n]+)$")


def checksum_text(digests: Mapping[str, str]) -> str:
    """``sha256sum`` output for ``{file name: sha256}``: ``<hex>  <name>`` lines, sorted by name."""
    for name, digest in digests.items():
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name or "/" in name or "\n" in name:
            raise ValueError(f"not a checksum entry: {name!r} {digest!r}")
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))


def read_checksums(directory: Path) -> dict[str, str]:
    """``SHA256SUMS`` of a version folder as ``{file name: sha256}``; one-line error if unusable."""
    path = directory / CHECKSUM_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelRepositoryError(
            f"{directory} has no {CHECKSUM_FILE} (the sha256 of its files recorded at publish); "
            "it was published before checksums were recorded, or was altered — "
            "republish with `invoke optimize`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelRepositoryError(f"cannot read {path} ({exc}); republish with `invoke optimize`") from None
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.match(line)
        if match is None:
            raise ModelRepositoryError(
                f"{path} line {number} is not a sha256sum line; republish with `invoke optimize`"
            )
        digests[match.group(2)] = match.group(1)
    return digests


def verify_version(directory: Path, required: Sequence[str]) -> None:
    """Every file ``SHA256SUMS`` lists matches it, and every ``required`` file is listed.

    Raises ModelRepositoryError naming the first file that is missing, unlisted or different.
    """
    digests = read_checksums(directory)
    unlisted = [name for name in required if name not in digests]
    if unlisted:
        raise ModelRepositoryError(
            f"{directory / CHECKSUM_FILE} does not list {unlisted[0]}; republish with `invoke optimize`"
        )
    for name, expected in digests.items():
        path = directory / name
        if not path.is_file():
            raise ModelRepositoryError(
                f"{path} is missing but {CHECKSUM_FILE} records it; republish with `invoke optimize`"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ModelRepositoryError(
                f"{path} does not match the sha256 recorded at publish in {CHECKSUM_FILE} "
                f"(recorded {expected[:12]}…, found {actual[:12]}…): the file is damaged or was "
                "replaced — republish with `invoke optimize`"
            )


@dataclass(frozen=True)
class ReferenceImage:
    sha256: str  # of the image file's bytes
    path: str  # as the split manifest listed it at optimize time (relative to the dataset root)
    label: int  # the ground-truth class index, for the record


@dataclass(frozen=True)
class StoredKnownAnswer:
    """Answers of one published version for fixed test images, from the optimize-time evaluation."""

    model: str  # <model>-<precision>
    precision: str
    image_size: int
    images: tuple[ReferenceImage, ...]
    classes: tuple[str, ...]  # the model's output order
    probabilities: tuple[tuple[float, ...], ...]  # (images, classes)
    computed_by: str  # e.g. "invoke optimize, OpenVINO 2025.x in process (f32)"
    created_at: str
    cpu: dict[str, Any]  # where they were computed: cpu model and flags

    def __post_init__(self) -> None:
        if not self.images or len(self.images) != len(self.probabilities):
            raise ValueError("a known answer needs as many probability rows as images (at least one)")
        if any(len(row) != len(self.classes) for row in self.probabilities):
            raise ValueError("every probability row needs one value per class")

    @property
    def top1(self) -> list[str]:
        return [self.classes[max(range(len(row)), key=row.__getitem__)] for row in self.probabilities]

    def to_json(self) -> str:
        document = {
            "schema_version": KNOWN_ANSWER_SCHEMA_VERSION,
            "model": self.model,
            "precision": self.precision,
            "image_size": self.image_size,
            "computed_by": self.computed_by,
            "created_at": self.created_at,
            "cpu": self.cpu,
            "classes": list(self.classes),
            "images": [
                {"sha256": i.sha256, "path": i.path, "label": i.label, "expected_class": top}
                for i, top in zip(self.images, self.top1, strict=True)
            ],
            "probabilities": [list(row) for row in self.probabilities],
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> StoredKnownAnswer:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["schema_version"] != KNOWN_ANSWER_SCHEMA_VERSION:
                raise ValueError(f"schema_version {data['schema_version']!r}")
            return cls(
                model=str(data["model"]),
                precision=str(data["precision"]),
                image_size=int(data["image_size"]),
                images=tuple(
                    ReferenceImage(str(i["sha256"]), str(i["path"]), int(i["label"])) for i in data["images"]
                ),
                classes=tuple(str(c) for c in data["classes"]),
                probabilities=tuple(tuple(float(p) for p in row) for row in data["probabilities"]),
                computed_by=str(data["computed_by"]),
                created_at=str(data["created_at"]),
                cpu=dict(data.get("cpu") or {}),
            )
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelRepositoryError(
                f"cannot read the stored known answer {path} ({type(exc).__name__}: {exc}); "
                "republish with `invoke optimize`"
            ) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
