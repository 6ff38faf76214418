"""What the local model server serves, found through ``contracts.model_repository``.

Serving reports problems as ServingError, and records each served version in endpoints.json
as :func:`served_entry` describes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contracts.errors import ModelRepositoryError, ServingError
from contracts.files import sha256_file
from contracts.known_answer import verify_version
from contracts.model_repository import (
    MODEL_BIN,
    MODEL_CARD,
    MODEL_XML,
    ModelRepository,
    ModelVersion,
    execution_precision,
)
from workloads.bench.cpuinfo import cpu_info
from workloads.execution_precision import cpu_refusal


def find_model(repository: Path, model_name: str, precision: str, version: int | None = None) -> ModelVersion:
    """The latest (or the given) version of one precision, checked; ServingError with one line if unusable."""
    try:
        return ModelRepository(repository).find(model_name, precision, version)
    except ModelRepositoryError as exc:
        raise ServingError(str(exc)) from None


def find_models(repository: Path, model_name: str, precisions: Iterable[str]) -> list[ModelVersion]:
    """The committed version of each served variant; a variant this CPU cannot execute (bf16
    without AVX512_BF16 / AMX) is refused first, with one line."""
    precisions = list(precisions)
    flags = cpu_info()["flags"]
    for precision in precisions:
        if refusal := cpu_refusal(precision, flags, "of this machine", "serving.precisions"):
            raise ServingError(refusal)
    try:
        return ModelRepository(repository).find_all(model_name, precisions)
    except ModelRepositoryError as exc:
        raise ServingError(str(exc)) from None


def verify_models(models: Iterable[ModelVersion]) -> None:
    """Every served version's files match the sha256 recorded at publish (its SHA256SUMS).

    A mismatch is one ServingError line naming the file, before anything is started.
    """
    for model in models:
        try:
            verify_version(model.directory, (MODEL_XML, MODEL_BIN, MODEL_CARD))
        except ModelRepositoryError as exc:
            raise ServingError(f"refusing to serve {model.name} version {model.version}: {exc}") from None


def served_entry(model: ModelVersion) -> dict[str, Any]:
    """One model in endpoints.json; bench reads its sha256 (of model.bin)."""
    return {
        "version": model.version,
        "sha256": model.sha256,
        "model_card_sha256": sha256_file(model.model_card),
        "precision": model.precision,
        # The INFERENCE_PRECISION_HINT the server pins (and checks OpenVINO reports) for it.
        "execution_precision": execution_precision(model.precision),
        "image_size": model.image_size,
        "path": str(model.directory),
    }
