import dataclasses

import pytest

from workloads.config import ToolkitConfig, defaults_mapping, load_config, replace
from workloads.errors import ConfigError


def test_defaults_round_trip_through_plain_data():
    assert load_config(defaults_mapping()) == ToolkitConfig()


def test_env_style_strings_are_coerced():
    config = load_config(
        {
            "train": {"batch_size": "64", "augment": "false", "head_learning_rate": "0.01"},
            "optimize": {"precisions": "fp32,int8"},
        }
    )
    assert config.train.batch_size == 64
    assert config.train.augment is False
    assert config.train.head_learning_rate == 0.01
    assert config.optimize.precisions == ("fp32", "int8")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"train": {"batch_size": "abc"}}, "train.batch_size must be an integer, got 'abc'"),
        ({"train": {"batch_size": 0}}, "train.batch_size must be > 0, got 0"),
        ({"train": {"backbone": "vgg"}}, "train.backbone must be one of"),
        ({"train": {"head_epochs": 0, "finetune_epochs": 0}}, "must be at least 1"),
        ({"train": {"finetune_fraction": 1.5}}, "train.finetune_fraction must be in (0, 1]"),
        ({"data": {"val_fraction": 0.6}}, "data.val_fraction must be between 0 and 0.5"),
        ({"data": {"source": "local"}}, "data.path is required"),
        ({"optimize": {"precisions": ["int8"]}}, "must include 'fp32'"),
        ({"optimize": {"model_name": "bad name"}}, "optimize.model_name must be"),
        ({"optimize": {"int8_max_accuracy_drop": -1}}, "int8_max_accuracy_drop must be >= 0"),
        ({"trian": {}}, "unknown configuration key trian"),
        ({"train": {"epochs": 3}}, "unknown configuration key train.epochs"),
        ({"train": {"augment": "maybe"}}, "train.augment must be true or false"),
        ({"train": 5}, "train must be a mapping"),
    ],
)
def test_invalid_values_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as err:
        load_config(mapping)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_replace_ignores_none_and_validates():
    config = ToolkitConfig()
    assert replace(config, "train", batch_size=None) is config
    assert replace(config, "train", batch_size=8).train.batch_size == 8
    with pytest.raises(ConfigError):
        replace(config, "train", image_size=8)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ToolkitConfig().train.batch_size = 3  # type: ignore[misc]


def test_artifact_paths_follow_the_root():
    paths = load_config({"artifacts_dir": "/x"}).paths
    assert str(paths.split_manifest) == "/x/data/split.json"
    assert str(paths.model_repository) == "/x/models"
    assert str(paths.runs) == "/x/runs"
