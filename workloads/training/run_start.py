"""How a run directory comes into being, and goes away again when training never got going.

A new run is built in a hidden staging sibling (``runs/.<run_id>.staging-<pid>-<hex>``, never
listed as a run) holding config.json and provenance.json, and renamed to ``runs/<run_id>``
in one step once everything training needs (split, device, batch size) has been checked, so
``runs/`` only ever shows complete starts. Until the first epoch is checkpointed the new run
holds nothing a resume could use, so any failure or Ctrl-C before then removes it again: a
failed start leaves nothing behind. From then on it stays, and ``--resume`` continues it in
place (a resumed run is never staged or removed). Only the chief writes; other workers of a
multi-worker job never create, move or remove the run directory.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from contracts.errors import TrainingError
from contracts.files import temporary_sibling
from contracts.run_directory import RunDirectory

WriteJson = Callable[[Path, Any], None]


class RunStart:
    """The run directory of one ``run_training`` call, from staging to 'training has started'."""

    def __init__(self) -> None:
        self.run: RunDirectory | None = None
        self.resumed = False
        self._created: Path | None = None  # the run directory this process moved into place
        self._created_runs_dir: Path | None = None
        self._replaced_empty = False  # an empty folder stood at the run's path (kept on discard)

    @property
    def run_id(self) -> str:
        return self.run.run_id if self.run else ""

    def attach(self, run: RunDirectory) -> None:
        """Name the run (every worker), so an interruption can name it; creates nothing."""
        self.run = run

    def open_new(self, run: RunDirectory, files: Mapping[Path, Any], write_json: WriteJson) -> None:
        """Write ``files`` ({path inside ``run``: JSON payload}) into a staging sibling, then move it in."""
        self.run = run
        self._replaced_empty = run.path.is_dir()
        runs = run.path.parent
        if not runs.exists():
            runs.mkdir(parents=True)
            self._created_runs_dir = runs
        staging = temporary_sibling(run.path, "staging")
        staging.mkdir()
        try:
            for path, payload in files.items():
                write_json(staging / path.relative_to(run.path), payload)
            try:
                # An empty directory in the way (the DL1 script creates the mount point) is
                # replaced; anything else means another run took the id meanwhile.
                staging.rename(run.path)
            except OSError:
                raise TrainingError(
                    f"run directory {run.path} exists; "
                    "pass --resume to continue it or choose another --run-id"
                ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            self._remove_created_runs_dir()
            raise
        self._created = run.path

    def _remove_created_runs_dir(self) -> None:
        if self._created_runs_dir is not None:
            with contextlib.suppress(OSError):  # only if empty
                self._created_runs_dir.rmdir()
            self._created_runs_dir = None

    def open_resumed(self, run: RunDirectory) -> None:
        self.run = run
        self.resumed = True

    def has_started(self) -> bool:
        """Whether the run holds anything a resume can continue from: a finished epoch or phase."""
        run = self.run
        if run is None or not run.path.is_dir():
            return False
        if self.resumed or run.history.is_file():
            return True
        return run.checkpoints.is_dir() and any(p.is_file() for p in run.checkpoints.rglob("*"))

    def discard_unless_started(self) -> bool:
        """Remove a run this process created that never finished an epoch; True when one remains."""
        if self._created is not None and not self.has_started():
            shutil.rmtree(self._created, ignore_errors=True)
            if self._replaced_empty:
                self._created.mkdir(exist_ok=True)
            self._created = None
            self._remove_created_runs_dir()
            return False
        return self.has_started()
