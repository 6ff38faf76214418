"""The training loss: sparse categorical cross-entropy, with ``train.label_smoothing`` applied.

Keras 2 (``tf_keras`` on TF >= 2.16, ``tf.keras`` on Gaudi's TF 2.15) has no ``label_smoothing``
on ``SparseCategoricalCrossentropy``; only the categorical (one-hot) loss has it. The datasets
keep integer labels (the class-weight map and the ``accuracy`` metric work on them), so the
smoothed loss one-hot encodes the labels itself and calls ``categorical_crossentropy`` with
``label_smoothing``: the target of the true class becomes ``1 - s + s / K`` and every other
class ``s / K`` (K = 21 outputs, absent classes included).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def training_loss(tf: ModuleType, keras: ModuleType, *, label_smoothing: float, num_classes: int) -> Any:
    """The loss to compile with: plain sparse cross-entropy for 0, a smoothed one otherwise."""
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy()

    class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):  # type: ignore[name-defined]
        """Cross-entropy on integer labels against label-smoothed one-hot targets."""

        def __init__(
            self,
            label_smoothing: float = label_smoothing,
            num_classes: int = num_classes,
            name: str = "smoothed_sparse_categorical_crossentropy",
            **kwargs: Any,
        ) -> None:
            super().__init__(name=name, **kwargs)
            self.label_smoothing = float(label_smoothing)
            self.num_classes = int(num_classes)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
            targets = tf.one_hot(labels, self.num_classes, dtype=y_pred.dtype)
            return keras.losses.categorical_crossentropy(
                targets, y_pred, label_smoothing=self.label_smoothing
            )

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            return {**config, "label_smoothing": self.label_smoothing, "num_classes": self.num_classes}

    return SmoothedSparseCategoricalCrossentropy()
