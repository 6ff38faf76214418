"""Training on an imbalanced split with empty and 1–2-image classes, label smoothing, failed starts,
Ctrl-C, and the one-line errors of `invoke train` for a split too small to train."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.config import load_config
from contracts.errors import TrainingInterrupted
from workloads.classes import CLASS_CODES, NUM_CLASSES
from workloads.data.layout import scan_dataset
from workloads.data.manifest import SplitManifest
from workloads.data.split import build_manifest
from workloads.data.synthetic import generate_dataset
from workloads.training.keras_compat import import_tf_and_keras
from workloads.training.losses import training_loss
from workloads.training.train import run_training

pytestmark = pytest.mark.slow

tf, keras = import_tf_and_keras()

ROOT = Path(__file__).resolve().parents[1]
TF215_PYTHON = ROOT / ".venv-tf215" / "bin" / "python"

# The real class sizes (ABE 8, KSC 42, FGC 47 … NGS 29k) scaled down, with an empty class
# folder (ABE) and a class with no folder at all (HAC); KSC has one image (train only), FGC
# and LYI two (train + test).
SIZES = {
    "ABE": 0, "ART": 30, "BAS": 4, "BLA": 24, "EBO": 36, "EOS": 10, "FGC": 2, "KSC": 1, "LYI": 2,
    "LYT": 36, "MMZ": 6, "MON": 8, "MYB": 12, "NGB": 16, "NGS": 44, "NIF": 6, "OTH": 3, "PEB": 5,
    "PLM": 12, "PMO": 14,
}  # fmt: skip
ABSENT = ["ABE", "HAC"]
TRAIN = {
    "backbone": "mobilenet_v3_small",
    "weights": "none",
    "image_size": 48,
    "batch_size": 16,
    "head_epochs": 2,
    "finetune_epochs": 1,
    "label_smoothing": 0.1,
}


def _artifacts_with(tmp: Path, manifest: SplitManifest) -> Path:
    artifacts = tmp / "artifacts"
    manifest.save(artifacts / "data" / "split.json")
    return artifacts


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> Path:
    """An artifacts folder whose split comes from a local copy (source 'local') of an imbalanced set."""
    tmp = tmp_path_factory.mktemp("imbalanced")
    dataset = generate_dataset(
        tmp / "copy", images_per_class=SIZES, image_size=64, seed=3, progress=lambda _: None
    )
    scan = scan_dataset(dataset, workers=2, progress=lambda _: None)
    manifest = build_manifest(scan, seed=42, val_fraction=0.15, test_fraction=0.15, source="local")
    assert set(manifest.empty_classes) >= {"ABE"}
    return _artifacts_with(tmp, manifest)


class _Probe(keras.callbacks.Callback):
    """Records the compiled loss; raises ``stop`` at the end of head epoch ``at`` (or at the start)."""

    def __init__(self, stop: type[BaseException] | None = None, at: int | None = None) -> None:
        super().__init__()
        self.stop, self.at, self.losses = stop, at, []

    def on_train_begin(self, logs=None):
        self.losses.append(self.model.loss)
        if self.stop and self.at is None:
            raise self.stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.stop and self.at == epoch + 1:
            raise self.stop()


def test_an_imbalanced_split_with_empty_and_tiny_classes_trains_resumes_and_reports(imbalanced):
    config = load_config({"artifacts_dir": str(imbalanced), "train": TRAIN})
    manifest = SplitManifest.load(config.paths.split_manifest)
    lines: list[str] = []
    probe = _Probe(KeyboardInterrupt, at=1)
    with pytest.raises(TrainingInterrupted) as info:
        run_training(config, run_id="imbalanced", progress=lines.append, extra_callbacks=[probe])
    assert info.value.resumable
    assert str(info.value) == "training interrupted; resume with `invoke train --resume --run-id imbalanced`"
    runs = config.paths.runs
    assert [p.name for p in runs.iterdir()] == ["imbalanced"]  # no staging folder left
    assert any(
        line.startswith("classes: 19/21 with training images; absent from train: ABE, HAC") for line in lines
    )

    # --resume without --run-id continues it (the latest unfinished run by time), in place.
    probe = _Probe()
    result = run_training(config, resume=True, progress=lines.append, extra_callbacks=[probe])
    assert result.run_dir == runs / "imbalanced"
    assert any("phase 1 (head): resuming from the last completed epoch" in line for line in lines)
    loss = probe.losses[0]
    assert loss.label_smoothing == pytest.approx(0.1) and loss.num_classes == NUM_CLASSES

    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["data"]["absent_classes"]["train"] == ABSENT
    assert metrics["data"]["class_counts"]["KSC"] == {"train": 1, "val": 0, "test": 0, "total": 1}
    assert set(metrics["test"]["per_class"]) == set(CLASS_CODES)
    assert metrics["test"]["per_class"]["ABE"]["support"] == 0
    assert len(metrics["test"]["confusion_matrix"]) == NUM_CLASSES
    card = json.loads((result.run_dir / "model_card.json").read_text())
    assert card["classes"] == list(CLASS_CODES) and card["output"]["shape"] == [-1, NUM_CLASSES]
    assert card["training_data"]["absent_classes"]["train"] == ABSENT
    assert "Classes without training images: ABE, HAC" in (result.run_dir / "MODEL_CARD.md").read_text()

    # The model keeps its 21 outputs in CLASS_CODES order.
    serve = tf.saved_model.load(str(result.saved_model)).signatures["serving_default"]
    out = serve(image=tf.zeros([2, 48, 48, 3]))["probabilities"].numpy()
    assert out.shape == (2, NUM_CLASSES)

    config_json = json.loads((result.run_dir / "config.json").read_text())
    assert config_json["data"]["source"] == "local"
    assert config_json["data"]["path"] == str(manifest.dataset_root)
    record = json.loads((result.run_dir / "provenance.json").read_text())
    assert record["data"]["source"] == "local"
    assert record["data"]["dataset_root"] == str(manifest.dataset_root)
    assert record["data"]["split_manifest_sha256"] == manifest.sha256()
    assert record["data"]["empty_classes"] == list(manifest.empty_classes)
    assert list(record["class_weights"]) == list(CLASS_CODES)
    assert record["class_weights"]["ABE"] == 1.0
    assert record["class_weights"]["KSC"] > record["class_weights"]["NGS"]
    assert record["class_counts"] == metrics["data"]["class_counts"]
    assert record["label_smoothing"] == 0.1
    assert record["started_at"] and len(record["resumed_at"]) == 1


def test_a_failed_or_interrupted_start_leaves_nothing_behind(imbalanced, tmp_path):
    config = load_config({"artifacts_dir": str(imbalanced), "train": {**TRAIN, "head_epochs": 1}})
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="boom"):
        run_training(
            config, runs_dir=runs, run_id="x", progress=lambda _: None, extra_callbacks=[_Probe(_Boom)]
        )
    assert not runs.exists()
    with pytest.raises(TrainingInterrupted) as info:
        run_training(
            config,
            runs_dir=runs,
            run_id="y",
            progress=lambda _: None,
            extra_callbacks=[_Probe(KeyboardInterrupt)],
        )
    assert not info.value.resumable and "nothing was kept" in str(info.value)
    assert not runs.exists()


class _Boom(RuntimeError):
    def __init__(self) -> None:
        super().__init__("boom")


# --- label smoothing ---------------------------------------------------------------------------------
LOSS_CHECK = """
import json, sys
import numpy as np
from workloads.training.keras_compat import import_tf_and_keras
from workloads.training.losses import training_loss
tf, keras = import_tf_and_keras()
rng = np.random.default_rng(0)
logits = rng.normal(size=(4, 21))
probs = tf.constant(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), tf.float32)
labels = tf.constant([0, 3, 20, 7])
loss = {s: training_loss(tf, keras, label_smoothing=s, num_classes=21) for s in (0.0, 0.2)}
out = {s: float(fn(labels, probs)) for s, fn in loss.items()}
out["weighted"] = float(loss[0.2](labels, probs, tf.constant([1.0, 2.0, 0.5, 1.0])))
print(json.dumps({"tf": tf.__version__, **{str(k): v for k, v in out.items()}}))
"""


def _expected(smoothing: float, weights=None) -> float:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 21))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    targets = np.eye(21)[[0, 3, 20, 7]] * (1 - smoothing) + smoothing / 21
    per_sample = -(targets * np.log(probs)).sum(axis=1)
    w = np.ones(4) if weights is None else np.asarray(weights)
    return float((per_sample * w).sum() / 4)


def test_label_smoothing_changes_the_loss_on_tf_2_21():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", LOSS_CHECK], capture_output=True, text=True, env=env, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    _check_losses(out)
    # The plain loss is Keras's own sparse cross-entropy, unchanged.
    assert isinstance(
        training_loss(tf, keras, label_smoothing=0.0, num_classes=21),
        keras.losses.SparseCategoricalCrossentropy,
    )


def test_label_smoothing_changes_the_loss_on_tf_2_15():
    if not TF215_PYTHON.exists():
        pytest.skip(f"{TF215_PYTHON} missing: `make test` builds it from requirements-tf215.txt")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_USE_LEGACY_KERAS", None)
    run = subprocess.run(
        [str(TF215_PYTHON), "-c", LOSS_CHECK], capture_output=True, text=True, env=env, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["tf"].startswith("2.15.")
    _check_losses(out)


def _check_losses(out: dict) -> None:
    assert out["0.0"] == pytest.approx(_expected(0.0), rel=1e-5)
    assert out["0.2"] == pytest.approx(_expected(0.2), rel=1e-5)
    assert out["0.2"] != pytest.approx(out["0.0"], rel=1e-3)
    assert out["weighted"] == pytest.approx(_expected(0.2, [1.0, 2.0, 0.5, 1.0]), rel=1e-5)


# --- the CLI ---------------------------------------------------------------------------------------------
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]
TRAIN_FLAGS = [
    "--backbone",
    "mobilenet_v3_small",
    "--weights",
    "none",
    "--image-size",
    "48",
    "--batch-size",
    "16",
]


def test_a_one_class_split_is_one_line_and_a_non_zero_exit(tmp_path, write_image):
    root = tmp_path / "one" / "bone_marrow_cell_dataset" / "NGS"
    for i in range(6):
        write_image(root / f"NGS_{i + 1:05d}.jpg", seed=i)
    scan = scan_dataset(root.parents[1], workers=2, progress=lambda _: None)
    manifest = build_manifest(scan, seed=1, val_fraction=0.15, test_fraction=0.15, source="local")
    artifacts = _artifacts_with(tmp_path, manifest)
    result = subprocess.run(
        [*INVOKE, "train", *TRAIN_FLAGS, "--artifacts-dir", str(artifacts)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the split manifest {artifacts / 'data' / 'split.json'} has training images of 1 class (NGS) "
        "only; a classifier needs at least 2 of the 21 classes"
    )
    assert sorted(p.name for p in artifacts.iterdir()) == ["data"]  # no runs/


def test_ctrl_c_ends_with_the_resume_command_and_no_traceback(imbalanced, tmp_path):
    artifacts = tmp_path / "artifacts"
    (artifacts / "data").mkdir(parents=True)
    shutil.copy(imbalanced / "data" / "split.json", artifacts / "data" / "split.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    command = [*INVOKE, "train", *TRAIN_FLAGS, "--head-epochs", "20", "--run-id", "sigint"]
    process = subprocess.Popen(
        [*command, "--artifacts-dir", str(artifacts)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        assert process.stdout is not None
        for line in process.stdout:
            if "phase 1 (head) epoch 1/20" in line:
                break
            assert time.monotonic() < deadline, "training did not reach its first epoch"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: training interrupted; resume with `invoke train --resume --run-id sigint`"
    )
    run = artifacts / "runs" / "sigint"
    assert (run / "config.json").is_file() and (run / "history.json").is_file()
    assert [p.name for p in (artifacts / "runs").iterdir()] == ["sigint"]
