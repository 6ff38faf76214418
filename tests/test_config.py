import dataclasses

import pytest

from contracts.config import ToolkitConfig, defaults_mapping, load_config, replace
from contracts.errors import ConfigError


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
        ({"serving": {"grpc_port": 8000}}, "serving.http_port and serving.grpc_port must differ"),
        ({"serving": {"http_port": 70000}}, "serving.http_port must be a TCP port"),
        (
            {"serving": {"performance_hint": "FAST"}},
            "serving.performance_hint must be one of THROUGHPUT, LATENCY",
        ),
        ({"bench": {"repetitions": 2}}, "bench.repetitions must be at least 3"),
        ({"bench": {"protocol": "json"}}, "bench.protocol must be one of rest, grpc"),
        ({"bench": {"usd_per_hour": {"c5": -1}}}, "bench.usd_per_hour.c5 must be >= 0"),
        ({"bench": {"usd_per_hour": {"c5": "cheap"}}}, "bench.usd_per_hour.c5 must be a number"),
    ],
)
def test_invalid_values_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as err:
        load_config(mapping)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cost_table_is_a_typed_mapping():
    config = load_config({"bench": {"usd_per_hour": {"c5": "0.085", "c6i": 0.085}}})
    assert config.bench.usd_per_hour == {"c5": 0.085, "c6i": 0.085}


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


def test_node_pool_labels_are_defined_once_for_every_cluster():
    config = ToolkitConfig()
    labels = {
        name: config.kubernetes.pool_labels(name, pool)
        for name, pool in {**config.aws.pools, **config.vsphere.pools}.items()
    }
    assert labels["c5"] == {"bone-marrow.ml/pool": "c5", "bone-marrow.ml/cpu-generation": "cascadelake"}
    assert labels["c6i"]["bone-marrow.ml/cpu-generation"] == "icelake"
    assert labels["icelake"]["bone-marrow.ml/cpu-generation"] == "icelake"


def test_node_pool_overrides_are_typed_and_complete():
    pools = {"c5": {"instance_type": "c5.xlarge", "cpu_generation": "cascadelake", "desired_size": "2"}}
    config = load_config({"aws": {"pools": pools}})
    assert config.aws.pools["c5"].desired_size == 2
    assert set(config.aws.pools) == {"c5"}
    with pytest.raises(ConfigError, match=r"missing configuration key aws\.pools\.c5\.instance_type"):
        load_config({"aws": {"pools": {"c5": {"cpu_generation": "cascadelake"}}}})
    with pytest.raises(ConfigError, match=r"aws\.pools\.c5 sizes must satisfy min <= desired <= max"):
        load_config({"aws": {"pools": {"c5": {**pools["c5"], "min_size": 3}}}})
    with pytest.raises(ConfigError, match=r"kubernetes\.namespace must be a DNS label"):
        load_config({"kubernetes": {"namespace": "Bone_Marrow"}})
