"""Find what the model server serves in an OVMS-layout repository.

``<repo>/<model_name>-<precision>/<version>/model.xml|bin|model_card.json``: as OVMS does, the
highest integer version folder is served and other folders (``.staging-*``) are ignored,
exactly as ``workloads.optimize.repository`` numbers them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import ServingError
from contracts.files import sha256_file
from workloads.optimize.repository import existing_versions

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
MODEL_CARD = "model_card.json"


@dataclass(frozen=True)
class ServedModel:
    name: str  # "<model_name>-<precision>", the name clients address
    precision: str
    version: int
    directory: Path  # the version folder
    image_size: int
    sha256: str  # of model.bin
    model_card_sha256: str

    @property
    def xml(self) -> Path:
        return self.directory / MODEL_XML

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sha256": self.sha256,
            "model_card_sha256": self.model_card_sha256,
            "precision": self.precision,
            "image_size": self.image_size,
            "path": str(self.directory),
        }


def served_name(model_name: str, precision: str) -> str:
    return f"{model_name}-{precision}"


def latest_version(model_dir: Path) -> int | None:
    versions = existing_versions(model_dir)
    return versions[-1] if versions else None


def find_model(repository: Path, model_name: str, precision: str, version: int | None = None) -> ServedModel:
    """The latest (or the given) version of one precision, checked; ServingError with one line if unusable."""
    if not repository.is_dir():
        raise ServingError(
            f"model repository {repository} does not exist; "
            "run `invoke optimize` (or `invoke pipeline`) first"
        )
    name = served_name(model_name, precision)
    model_dir = repository / name
    if version is None:
        version = latest_version(model_dir)
    if version is None:
        raise ServingError(
            f"no {name} model in {repository}: no integer version folder under {model_dir}; "
            f"run `invoke optimize` with {precision} in optimize.precisions, "
            "or drop it from serving.precisions"
        )
    directory = model_dir / str(version)
    for file_name in (MODEL_XML, MODEL_BIN, MODEL_CARD):
        if not (directory / file_name).is_file():
            raise ServingError(f"{name} version {version} is incomplete: {directory / file_name} is missing")
    return ServedModel(
        name=name,
        precision=precision,
        version=version,
        directory=directory,
        image_size=_image_size(directory / MODEL_CARD),
        sha256=sha256_file(directory / MODEL_BIN),
        model_card_sha256=sha256_file(directory / MODEL_CARD),
    )


def find_models(repository: Path, model_name: str, precisions: Iterable[str]) -> list[ServedModel]:
    return [find_model(repository, model_name, p) for p in dict.fromkeys(precisions)]


def _image_size(card: Path) -> int:
    try:
        size = json.loads(card.read_text(encoding="utf-8"))["image_size"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServingError(f"cannot read image_size from the model card {card}: {exc}") from None
    if not isinstance(size, int) or size <= 0:
        raise ServingError(f"the model card {card} has an invalid image_size {size!r}")
    return size
