"""The one owner of the run layout ``<artifacts>/runs/<run_id>/``."""

from pathlib import Path

from contracts.config import ToolkitConfig
from contracts.run_directory import RunDirectory, finished_runs


def test_the_run_layout_is_named_in_one_place(tmp_path):
    config = ToolkitConfig(artifacts_dir=str(tmp_path))
    run = RunDirectory.of(config.paths.runs, "20250101-120000")
    root = tmp_path / "runs" / "20250101-120000"
    assert run.path == root and run.run_id == "20250101-120000"
    assert {
        "config": run.config,
        "history": run.history,
        "checkpoints": run.checkpoints,
        "metrics": run.metrics,
        "confusion_matrix": run.confusion_matrix,
        "saved_model": run.saved_model,
        "saved_model_graph": run.saved_model_graph,
        "model_card": run.model_card,
        "model_card_markdown": run.model_card_markdown,
        "openvino": run.openvino,
        "optimization_report": run.optimization_report,
        "openvino_rejected": run.openvino_rejected,
        "rejected_optimization_report": run.rejected_optimization_report,
        "int8 IR": run.ir("int8"),
    } == {
        "config": root / "config.json",
        "history": root / "history.json",
        "checkpoints": root / "checkpoints",
        "metrics": root / "metrics.json",
        "confusion_matrix": root / "confusion_matrix.png",
        "saved_model": root / "saved_model",
        "saved_model_graph": root / "saved_model" / "saved_model.pb",
        "model_card": root / "model_card.json",
        "model_card_markdown": root / "MODEL_CARD.md",
        "openvino": root / "openvino",
        "optimization_report": root / "openvino" / "optimization.json",
        "openvino_rejected": root / "openvino-rejected",
        "rejected_optimization_report": root / "openvino-rejected" / "optimization.json",
        "int8 IR": root / "openvino" / "int8" / "model.xml",
    }


def _run(runs: Path, name: str, *, card: bool, saved_model: bool) -> RunDirectory:
    run = RunDirectory.of(runs, name)
    run.path.mkdir(parents=True)
    if saved_model:
        run.saved_model.mkdir()
    if card:
        run.model_card.write_text("{}")
    return run


def test_a_run_is_finished_once_its_model_card_sits_beside_the_saved_model(tmp_path):
    runs = tmp_path / "runs"
    done_b = _run(runs, "b", card=True, saved_model=True)
    done_a = _run(runs, "a", card=True, saved_model=True)
    _run(runs, "no-card", card=False, saved_model=True)
    _run(runs, "no-saved-model", card=True, saved_model=False)
    (runs / "notes.txt").write_text("not a run")
    assert finished_runs(runs) == [done_a, done_b]
    assert finished_runs(tmp_path / "missing") == []
    assert not RunDirectory(runs / "no-card").is_complete()
