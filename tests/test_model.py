import dataclasses

import pytest

from contracts.errors import TrainingError
from workloads.training.keras_compat import import_tf_and_keras, keras_version
from workloads.training.model import (
    BACKBONES,
    build_model,
    freeze_for_head_training,
    resolve_weights,
    unfreeze_top,
)

tf, keras = import_tf_and_keras()


def test_keras_is_keras_2():
    assert keras_version(keras).startswith("2.")


@pytest.fixture(scope="module")
def small():
    return build_model(keras, backbone="mobilenet_v3_small", image_size=64, num_classes=21, weights="none")


def test_model_contract_names_and_shapes(small):
    assert small.model.input.name.startswith("image")
    assert small.model.input.shape.as_list() == [None, 64, 64, 3]
    assert small.model.output.shape.as_list() == [None, 21]
    assert small.model.layers[-1].name == "probabilities"
    assert small.model.layers[-1].dtype == "float32"
    assert not small.pretrained


def test_random_init_keeps_backbone_trainable(small):
    freeze_for_head_training(small)
    assert small.backbone.trainable
    assert unfreeze_top(keras, small, 0.3) == len(small.backbone.layers)


def test_pretrained_phases_freeze_then_unfreeze_top_without_batchnorm(small):
    pretrained = dataclasses.replace(small, pretrained=True)
    freeze_for_head_training(pretrained)
    assert not pretrained.backbone.trainable
    trainable = unfreeze_top(keras, pretrained, 0.3)
    layers = pretrained.backbone.layers
    cut = round(len(layers) * 0.7)
    assert 0 < trainable <= len(layers) - cut
    assert not any(layer.trainable for layer in layers[:cut])
    assert not any(layer.trainable for layer in layers if isinstance(layer, keras.layers.BatchNormalization))
    assert any(layer.trainable for layer in layers[cut:])


def test_resnet_gets_caffe_preprocessing_in_graph():
    built = build_model(keras, backbone="resnet50", image_size=32, num_classes=21, weights="none")
    assert any(layer.name == "caffe_preprocess" for layer in built.model.layers)


def test_unknown_backbone_and_unreachable_weights_are_clear_errors(tmp_path):
    with pytest.raises(TrainingError, match="unknown backbone 'vgg16'"):
        build_model(keras, backbone="vgg16", image_size=64, num_classes=21, weights="none")
    with pytest.raises(TrainingError, match="could not build mobilenet_v3_small"):
        build_model(
            keras,
            backbone="mobilenet_v3_small",
            image_size=64,
            num_classes=21,
            weights=str(tmp_path / "x.h5"),
        )


def test_weights_option_mapping():
    assert resolve_weights("none") is None and resolve_weights("None") is None
    assert resolve_weights("imagenet") == "imagenet"
    assert set(BACKBONES) >= {"mobilenet_v3_large", "efficientnet_v2_b0", "resnet50"}
