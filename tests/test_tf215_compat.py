"""The same training code on Gaudi's TensorFlow: TF 2.15 with Keras 2 as tf.keras, no tf_keras.

`make test` builds .venv-tf215 from requirements-tf215.txt; this test trains there (in a
subprocess) and serves the exported SavedModel with this process's TF 2.21.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TF215_PYTHON = ROOT / ".venv-tf215" / "bin" / "python"


def test_training_runs_on_tf_2_15_and_its_export_serves_on_this_tf(synthetic_split):
    assert TF215_PYTHON.exists(), f"{TF215_PYTHON} missing: `make test` builds it from requirements-tf215.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_USE_LEGACY_KERAS", None)
    probe = subprocess.run(
        [
            str(TF215_PYTHON),
            "-c",
            "import tensorflow as tf, importlib.util as u; print(tf.__version__, u.find_spec('tf_keras'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert probe.stdout.split()[:2] == ["2.15.1", "None"]
    run = subprocess.run(
        [
            str(TF215_PYTHON),
            "-m",
            "workloads.training.train",
            "--artifacts-dir",
            str(synthetic_split),
            "--runs-dir",
            str(synthetic_split / "runs-tf215"),
            "--run-id",
            "gaudi-stack",
            "--backbone",
            "mobilenet_v3_small",
            "--weights",
            "none",
            "--image-size",
            "64",
            "--batch-size",
            "16",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "TensorFlow 2.15.1 · Keras 2.15" in run.stdout
    run_dir = synthetic_split / "runs-tf215" / "gaudi-stack"
    card = json.loads((run_dir / "model_card.json").read_text())
    assert card["framework"]["tensorflow"] == "2.15.1"

    from workloads.training.keras_compat import import_tf_and_keras

    tf, _ = import_tf_and_keras()
    serve = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"]
    probabilities = serve(image=tf.zeros([2, 64, 64, 3]))["probabilities"].numpy()
    assert probabilities.shape == (2, 21)


# Run in .venv-tf215: the training pipeline's pixels for the given files, saved as one array.
_DATASET_PIXELS = """
import sys
import numpy as np
import tensorflow as tf
from workloads.training.dataset import build_dataset
out, size, *paths = sys.argv[1:]
ds = build_dataset(tf, paths, list(range(len(paths))), image_size=int(size), batch_size=8, training=False)
np.save(out, np.concatenate([images.numpy() for images, _ in ds]))
"""


def test_training_pixels_on_tf_2_15_match_this_environment_s_decode(synthetic_split, tmp_path):
    """Gaudi's image (TF 2.15, its Pillow) trains on the pixels this environment serves and scores."""
    import numpy as np

    from workloads.data.manifest import SplitManifest
    from workloads.images import load_batch

    entries = SplitManifest.load(synthetic_split / "data" / "split.json").entries("test")[:24]
    paths = [str(e.path) for e in entries]
    out = tmp_path / "pixels.npy"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run(
        [str(TF215_PYTHON), "-c", _DATASET_PIXELS, str(out), "64", *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(np.load(out), load_batch(paths, 64))
