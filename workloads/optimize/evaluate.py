"""Run every model variant over the same decoded images and score them.

A predictor maps an (N, S, S, 3) float32 RGB 0..255 batch to (N, C) probabilities. Images are
decoded once per batch (workloads.images, the serving contract) and fed to all variants, so
the figures differ only by the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.properties.hint as hints

from contracts.errors import OptimizationError
from workloads.images import load_batch
from workloads.metrics import classification_metrics
from workloads.optimize.convert import INPUT_NAME, OUTPUT_NAME
from workloads.optimize.selection import LabelledImage
from workloads.progress import Progress

Predictor = Callable[[np.ndarray], np.ndarray]
EVAL_BATCH_SIZE = 32


def tensorflow_predictor(saved_model_dir: Path) -> Predictor:
    """The SavedModel's ``serving_default`` signature: the reference every IR is compared with."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise OptimizationError(
            "TensorFlow is needed to evaluate the SavedModel reference: pip install -e '.[tf]'"
        ) from None
    loaded = tf.saved_model.load(str(saved_model_dir))
    serve = loaded.signatures.get("serving_default")
    if serve is None:
        raise OptimizationError(f"{saved_model_dir} has no 'serving_default' signature; re-export the model")
    inputs = serve.structured_input_signature[1]
    if INPUT_NAME not in inputs or OUTPUT_NAME not in serve.structured_outputs:
        raise OptimizationError(
            f"{saved_model_dir} serving_default maps {sorted(inputs)} → {sorted(serve.structured_outputs)}, "
            f"expected '{INPUT_NAME}' → '{OUTPUT_NAME}'"
        )

    def predict(batch: np.ndarray, _owner: Any = loaded) -> np.ndarray:
        # ``_owner`` keeps the loaded object alive: the signature's variables are freed with it.
        return serve(**{INPUT_NAME: tf.constant(batch, dtype=tf.float32)})[OUTPUT_NAME].numpy()

    return predict


def openvino_predictor(xml_path: Path, device: str = "CPU") -> Predictor:
    """An IR compiled for ``device``, executing in f32 where the IR is not quantized.

    CPUs with AMX/AVX512-BF16 would otherwise run FP32 IRs in bf16 by default, and the figures
    (and the TF parity check) would depend on the machine rather than on the IR.
    """
    compiled = ov.Core().compile_model(str(xml_path), device, {hints.inference_precision: ov.Type.f32})
    output = compiled.output(OUTPUT_NAME)

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(compiled({INPUT_NAME: batch})[output])

    return predict


def predict_labels(
    predictors: Mapping[str, Predictor],
    paths: Sequence[Path],
    image_size: int,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    progress: Progress,
) -> dict[str, np.ndarray]:
    """Top-1 class index per image for every predictor."""
    labels: dict[str, list[np.ndarray]] = {name: [] for name in predictors}
    total = len(paths)
    report_every = max(1, total // 10)
    next_report = report_every
    for start in range(0, total, batch_size):
        batch = load_batch(list(paths[start : start + batch_size]), image_size)
        for name, predict in predictors.items():
            probabilities = predict(batch)
            if probabilities.shape != (len(batch), probabilities.shape[-1]):
                raise OptimizationError(
                    f"{name} returned shape {probabilities.shape} for {len(batch)} images"
                )
            labels[name].append(np.argmax(probabilities, axis=1))
        done = min(start + batch_size, total)
        if done >= next_report or done == total:
            progress(f"evaluate: {done}/{total} test images through {', '.join(predictors)}")
            next_report = done + report_every
    return {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in labels.items()}


def evaluate_variants(
    predictors: Mapping[str, Predictor],
    entries: Sequence[LabelledImage],
    image_size: int,
    class_codes: Sequence[str],
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    progress: Progress,
) -> dict[str, dict[str, Any]]:
    """classification_metrics (workloads.metrics) of every predictor over ``entries``."""
    y_true = np.asarray([int(e.label) for e in entries], dtype=np.int64)
    predicted = predict_labels(
        predictors, [Path(e.path) for e in entries], image_size, batch_size=batch_size, progress=progress
    )
    return {name: classification_metrics(y_true, y_pred, class_codes) for name, y_pred in predicted.items()}
