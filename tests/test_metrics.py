import json

import numpy as np
import pytest

from workloads.classes import CLASS_CODES
from workloads.metrics import classification_metrics, confusion_matrix


def test_hand_computed_figures_with_a_class_absent_everywhere():
    # Classes A, B, C present; D never appears in y_true nor y_pred.
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, ["A", "B", "C", "D"])

    assert m["n_samples"] == 6
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Recall A 2/3, B 1/2, C 1; D has no support and is left out of the mean.
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1 A 0.8, B 0.5, C 2/3; D is in neither y_true nor y_pred.
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["per_class"]["A"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["B"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["C"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_class"]["D"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_class_only_predicted_counts_for_macro_f1_but_not_balanced_accuracy():
    y_true = [0, 0, 1]
    y_pred = [0, 2, 1]
    m = classification_metrics(y_true, y_pred, ["A", "B", "C"])

    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["per_class"]["C"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_perfect_predictions_over_all_21_classes_are_json_serializable():
    labels = np.arange(len(CLASS_CODES)).repeat(2)
    m = classification_metrics(labels, labels, CLASS_CODES)

    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert list(m["per_class"]) == list(CLASS_CODES)
    assert np.array_equal(np.diag(m["confusion_matrix"]), np.full(21, 2))
    assert json.loads(json.dumps(m)) == m


def test_confusion_matrix_rows_are_truth_columns_predictions():
    matrix = confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2)
    assert matrix.tolist() == [[0, 1], [1, 1]]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1], [0], "2 labels but y_pred has 1"),
        ([], [], "no samples"),
        ([0, 3], [0, 1], "y_true has labels outside 0..2"),
        ([0, 1], [-1, 1], "y_pred has labels outside 0..2"),
    ],
)
def test_invalid_inputs_are_rejected(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, ["A", "B", "C"])
