"""One import path for Keras 2 on every platform we train on.

Gaudi's last TensorFlow release (SynapseAI 1.14) ships TF 2.15, where ``tf.keras`` is Keras 2.
From TF 2.16 ``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` and Keras 2 lives in the
``tf_keras`` package. The training code is written against the Keras 2 API and gets it here.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from types import ModuleType

from contracts.errors import TrainingError


def import_tf_and_keras() -> tuple[ModuleType, ModuleType]:
    """Return ``(tensorflow, keras)`` where ``keras`` is the Keras 2 API of this TensorFlow."""
    has_tf_keras = importlib.util.find_spec("tf_keras") is not None
    if has_tf_keras:
        # Before TensorFlow is imported, so that tf.keras also resolves to Keras 2. Not set
        # without tf_keras: TF 2.15 would then fail to import tf.keras at all.
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if has_tf_keras:
        import tf_keras as keras
    else:
        keras = tf.keras
    version = keras_version(keras)
    if not version.startswith("2."):
        raise TrainingError(
            f"TensorFlow {tf.__version__} gives Keras {version or '?'}, but training needs Keras 2: "
            f"pip install tf-keras=={tf.__version__.rsplit('.', 1)[0]}.*"
        )
    return tf, keras


def keras_version(keras: ModuleType) -> str:
    """Keras's version; TF 2.15's ``tf.keras`` API module has no ``__version__`` of its own."""
    version = getattr(keras, "__version__", "")
    if version:
        return version
    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return ""
