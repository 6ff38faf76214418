"""Publishing to the OVMS model repository (its layout: ``contracts.model_repository``).

OVMS serves the highest integer version folder of each model and ignores other folders, so a
version is staged in ``.staging-*`` beside the versions and renamed into place in one step;
a half-copied version is never visible. All precisions of one optimize run are published
together under one version number (one past the highest version of any of them), so
``bone-marrow-fp32/3`` and ``bone-marrow-int8/3`` always come from the same run.

A precision whose model.xml, model.bin and model card are byte-identical (sha256) to its latest
published version is not published again: that version is reused and reported as unchanged, so
re-running optimize on the same run does not make OVMS reload the same model as a new version.
The others still get the next number, so the latest version of every precision is always the
output of the latest publish.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from contracts.errors import ModelRepositoryError, OptimizationError
from contracts.files import sha256_file, write_json_atomic
from contracts.model_repository import (
    MODEL_BIN,
    MODEL_CARD,
    MODEL_XML,
    SERVER_MOUNT,
    ModelCard,
    ModelRepository,
    ModelVersion,
)
from workloads.progress import Progress, print_progress

STAGING_PREFIX = ".staging-"  # not an integer, so OVMS never treats it as a version


class Publication(list[ModelVersion]):
    """The versions :func:`publish` leaves for readers, in the order asked; ``unchanged`` names
    (``<model>-<precision>``) those that were already published byte for byte and were reused."""

    def __init__(self, models: Iterable[ModelVersion] = (), unchanged: Iterable[str] = ()):
        super().__init__(models)
        self.unchanged = frozenset(unchanged)


def published_entry(model: ModelVersion, *, unchanged: bool = False) -> dict[str, Any]:
    """How optimization.json lists a published version (``unchanged``: reused, not copied)."""
    return {
        "name": model.name,
        "version": model.version,
        "precision": model.precision,
        "path": str(model.directory),
        "bin_sha256": model.sha256,
        "xml_sha256": sha256_file(model.xml),
        "unchanged": unchanged,
    }


def identical_latest(
    repository: ModelRepository, model_name: str, precision: str, ir_folder: Path, model_card: Path
) -> ModelVersion | None:
    """The latest published version of ``precision`` if its three files equal these (sha256)."""
    if not repository.versions(model_name, precision):
        return None
    try:
        latest = repository.find(model_name, precision)
    except ModelRepositoryError:  # incomplete or unreadable: publish a new one instead
        return None
    same = (
        latest.sha256 == sha256_file(ir_folder / MODEL_BIN)
        and sha256_file(latest.xml) == sha256_file(ir_folder / MODEL_XML)
        and sha256_file(latest.model_card) == sha256_file(model_card)
    )
    return latest if same else None


def next_version(repository: ModelRepository, model_name: str, precisions: Iterable[str]) -> int:
    """One past the highest version of any of ``precisions``, so one run shares one number."""
    return 1 + max((max(repository.versions(model_name, p), default=0) for p in precisions), default=0)


def publish(
    repository: Path,
    model_name: str,
    irs: Mapping[str, Path],
    model_card: Path,
    *,
    server_mount: str = SERVER_MOUNT,
    progress: Progress = print_progress,
) -> Publication:
    """Publish IR folders (precision → folder holding model.xml + model.bin) as one new version.

    A precision identical to its latest published version reuses it (see the module docstring).
    All or nothing: every precision is staged before any is renamed into place, and if a rename
    fails the versions already renamed by this call are removed again. Then config.json lists
    every published model, keeping the entries it already had. Returns the versions as readers
    will find them.
    """
    if not irs:
        raise OptimizationError("nothing to publish: no accepted model precision")
    for precision, folder in irs.items():
        for name in (MODEL_XML, MODEL_BIN):
            if not (folder / name).is_file():
                raise OptimizationError(f"cannot publish {precision}: {folder / name} is missing")
    if not model_card.is_file():
        raise OptimizationError(f"cannot publish: model card {model_card} is missing")
    try:
        ModelCard.load(model_card)  # what readers will need from it, checked before anything is copied
    except ModelRepositoryError as exc:
        raise OptimizationError(f"cannot publish: {exc}") from None
    repo = ModelRepository(repository)
    _read_server_config(repo.config_file)  # a broken config.json must stop us before publishing

    reused = {
        p: found
        for p, folder in irs.items()
        if (found := identical_latest(repo, model_name, p, folder, model_card))
    }
    model_dirs = {p: repo.model_dir(model_name, p) for p in irs if p not in reused}
    for model_dir in model_dirs.values():
        model_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(repo, model_name, irs)
    staged: dict[str, Path] = {}
    renamed: list[Path] = []
    try:
        for precision in model_dirs:
            staged[precision] = _stage(model_dirs[precision], irs[precision], model_card)
        for precision, staging in staged.items():
            target = model_dirs[precision] / str(version)
            _rename_without_replacing(staging, target)
            renamed.append(target)
        published = [reused.get(p) or repo.find(model_name, p, version) for p in irs]
    except BaseException as exc:
        for staging in staged.values():
            shutil.rmtree(staging, ignore_errors=True)
        for target in renamed:
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, ModelRepositoryError):
            raise OptimizationError(f"published version does not read back: {exc}") from None
        raise
    update_server_config(repository, [m.name for m in published], server_mount=server_mount)
    for model in published:
        if model.precision in reused:
            progress(
                f"unchanged {model.name} version {model.version}: model.xml, model.bin and model card are "
                f"byte-identical to it, not republished → {model.directory}"
            )
        else:
            progress(f"published {model.name} version {model.version} → {model.directory}")
    return Publication(published, (m.name for m in published if m.precision in reused))


def _stage(model_dir: Path, ir_folder: Path, model_card: Path) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    # mkdtemp makes the folder owner-only; the OVMS container usually runs as another user.
    staging.chmod(0o755)
    for name in (MODEL_XML, MODEL_BIN):
        shutil.copyfile(ir_folder / name, staging / name)
    shutil.copyfile(model_card, staging / MODEL_CARD)
    return staging


def _rename_without_replacing(staging: Path, target: Path) -> None:
    # os.rename replaces an existing *empty* directory on POSIX and fails on a non-empty one,
    # so a published version's files are never overwritten; the check makes the common case clear.
    collision = OptimizationError(
        f"version folder {target} already exists; refusing to overwrite a published model — "
        "another publish ran at the same time, try again"
    )
    if target.exists():
        raise collision
    try:
        os.rename(staging, target)
    except OSError:
        raise collision from None


def update_server_config(
    repository: Path, model_names: Iterable[str], *, server_mount: str = SERVER_MOUNT
) -> Path:
    """Add missing models to the OVMS multi-model config.json; other entries and keys are kept."""
    path = ModelRepository(repository).config_file
    config = _read_server_config(path)
    entries = config["model_config_list"]
    known = {e.get("config", {}).get("name") for e in entries if isinstance(e, dict)}
    added = [name for name in dict.fromkeys(model_names) if name not in known]
    for name in added:
        entries.append({"config": {"name": name, "base_path": f"{server_mount}/{name}"}})
    if added or not path.exists():
        write_json_atomic(path, config)
    return path


def _read_server_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"model_config_list": []}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptimizationError(f"cannot read the OVMS config {path}: {exc}; fix or remove it") from None
    if not isinstance(config, dict) or not isinstance(config.setdefault("model_config_list", []), list):
        raise OptimizationError(f"{path} is not an OVMS config: 'model_config_list' must be a list")
    return config
