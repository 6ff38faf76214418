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

All or nothing across precisions, even under SIGKILL: the new version folders are renamed in
first (readers ignore them: they are above the committed set), then ``version_set.json`` is
replaced in one rename — the commit — and then config.json pins the committed versions for
OVMS. A publish killed before the commit leaves the previous set served; one killed after it
leaves config.json one step behind, which the next publish (or optimize) rewrites. Leftovers
of killed publishes (``.staging-*`` folders, version folders above the committed set) are
removed, and reported, by :func:`recover` at the start of the next optimize and publish. One
publish at a time per repository (an advisory lock on its folder).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.errors import ModelRepositoryError, OptimizationError
from contracts.files import sha256_file, write_json_atomic
from contracts.known_answer import (
    CHECKSUM_FILE,
    KNOWN_ANSWER_FILE,
    StoredKnownAnswer,
    checksum_text,
    verify_version,
)
from contracts.model_repository import (
    MODEL_BIN,
    MODEL_CARD,
    MODEL_XML,
    SERVER_MOUNT,
    VERSION_SET_FILE,
    ModelCard,
    ModelRepository,
    ModelVersion,
    execution_precision,
    served_name,
)
from workloads.progress import Progress, print_progress

STAGING_PREFIX = ".staging-"  # not an integer, so OVMS never treats it as a version


def _step(name: str) -> None:
    """Called between the steps of a publish; tests inject faults (an exception, a SIGKILL) here."""


@contextmanager
def publish_lock(repository: Path) -> Iterator[None]:
    """Hold the repository's advisory lock (flock on its folder; released by the kernel on a kill)."""
    repository.mkdir(parents=True, exist_ok=True)
    fd = os.open(repository, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OptimizationError(
                f"another publish to {repository} is running; try again when it has finished"
            ) from None
        yield
    finally:
        os.close(fd)


def _under_publish_lock(function: Callable[..., Publication]) -> Callable[..., Publication]:
    @functools.wraps(function)
    def locked(repository: Path, *args: Any, **kwargs: Any) -> Publication:
        if not Path(repository).is_dir():  # a first publish: nothing to protect yet, nothing created early
            return function(repository, *args, **kwargs)
        with publish_lock(Path(repository)):
            return function(repository, *args, **kwargs)

    return locked


# What every published version must list in SHA256SUMS (known_answer.json too, when written).
PUBLISHED_FILES = (MODEL_XML, MODEL_BIN, MODEL_CARD)


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
    repository: ModelRepository,
    model_name: str,
    precision: str,
    ir_folder: Path,
    model_card: Path,
    *,
    known_answer: bool = False,
) -> ModelVersion | None:
    """The latest published version of ``precision`` if its three files equal these (sha256).

    It must also verify against its SHA256SUMS (and hold a known_answer.json when one is to be
    stored): a version published before those existed is replaced, not reused, or `up` would keep
    refusing it."""
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
        and (not known_answer or (latest.directory / KNOWN_ANSWER_FILE).is_file())
    )
    if same:
        try:
            verify_version(latest.directory, PUBLISHED_FILES)
        except ModelRepositoryError:
            return None
    return latest if same else None


def next_version(repository: ModelRepository, model_name: str, precisions: Iterable[str]) -> int:
    """One past the highest version of any of ``precisions``, so one run shares one number."""
    return 1 + max((max(repository.versions(model_name, p), default=0) for p in precisions), default=0)


@_under_publish_lock
def publish(
    repository: Path,
    model_name: str,
    irs: Mapping[str, Path],
    model_card: Path,
    *,
    server_mount: str = SERVER_MOUNT,
    progress: Progress = print_progress,
    known_answers: Mapping[str, StoredKnownAnswer] | None = None,
) -> Publication:
    """Publish IR folders (precision → folder holding model.xml + model.bin) as one new version.

    A precision identical to its latest published version reuses it (see the module docstring).
    All or nothing: every precision is staged before any is renamed into place, and if a rename
    fails the versions already renamed by this call are removed again. The set is committed by
    replacing version_set.json (one rename); then config.json lists every published model, pinned
    to its committed version, keeping the entries it already had. A kill at any point leaves
    either the previous set or this one served (see the module docstring). Returns the versions
    as readers will find them.
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
    _recover_locked(repo, model_name, irs, server_mount=server_mount, progress=progress)
    if repo.committed(model_name) is None:  # a first publish: "nothing committed" before any folder
        _commit(repo, model_name, {}, None)

    reused = {
        p: found
        for p, folder in irs.items()
        if (
            found := identical_latest(
                repo, model_name, p, folder, model_card, known_answer=p in (known_answers or {})
            )
        )
    }
    model_dirs = {p: repo.model_dir(model_name, p) for p in irs if p not in reused}
    for model_dir in model_dirs.values():
        model_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(repo, model_name, irs)
    staged: dict[str, Path] = {}
    renamed: list[Path] = []
    new_set = {p: found.version if (found := reused.get(p)) else version for p in irs}
    try:
        for precision in model_dirs:
            staged[precision] = _stage(
                model_dirs[precision], irs[precision], model_card, (known_answers or {}).get(precision)
            )
            _step(f"staged {precision}")
        for precision, staging in staged.items():
            target = model_dirs[precision] / str(version)
            _rename_without_replacing(staging, target)
            renamed.append(target)
            _step(f"renamed {precision}")
        _check_complete(model_dirs, version)
        _commit(repo, model_name, new_set, ModelCard.load(model_card).run_id)  # the one atomic step
    except BaseException as exc:
        for staging in staged.values():
            shutil.rmtree(staging, ignore_errors=True)
        for target in renamed:
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, ModelRepositoryError):
            raise OptimizationError(f"published version does not read back: {exc}") from None
        raise
    _step("committed")
    try:
        published = [reused.get(p) or repo.find(model_name, p, version) for p in irs]
    except ModelRepositoryError as exc:
        raise OptimizationError(f"published version does not read back: {exc}") from None
    update_server_config(
        repository,
        [m.name for m in published],
        server_mount=server_mount,
        versions={m.name: m.version for m in published},
        hints={m.name: execution_precision(m.precision) for m in published},
    )
    _step("configured")
    for model in published:
        if model.precision in reused:
            progress(
                f"unchanged {model.name} version {model.version}: model.xml, model.bin and model card are "
                f"byte-identical to it, not republished → {model.directory}"
            )
        else:
            progress(f"published {model.name} version {model.version} → {model.directory}")
    return Publication(published, (m.name for m in published if m.precision in reused))


def recover(
    repository: Path,
    model_name: str,
    precisions: Iterable[str],
    *,
    server_mount: str = SERVER_MOUNT,
    progress: Progress = print_progress,
) -> list[Path]:
    """Remove what killed publishes left (staging folders, version folders above the committed set)
    and bring config.json in line with the committed set; returns the removed paths. While another
    publish holds the repository nothing is touched (one line says so)."""
    if not repository.is_dir():
        return []
    try:
        with publish_lock(repository):
            return _recover_locked(
                ModelRepository(repository),
                model_name,
                precisions,
                server_mount=server_mount,
                progress=progress,
            )
    except OptimizationError as exc:
        progress(f"not cleaning up the model repository now: {exc}")
        return []


def _recover_locked(
    repo: ModelRepository,
    model_name: str,
    precisions: Iterable[str],
    *,
    server_mount: str,
    progress: Progress,
) -> list[Path]:
    try:
        committed = repo.committed(model_name)
    except ModelRepositoryError as exc:
        raise OptimizationError(f"{exc}; or remove it and republish every precision") from None
    if committed is None:
        committed = _adopt_legacy(repo, model_name, precisions)
    removed: list[Path] = []
    for precision in dict.fromkeys([*committed, *precisions]):
        model_dir = repo.model_dir(model_name, precision)
        if not model_dir.is_dir():
            continue
        leftovers = [p for p in model_dir.iterdir() if p.is_dir() and p.name.startswith(STAGING_PREFIX)]
        leftovers += [model_dir / str(v) for v in repo.uncommitted(model_name, precision)]
        for path in sorted(leftovers):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        progress(
            f"removed {len(removed)} leftover(s) of an interrupted publish (the committed set is kept): "
            + ", ".join(str(p.relative_to(repo.root)) for p in removed)
        )
    if committed and repo.config_file.exists():
        names = {served_name(model_name, p): v for p, v in committed.items()}
        hints = {served_name(model_name, p): execution_precision(p) for p in committed}
        update_server_config(repo.root, names, server_mount=server_mount, versions=names, hints=hints)
    return removed


def _adopt_legacy(repo: ModelRepository, model_name: str, precisions: Iterable[str]) -> dict[str, int]:
    """A repository published before version_set.json gets one: the committed set is the highest
    version number that every precision has (the last publish that completed; folders above it are
    what a killed one left), or none — nothing served until the next publish — when there is none."""
    found = {p: set(v) for p in dict.fromkeys(precisions) if (v := repo.versions(model_name, p))}
    common = set.intersection(*found.values()) if found else set()
    adopted = {p: max(common) for p in found} if common else {}
    if found:
        _commit(repo, model_name, adopted, None)
    return adopted


def _commit(repo: ModelRepository, model_name: str, versions: Mapping[str, int], run_id: str | None) -> None:
    """Replace ``model_name``'s version set in version_set.json in one rename; other models are kept."""
    record = repo.version_sets() or {"models": {}}
    record["models"][model_name] = {
        "versions": dict(versions),
        "run_id": run_id,
        "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(repo.root / VERSION_SET_FILE, record)


def _check_complete(model_dirs: Mapping[str, Path], version: int) -> None:
    for model_dir in model_dirs.values():
        for name in (MODEL_XML, MODEL_BIN, MODEL_CARD):
            if not (model_dir / str(version) / name).is_file():
                missing = model_dir / str(version) / name
                raise ModelRepositoryError(f"{model_dir.name} {version} is incomplete: {missing} is missing")


def _stage(
    model_dir: Path, ir_folder: Path, model_card: Path, known_answer: StoredKnownAnswer | None = None
) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    # mkdtemp makes the folder owner-only; the OVMS container usually runs as another user.
    staging.chmod(0o755)
    # The sha256 of the files as optimize evaluated them (the sources), not of the copies: SHA256SUMS
    # then also catches a copy that went wrong, checked below before the version becomes visible.
    digests = {name: sha256_file(ir_folder / name) for name in (MODEL_XML, MODEL_BIN)}
    digests[MODEL_CARD] = sha256_file(model_card)
    for name in (MODEL_XML, MODEL_BIN):
        shutil.copyfile(ir_folder / name, staging / name)
    shutil.copyfile(model_card, staging / MODEL_CARD)
    if known_answer is not None:
        text = known_answer.to_json()
        (staging / KNOWN_ANSWER_FILE).write_text(text, encoding="utf-8")
        digests[KNOWN_ANSWER_FILE] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    (staging / CHECKSUM_FILE).write_text(checksum_text(digests), encoding="utf-8")
    try:
        verify_version(staging, PUBLISHED_FILES)
    except ModelRepositoryError as exc:
        raise OptimizationError(f"the staged copy does not match its source: {exc}") from None
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
    repository: Path,
    model_names: Iterable[str],
    *,
    server_mount: str = SERVER_MOUNT,
    versions: Mapping[str, int] | None = None,
    hints: Mapping[str, str] | None = None,
) -> Path:
    """Add missing models to the OVMS multi-model config.json; other entries and keys are kept.

    ``versions`` (served name → committed version) pins those models to that version with
    ``model_version_policy: {"specific": {"versions": [n]}}``, so OVMS serves the committed set and
    never a version folder an interrupted publish left above it. ``hints`` (served name →
    execution precision) sets their ``plugin_config`` INFERENCE_PRECISION_HINT unless an entry sets
    its own, so an FP32 IR runs in f32 on AMX / AVX512_BF16 hosts too. Written in one rename."""
    path = ModelRepository(repository).config_file
    config = _read_server_config(path)
    entries = config["model_config_list"]
    known = {e.get("config", {}).get("name") for e in entries if isinstance(e, dict)}
    added = [name for name in dict.fromkeys(model_names) if name not in known]
    for name in added:
        entries.append({"config": {"name": name, "base_path": f"{server_mount}/{name}"}})
    changed = bool(added)
    for entry in entries:
        model = entry.get("config") if isinstance(entry, dict) else None
        if isinstance(model, dict) and versions and model.get("name") in versions:
            policy = {"specific": {"versions": [versions[model["name"]]]}}
            if model.get("model_version_policy") != policy:
                model["model_version_policy"] = policy
                changed = True
        if isinstance(model, dict) and hints and model.get("name") in hints:
            plugin = model.setdefault("plugin_config", {})
            if isinstance(plugin, dict) and "INFERENCE_PRECISION_HINT" not in plugin:
                plugin["INFERENCE_PRECISION_HINT"] = hints[model["name"]]
                changed = True
    if changed or not path.exists():
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
