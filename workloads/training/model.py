"""Pure model builders: a Keras application backbone plus a 21-way softmax head.

The model's input is an RGB float image in 0..255 (named ``image``); each backbone's own
normalisation is a layer of the graph, so serving needs no preprocessing beyond resizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from contracts.errors import TrainingError

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SCRATCH_BATCHNORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class BackboneSpec:
    application: str  # attribute of keras.applications
    kwargs: tuple[tuple[str, Any], ...] = ()
    # True when the application normalises 0..255 input itself (include_preprocessing).
    self_preprocessing: bool = True


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v3_large": BackboneSpec("MobileNetV3Large", (("include_preprocessing", True),)),
    "mobilenet_v3_small": BackboneSpec("MobileNetV3Small", (("include_preprocessing", True),)),
    "efficientnet_v2_b0": BackboneSpec("EfficientNetV2B0", (("include_preprocessing", True),)),
    "resnet50": BackboneSpec("ResNet50", (), self_preprocessing=False),
}


@dataclass(frozen=True)
class BuiltModel:
    model: Any  # keras.Model: image -> probabilities
    backbone: Any  # keras.Model: the feature extractor, for freezing/unfreezing
    pretrained: bool


def resolve_weights(weights: str) -> str | None:
    """Map the ``--weights`` option to the Keras ``weights`` argument."""
    return None if weights.lower() == "none" else weights


def build_model(
    keras: ModuleType,
    *,
    backbone: str,
    image_size: int,
    num_classes: int,
    weights: str,
    dropout: float = 0.2,
) -> BuiltModel:
    spec = BACKBONES.get(backbone)
    if spec is None:
        raise TrainingError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    keras_weights = resolve_weights(weights)
    factory = getattr(keras.applications, spec.application)
    try:
        feature_extractor = factory(
            input_shape=(image_size, image_size, 3),
            include_top=False,
            weights=keras_weights,
            pooling="avg",
            **dict(spec.kwargs),
        )
    except Exception as exc:  # network failures surface as several exception types
        if keras_weights == "imagenet":
            raise TrainingError(
                f"could not load ImageNet weights for {backbone} ({type(exc).__name__}: {exc}); "
                "pass --weights none to train offline from random initialisation, "
                "or --weights PATH to a downloaded no-top weights file"
            ) from None
        raise TrainingError(f"could not build {backbone} with weights {weights!r}: {exc}") from None

    pretrained = keras_weights is not None
    if not pretrained:
        # Applications ship BatchNorm momentum 0.99-0.999, tuned for long ImageNet runs: from
        # scratch over a few hundred steps the moving statistics would still be near their
        # initial values and inference-mode predictions near chance.
        for layer in feature_extractor.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = SCRATCH_BATCHNORM_MOMENTUM

    image = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name=INPUT_NAME)
    x = image
    if not spec.self_preprocessing:
        x = keras.layers.Lambda(keras.applications.resnet50.preprocess_input, name="caffe_preprocess")(x)
    # Pretrained BatchNorm statistics stay in inference mode even when layers are unfrozen
    # (Keras transfer-learning guide); from scratch they must learn.
    x = feature_extractor(x, training=False if pretrained else None)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 output even under a mixed-precision policy, for a numerically stable softmax.
    probabilities = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_NAME)(
        x
    )
    model = keras.Model(image, probabilities, name=f"bone_marrow_{backbone}")
    return BuiltModel(model=model, backbone=feature_extractor, pretrained=pretrained)


def freeze_for_head_training(built: BuiltModel) -> None:
    """Phase 1: train only the head on top of a pretrained backbone."""
    built.backbone.trainable = not built.pretrained


def unfreeze_top(keras: ModuleType, built: BuiltModel, fraction: float) -> int:
    """Phase 2: unfreeze the top ``fraction`` of backbone layers, BatchNorm excluded.

    Returns the number of trainable backbone layers. From random initialisation the whole
    backbone stays trainable: frozen random features carry no information.
    """
    backbone = built.backbone
    backbone.trainable = True
    if not built.pretrained:
        return len(backbone.layers)
    cut = round(len(backbone.layers) * (1.0 - fraction))
    for index, layer in enumerate(backbone.layers):
        freeze = index < cut or isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = not freeze
    return sum(1 for layer in backbone.layers if layer.trainable)
