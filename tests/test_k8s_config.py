"""The ovms and images configuration sections: defaults and one-line errors."""

from __future__ import annotations

import pytest

from contracts.config import load_config
from contracts.errors import ConfigError


def test_defaults() -> None:
    config = load_config()
    assert config.ovms.tuning().performance_hint == "THROUGHPUT"
    assert load_config({"ovms": {"use": "realtime"}}).ovms.tuning().performance_hint == "LATENCY"
    assert config.images.dl1_cards == 8 and config.images.tag != "latest"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ovms": {"image": "openvino/model_server:latest"}}, "ovms.image must be an image pinned"),
        ({"ovms": {"image": "openvino/model_server"}}, "ovms.image must be an image pinned"),
        ({"ovms": {"cpus": 0}}, "ovms.cpus must be > 0"),
        ({"ovms": {"cpus": 1.5}}, "ovms.cpus must be an integer"),
        ({"ovms": {"grpc_port": 8000}}, "ovms.grpc_port and ovms.rest_port must differ"),
        ({"ovms": {"rest_port": 80}}, "ovms.rest_port must be an unprivileged port"),
        ({"ovms": {"log_level": "DEBUG"}}, "ovms.log_level must be one of INFO, WARNING, ERROR"),
        ({"ovms": {"hpa_max_replicas": 1, "replicas": 2}}, "ovms.hpa_max_replicas must be 0"),
        ({"ovms": {"batch": {"performance_hint": "FAST"}}}, "ovms.batch.performance_hint must be one of"),
        ({"ovms": {"eksa_model_delivery": "nfs"}}, "ovms.eksa_model_delivery must be one of"),
        (
            {"ovms": {"cpus": 2, "batch": {"performance_hint": "THROUGHPUT", "inference_threads": 3}}},
            "ovms.batch.inference_threads must be <= ovms.cpus (2), got 3",
        ),
        (
            {"ovms": {"realtime": {"performance_hint": "LATENCY", "num_streams": 2}}},
            "ovms.realtime.num_streams must be <= ovms.cpus (1), got 2",
        ),
        (
            {"kubernetes": {"monitoring_namespace": "Mon"}},
            "kubernetes.monitoring_namespace must be a DNS label",
        ),
        (
            {"kubernetes": {"node_allocatable": {"c5.large": {"cpu_millicores": -1}}}},
            "kubernetes.node_allocatable.c5.large.cpu_millicores must be >= 0",
        ),
        (
            {"kubernetes": {"eks_system_pods": {"kube-proxy": {"memory_mib": "lots"}}}},
            "kubernetes.eks_system_pods.kube-proxy.memory_mib must be an integer",
        ),
        ({"vsphere": {"node_reserved": {"memory_mib": 8192}}}, "vsphere.node_reserved must leave room"),
        ({"images": {"tag": "latest"}}, "images.tag must be a Docker tag other than 'latest'"),
        ({"images": {"registry": "https://r.example.com"}}, "images.registry must be host"),
        ({"images": {"dl1_cards": 9}}, "images.dl1_cards must be 1-8"),
        ({"images": {"dl1_instance_id": "dl1"}}, "images.dl1_instance_id must look like"),
        ({"images": {"dl1_bucket": "Bad_Bucket"}}, "images.dl1_bucket must be an S3 bucket name"),
        ({"images": {"cpu_base": "python"}}, "images.cpu_base must be an image pinned"),
    ],
)
def test_bad_values_are_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pinned_ovms_release_matches_the_openvino_that_writes_the_ir():
    from importlib import metadata

    from contracts.config import ToolkitConfig

    tag = ToolkitConfig().ovms.image.rsplit(":", 1)[1]
    assert tag == metadata.version("openvino"), "bump ovms.image with the openvino pin (IR compatibility)"
