"""The aws config fields of the AWS target: defaults load, bad values are one line each."""

from __future__ import annotations

import pytest

from contracts.config import load_config
from contracts.errors import ConfigError


def test_defaults_load_and_private_endpoint_is_the_default():
    config = load_config({})
    assert config.aws.endpoint_public_cidrs == () and config.aws.habana_ami_ids == {}
    assert config.kubernetes.model_sync_service_account == "ovms-model-sync"


def test_environment_style_strings_are_parsed():
    config = load_config(
        {"aws": {"endpoint_public_cidrs": "203.0.113.0/24, 198.51.100.7/32", "dl1_volume_gib": "800"}}
    )
    assert config.aws.endpoint_public_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert config.aws.dl1_volume_gib == 800


@pytest.mark.parametrize(
    ("aws", "message"),
    [
        (
            {"availability_zones": ["us-east-1a", "us-west-2b"]},
            "aws.availability_zones: 'us-west-2b' is not a zone",
        ),
        ({"vpc_cidr": "10.0.0.1/16"}, "aws.vpc_cidr must be an IPv4 CIDR"),
        ({"nat_gateways": 3}, "aws.nat_gateways must be between 1 and the number of zones"),
        (
            {"endpoint_public_cidrs": ["0.0.0.0/0"]},
            "aws.endpoint_public_cidrs: '0.0.0.0/0' is not a restricted",
        ),
        ({"cluster_admin_arns": ["arn:aws:sts::123456789012:assumed-role/A/b"]}, "aws.cluster_admin_arns:"),
        ({"dl1_instance_type": "dl1"}, "aws.dl1_instance_type must look like dl1.24xlarge"),
        ({"habana_ami_ids": {"us-east-1": "ami-xyz"}}, "aws.habana_ami_ids.us-east-1 must be an AMI id"),
        ({"dl1_volume_gib": 4}, "aws.dl1_volume_gib must be between 8 and 16384"),
        ({"dl1_idle_minutes": 2000}, "aws.dl1_idle_minutes must be between 5 and 1440"),
        ({"dl1_idle_cpu_percent": 0}, "aws.dl1_idle_cpu_percent must be between 0 and 100"),
        ({"budget_monthly_usd": 0}, "aws.budget_monthly_usd must be > 0"),
        ({"budget_email": "nobody"}, "aws.budget_email is not an e-mail address"),
        ({"log_retention_days": 2}, "aws.log_retention_days must be one of 1, 3, 5"),
    ],
)
def test_bad_values_are_one_line(aws, message):
    with pytest.raises(ConfigError) as info:
        load_config({"aws": aws})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_model_sync_service_account_must_be_a_dns_label():
    with pytest.raises(ConfigError, match=r"^kubernetes\.model_sync_service_account must be a DNS label"):
        load_config({"kubernetes": {"model_sync_service_account": "Model_Sync"}})
