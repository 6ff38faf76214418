"""Classification figures computed with numpy, shared by training, optimization and reports.

Conventions (those of scikit-learn's defaults, so figures can be cross-checked):

- accuracy: fraction of correct predictions.
- balanced accuracy: mean recall over the classes present in ``y_true``.
- macro-F1: mean F1 over the classes present in ``y_true`` or ``y_pred``.
- a ratio whose denominator is zero (precision of a never-predicted class, recall of a class
  absent from ``y_true``) is 0.0; ``support`` tells such classes apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, class_codes: Sequence[str]
) -> dict[str, Any]:
    """Figures for integer labels that index ``class_codes``; the result is JSON-serializable.

    Keys: n_samples, accuracy, balanced_accuracy, macro_f1, per_class {code: {precision, recall,
    f1, support}} for every code, confusion_matrix (rows true, columns predicted, in
    ``class_codes`` order).
    """
    truth = np.asarray(y_true, dtype=np.int64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    num_classes = len(class_codes)
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has {truth.size} labels but y_pred has {pred.size}")
    if truth.size == 0:
        raise ValueError("no samples: metrics need at least one label")
    for name, labels in (("y_true", truth), ("y_pred", pred)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")

    matrix = confusion_matrix(truth, pred, num_classes)
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(true_positives, predicted)
    recall = _safe_divide(true_positives, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)

    in_truth = support > 0
    in_either = in_truth | (predicted > 0)
    return {
        "n_samples": int(truth.size),
        "accuracy": float(true_positives.sum() / truth.size),
        "balanced_accuracy": float(recall[in_truth].mean()),
        "macro_f1": float(f1[in_either].mean()),
        "per_class": {
            code: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, code in enumerate(class_codes)
        },
        "confusion_matrix": matrix.tolist(),
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
