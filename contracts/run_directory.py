"""The layout of one training run, ``<artifacts>/runs/<run_id>/``, named in one place.

Training writes config.json, history.json, checkpoints/, metrics.json, confusion_matrix.png,
saved_model/, MODEL_CARD.md and, last, model_card.json (its presence marks a finished run).
Optimize adds ``openvino/<precision>/model.xml|bin`` and ``openvino/optimization.json``; bench reads
the SavedModel back for its TensorFlow baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def ir(self, precision: str) -> Path:
        """The model.xml optimize wrote for ``precision`` (model.bin lies beside it)."""
        return self.openvino / precision / MODEL_XML

    def is_complete(self) -> bool:
        """The model card is written last, after the SavedModel."""
        return self.model_card.is_file() and self.saved_model.is_dir()


def finished_runs(runs: Path) -> list[RunDirectory]:
    """Every complete run under ``runs``, in name order."""
    runs = Path(runs)
    if not runs.is_dir():
        return []
    found = (RunDirectory(p) for p in sorted(runs.iterdir()) if p.is_dir())
    return [run for run in found if run.is_complete()]
