"""The layout of one training run, ``<artifacts>/runs/<run_id>/``, named in one place.

Training builds config.json and provenance.json in a hidden staging sibling
(``runs/.<run_id>.staging-…``) and renames it into place when training starts; it then writes
history.json, checkpoints/, metrics.json, confusion_matrix.png, saved_model/, MODEL_CARD.md and,
last, model_card.json (its presence marks a finished run). Hidden entries of ``runs/`` are never runs.
Optimize adds ``openvino/<precision>/model.xml|bin`` and ``openvino/optimization.json`` (the accepted
record, matching what it published) or, when a check rejects an attempt, ``openvino-rejected/`` with
the same layout (the latest rejected attempt; ``openvino/`` stays as it was); bench reads the
SavedModel back for its TensorFlow baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from contracts.model_repository import MODEL_CARD, MODEL_XML

OPTIMIZATION_REPORT = "optimization.json"  # in openvino/ (and in the folder staged to become it)


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    @classmethod
    def of(cls, runs: Path, run_id: str) -> RunDirectory:
        return cls(Path(runs) / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def provenance(self) -> Path:
        """Where the data came from: source, dataset root, split manifest + sha256, class counts, weights."""
        return self.path / "provenance.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def confusion_matrix(self) -> Path:
        return self.path / "confusion_matrix.png"

    @property
    def saved_model(self) -> Path:
        return self.path / "saved_model"

    @property
    def saved_model_graph(self) -> Path:
        return self.saved_model / "saved_model.pb"

    @property
    def model_card(self) -> Path:
        return self.path / MODEL_CARD

    @property
    def model_card_markdown(self) -> Path:
        return self.path / "MODEL_CARD.md"

    @property
    def openvino(self) -> Path:
        return self.path / "openvino"

    @property
    def optimization_report(self) -> Path:
        return self.openvino / OPTIMIZATION_REPORT

    @property
    def openvino_rejected(self) -> Path:
        """The latest optimize attempt that a check rejected: its IRs and report, never published."""
        return self.path / "openvino-rejected"

    @property
    def rejected_optimization_report(self) -> Path:
        return self.openvino_rejected / OPTIMIZATION_REPORT

    def ir(self, precision: str) -> Path:
        """The model.xml optimize wrote for ``precision`` (model.bin lies beside it)."""
        return self.openvino / precision / MODEL_XML

    def is_complete(self) -> bool:
        """The model card is written last, after the SavedModel."""
        return self.model_card.is_file() and self.saved_model.is_dir()

    def last_activity(self) -> float:
        """When this run last made progress (epoch time): the newest of its config, provenance,
        history and checkpoint files, or the start time recorded in provenance.json.

        Used to pick the run ``--resume`` continues: run ids are free-form, so their names say
        nothing about which run is the latest.
        """
        times = [0.0]
        files = [self.config, self.provenance, self.history]
        if self.checkpoints.is_dir():
            # Files only: a folder's time changes when anything (a copy, a sync) touches it.
            files.extend(p for p in self.checkpoints.rglob("*") if p.is_file())
        for path in files:
            try:
                times.append(path.stat().st_mtime)
            except OSError:
                continue
        try:
            started = json.loads(self.provenance.read_text()).get("started_at", "")
            times.append(datetime.fromisoformat(started).timestamp())
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        return max(times)


def _runs(runs: Path) -> list[RunDirectory]:
    """Every run directory under ``runs`` in name order; hidden entries (staging) are not runs."""
    runs = Path(runs)
    if not runs.is_dir():
        return []
    return [RunDirectory(p) for p in sorted(runs.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def finished_runs(runs: Path) -> list[RunDirectory]:
    """Every complete run under ``runs``, in name order."""
    return [run for run in _runs(runs) if run.is_complete()]


def unfinished_runs(runs: Path) -> list[RunDirectory]:
    """Every run under ``runs`` that has no model card yet, the most recently active last."""
    pending = [run for run in _runs(runs) if not run.is_complete()]
    return sorted(pending, key=lambda run: (run.last_activity(), run.run_id))
