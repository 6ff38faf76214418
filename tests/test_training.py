"""End-to-end training on a generated data set: learning, resume after interruption, run directory."""

import json

import pytest

from contracts.config import load_config
from contracts.errors import TrainingError
from workloads.classes import CLASS_CODES
from workloads.training.keras_compat import import_tf_and_keras
from workloads.training.train import main, resolve_run_dir, run_training

pytestmark = pytest.mark.slow

tf, keras = import_tf_and_keras()

TRAIN = {
    "backbone": "mobilenet_v3_small",
    "weights": "none",
    "image_size": 64,
    "batch_size": 16,
    "head_epochs": 1,
    "finetune_epochs": 4,
    "head_learning_rate": 2e-3,
    "finetune_learning_rate": 2e-3,
}


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def trained(synthetic_split):
    """A run interrupted after finetune epoch 2 and then resumed to completion."""
    config = load_config({"artifacts_dir": str(synthetic_split), "train": TRAIN})
    lines = []
    with pytest.raises(Interrupt):
        _interrupt_in_finetune(config, lines)
    first_attempt = list(lines)
    lines.clear()
    result = run_training(config, run_id="resumed", resume=True, progress=lines.append)
    return result, first_attempt, lines


def _interrupt_in_finetune(config, lines):
    """Train until finetune epoch 2 is checkpointed, then raise as a killed process would stop."""

    class StopInFinetune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if any("phase 2 (finetune) epoch 2/" in line for line in lines):
                raise Interrupt

    run_training(config, run_id="resumed", progress=lines.append, extra_callbacks=[StopInFinetune()])


def test_training_learns_far_above_chance(trained):
    result, _, _ = trained
    test = result.metrics["test"]
    chance = 1 / len(CLASS_CODES)
    assert test["balanced_accuracy"] > 3 * chance
    assert test["accuracy"] > 3 * chance


def test_interrupted_run_resumes_where_it_stopped(trained):
    result, first_attempt, resumed = trained
    assert any("phase 2 (finetune) epoch 2/4" in line for line in first_attempt)
    assert not any("epoch 3/4" in line for line in first_attempt)
    assert any("phase 1 (head) already complete" in line for line in resumed)
    assert any("resuming from the last completed epoch" in line for line in resumed)
    finetune_lines = [line for line in resumed if "phase 2 (finetune) epoch" in line]
    assert [line.split("epoch ")[1].split("/")[0] for line in finetune_lines] == ["3", "4"]
    history = json.loads((result.run_dir / "history.json").read_text())["epochs"]
    assert [(r["phase"], r["epoch"]) for r in history] == [("head", 1)] + [
        ("finetune", e) for e in (1, 2, 3, 4)
    ]


def test_run_directory_is_complete(trained):
    result, _, _ = trained
    run = result.run_dir
    for name in ("config.json", "metrics.json", "history.json", "MODEL_CARD.md", "model_card.json"):
        assert (run / name).is_file(), name
    assert (run / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run / "metrics.json").read_text())
    per_class = metrics["test"]["per_class"]
    assert set(per_class) == set(CLASS_CODES)
    assert {"precision", "recall"} <= set(per_class["NGS"])
    assert len(metrics["test"]["confusion_matrix"]) == 21
    card = json.loads((run / "model_card.json").read_text())
    assert card["classes"] == list(CLASS_CODES)
    assert card["input"] == {
        "name": "image",
        "shape": [-1, 64, 64, 3],
        "dtype": "float32",
        "layout": "NHWC",
        "color": "RGB",
        "range": [0, 255],
    }
    assert card["framework"]["keras"].startswith("2.")
    assert len(card["split_manifest_sha256"]) == 64


def test_saved_model_serves_the_contract(trained, synthetic_split):
    from workloads.data.manifest import SplitManifest
    from workloads.images import load_batch

    result, _, _ = trained
    loaded = tf.saved_model.load(str(result.saved_model))
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["image"]
    assert list(serve.structured_outputs) == ["probabilities"]
    entries = SplitManifest.load(synthetic_split / "data" / "split.json").entries("test")[:8]
    batch = load_batch([e.path for e in entries], 64)
    probabilities = serve(image=tf.constant(batch))["probabilities"].numpy()
    assert probabilities.shape == (8, 21)
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-4


def test_existing_run_needs_resume_and_resume_checks_config(trained, synthetic_split):
    result, _, _ = trained
    runs = result.run_dir.parent
    with pytest.raises(TrainingError, match="already complete"):
        resolve_run_dir(runs, "resumed", resume=True)
    with pytest.raises(TrainingError, match="exists; pass --resume"):
        resolve_run_dir(runs, "resumed", resume=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        resolve_run_dir(runs, None, resume=True)
    unfinished = runs / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"train": {**TRAIN, "image_size": 96}}))
    config = load_config({"artifacts_dir": str(synthetic_split), "train": TRAIN})
    with pytest.raises(TrainingError, match=r"train\.image_size was 96, now 64"):
        run_training(config, run_id="unfinished", resume=True)


def test_module_cli_reports_bad_input_in_one_line(capsys, tmp_path):
    assert main(["--artifacts-dir", str(tmp_path), "--batch-size", "zero"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: train.batch_size must be an integer, got 'zero'"
    assert main(["--artifacts-dir", str(tmp_path), "--weights", "none"]) == 1
    assert "split manifest" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
