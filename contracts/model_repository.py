"""The OVMS model repository layout, read and named in one place.

``<root>/<model>-<precision>/<version>/model.xml|model.bin|model_card.json`` plus ``<root>/config.json``
(OVMS's multi-model config). As OVMS does, only integer version folders count and the highest is
served; anything else (``.staging-*`` while a version is copied) is ignored. ``workloads.optimize``
writes this layout; serving, bench, containers and deploy read it through :class:`ModelRepository`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import ModelRepositoryError
from contracts.files import sha256_file

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
MODEL_CARD = "model_card.json"
CONFIG_FILE = "config.json"
# Where OVMS containers see the repository; config.json base paths point below it.
SERVER_MOUNT = "/models"


def served_name(model_name: str, precision: str) -> str:
    """The OVMS model name clients address, and the model's folder: ``<model>-<precision>``."""
    return f"{model_name}-{precision}"


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """One published version folder, checked complete, with what its model card says."""

    name: str  # "<model_name>-<precision>"
    precision: str
    version: int
    directory: Path  # the version folder
    image_size: int
    run_id: str | None  # the training run it came from, when the card names one
    sha256: str  # of model.bin

    @property
    def xml(self) -> Path:
        return self.directory / MODEL_XML

    @property
    def bin(self) -> Path:
        return self.directory / MODEL_BIN

    @property
    def model_card(self) -> Path:
        return self.directory / MODEL_CARD


@dataclass(frozen=True)
class ModelCard:
    """The fields of model_card.json that the repository's readers rely on."""

    image_size: int
    run_id: str | None

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
            size = card["image_size"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelRepositoryError(
                f"cannot read image_size from the model card {path} ({exc}); republish with `invoke optimize`"
            ) from None
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ModelRepositoryError(
                f"the model card {path} has an invalid image_size {size!r}; republish with `invoke optimize`"
            )
        run_id = card.get("run_id")
        return cls(image_size=size, run_id=str(run_id) if run_id else None)


@dataclass(frozen=True)
class ModelRepository:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    def model_dir(self, model_name: str, precision: str) -> Path:
        return self.root / served_name(model_name, precision)

    def versions(self, model_name: str, precision: str) -> list[int]:
        """Integer version folders, ascending; anything else is ignored (as OVMS does)."""
        return _version_numbers(self.model_dir(model_name, precision))

    def find(self, model_name: str, precision: str, version: int | None = None) -> ModelVersion:
        """The given version (default: the latest), checked; a one-line ModelRepositoryError if unusable."""
        if not self.root.is_dir():
            raise ModelRepositoryError(
                f"model repository {self.root} does not exist; "
                "run `invoke optimize` (or `invoke pipeline`) first"
            )
        name = served_name(model_name, precision)
        model_dir = self.model_dir(model_name, precision)
        versions = _version_numbers(model_dir)
        if not versions:
            raise ModelRepositoryError(
                f"no published {name} in {self.root}: no integer version folder under {model_dir}; "
                f"run `invoke optimize` with {precision} in optimize.precisions"
            )
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise ModelRepositoryError(
                f"{self.root} has no {name} version {version} (it has {', '.join(map(str, versions))})"
            )
        directory = model_dir / str(version)
        for file_name in (MODEL_XML, MODEL_BIN, MODEL_CARD):
            if not (directory / file_name).is_file():
                raise ModelRepositoryError(
                    f"{name} version {version} is incomplete: {directory / file_name} is missing"
                )
        card = ModelCard.load(directory / MODEL_CARD)
        return ModelVersion(
            name=name,
            precision=precision,
            version=version,
            directory=directory,
            image_size=card.image_size,
            run_id=card.run_id,
            sha256=sha256_file(directory / MODEL_BIN),
        )

    def find_all(self, model_name: str, precisions: Iterable[str]) -> list[ModelVersion]:
        """The latest version of each precision (duplicates dropped, order kept)."""
        return [self.find(model_name, p) for p in dict.fromkeys(precisions)]


def _version_numbers(model_dir: Path) -> list[int]:
    """Integer version folders of one model folder, ascending."""
    if not model_dir.is_dir():
        return []
    names = (p.name for p in model_dir.iterdir() if p.is_dir())
    return sorted(int(name) for name in names if name.isascii() and name.isdigit())
