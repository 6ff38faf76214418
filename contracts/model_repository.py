"""The OVMS model repository layout, read and named in one place.

``<root>/<model>-<precision>/<version>/model.xml|model.bin|model_card.json`` plus ``<root>/config.json``
(OVMS's multi-model config). As OVMS does, only integer version folders count and the highest is
served; anything else (``.staging-*`` while a version is copied) is ignored. ``workloads.optimize``
writes this layout; serving, bench, containers and deploy read it through :class:`ModelRepository`.

A precision names a served *variant*: most are their own IR, but ``bf16`` is the FP32 IR compiled
with ``INFERENCE_PRECISION_HINT`` bf16 (:data:`IR_OF_VARIANT`): ``<model>-bf16`` reads
``<model>-fp32``'s folders and committed version, and optimize never converts anything for it.
:data:`EXECUTION_PRECISIONS` pins the hint of every variant, so ``fp32`` executes in f32 on every CPU.

All precisions of one publish form a *version set*, committed in one atomic step: ``<root>/version_set.json``
(written last, by rename) names, per model, the version of each precision that belongs to it.
Readers see only that set: the default version of a precision is its committed one, a precision
outside the set or a version folder above it (left by an interrupted publish) is refused. A
repository without the record (published before it existed) falls back to the highest folder,
and :meth:`ModelRepository.find_all` refuses it when those newest versions differ. config.json
pins each committed version (``model_version_policy: specific``) so OVMS serves the same set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import ModelRepositoryError
from contracts.files import sha256_file

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
MODEL_CARD = "model_card.json"
CONFIG_FILE = "config.json"
# The committed version set of every model: {"models": {model_name: {"versions": {precision: n}, ...}}}.
VERSION_SET_FILE = "version_set.json"
# Where OVMS containers see the repository; config.json base paths point below it.
SERVER_MOUNT = "/models"


# Served variants that are another precision's IR compiled differently: same files, same version.
IR_OF_VARIANT = {"bf16": "fp32"}
# The INFERENCE_PRECISION_HINT each variant is compiled with, as OpenVINO spells it. OpenVINO's CPU
# default is bf16 where the CPU has AVX512_BF16 or AMX, so without the pin "fp32" would mean bf16
# on some nodes and f32 on others; INT8 and FP16 IRs run their non-quantized operations in f32.
EXECUTION_PRECISIONS = {"fp32": "f32", "fp16": "f32", "int8": "f32", "bf16": "bf16"}


def ir_precision(precision: str) -> str:
    """The precision whose IR files a served variant runs (``bf16`` → ``fp32``; others: itself)."""
    return IR_OF_VARIANT.get(precision, precision)


def execution_precision(precision: str) -> str:
    """The INFERENCE_PRECISION_HINT a served variant is pinned to (``f32`` unless it says otherwise)."""
    return EXECUTION_PRECISIONS.get(precision, "f32")


def served_name(model_name: str, precision: str) -> str:
    """The OVMS model name clients address, and the model's folder: ``<model>-<precision>``."""
    return f"{model_name}-{precision}"


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """One published version folder, checked complete, with what its model card says."""

    name: str  # "<model_name>-<precision>"
    precision: str  # the served variant (bf16 runs the fp32 IR: its directory is fp32's)
    version: int
    directory: Path  # the version folder
    image_size: int
    run_id: str | None  # the training run it came from, when the card names one
    sha256: str  # of model.bin

    @property
    def ir_name(self) -> str:
        """``<model>-<precision>`` of the IR it runs (``bone-marrow-fp32`` for ``bone-marrow-bf16``)."""
        return self.name.removesuffix(self.precision) + ir_precision(self.precision)

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

    @property
    def version_set_file(self) -> Path:
        return self.root / VERSION_SET_FILE

    def version_sets(self) -> dict[str, Any] | None:
        """The whole version-set record (``{"models": {...}}``); None when there is none (legacy)."""
        path = self.version_set_file
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelRepositoryError(
                f"cannot read the version set record {path} ({exc}); republish with `invoke optimize`"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("models"), dict):
            raise ModelRepositoryError(
                f"{path} is not a version set record ('models' must be a mapping); "
                "republish with `invoke optimize`"
            )
        return record

    def committed(self, model_name: str) -> dict[str, int] | None:
        """precision → committed version of ``model_name``'s version set; {} when none is committed
        yet, None when the repository has no version set record at all (published before it existed)."""
        record = self.version_sets()
        if record is None:
            return None
        entry = record["models"].get(model_name) or {}
        versions = entry.get("versions") if isinstance(entry, dict) else None
        if not isinstance(versions, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in versions.values()
        ):
            raise ModelRepositoryError(
                f"{self.version_set_file} has no valid version set for {model_name}; "
                "republish with `invoke optimize`"
            )
        return {str(p): v for p, v in versions.items()}

    def uncommitted(self, model_name: str, precision: str) -> list[int]:
        """Version folders of ``precision`` above its committed set: what an interrupted publish left."""
        precision = ir_precision(precision)
        committed = self.committed(model_name)
        if not committed:  # no record, or nothing committed yet: nothing to tell them apart by
            return []
        limit = committed.get(precision, max(committed.values(), default=0))
        return [v for v in self.versions(model_name, precision) if v > limit]

    def uncommitted_names(self, model_name: str, precisions: Iterable[str]) -> list[str]:
        """``<model>-<precision>/<version>`` of every uncommitted version folder of ``precisions``."""
        return [
            f"{served_name(model_name, p)}/{v}"
            for p in dict.fromkeys(precisions)
            for v in self.uncommitted(model_name, p)
        ]

    def model_dir(self, model_name: str, precision: str) -> Path:
        """The folder of the IR that ``precision`` runs (``bf16``: the fp32 folder)."""
        return self.root / served_name(model_name, ir_precision(precision))

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
        ir = ir_precision(precision)
        of_ir = "" if ir == precision else f" (the {ir} IR that {name} runs)"
        model_dir = self.model_dir(model_name, precision)
        versions = _version_numbers(model_dir)
        if not versions:
            raise ModelRepositoryError(
                f"no published {served_name(model_name, ir)}{of_ir} in {self.root}: no integer version "
                f"folder under {model_dir}; run `invoke optimize` with {ir} in optimize.precisions"
            )
        committed = self.committed(model_name)
        if committed is not None and version is None:
            if ir not in committed:
                raise ModelRepositoryError(
                    f"{served_name(model_name, ir)}{of_ir} is not in the committed version set of "
                    f"{model_name} in {self.root} ({_describe(model_name, committed)}); "
                    f"run `invoke optimize` with {ir} in optimize.precisions"
                )
            version = committed[ir]
        if committed is not None and version in self.uncommitted(model_name, precision):
            raise ModelRepositoryError(
                f"{name} version {version} in {self.root} is not committed (left by an interrupted "
                f"publish; the committed set is {_describe(model_name, committed)}); "
                "the next `invoke optimize` removes it"
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
        """The committed version of each precision (duplicates dropped, order kept), all of one set.

        Without a version set record the newest versions must share one version number (one
        publish); otherwise a one-line ModelRepositoryError names what is mixed."""
        models = [self.find(model_name, p) for p in dict.fromkeys(precisions)]
        if self.committed(model_name) is None and len({m.version for m in models}) > 1:
            mixed = ", ".join(f"{m.name} {m.version}" for m in models)
            raise ModelRepositoryError(
                f"the newest versions in {self.root} do not belong together ({mixed}) and there is no "
                f"{VERSION_SET_FILE} naming one set; republish every precision with `invoke optimize`"
            )
        return models


def _describe(model_name: str, committed: dict[str, int]) -> str:
    if not committed:
        return "none yet"
    return ", ".join(f"{served_name(model_name, p)} {v}" for p, v in sorted(committed.items()))


def _version_numbers(model_dir: Path) -> list[int]:
    """Integer version folders of one model folder, ascending."""
    if not model_dir.is_dir():
        return []
    names = (p.name for p in model_dir.iterdir() if p.is_dir())
    return sorted(int(name) for name in names if name.isascii() and name.isdigit())
