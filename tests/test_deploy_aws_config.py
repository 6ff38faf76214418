"""The aws config fields of the AWS target: defaults load, bad values are one line each."""

from __future__ import annotations

import pytest

from contracts.config import load_config
from contracts.errors import ConfigError
from workloads.config_environment import check_environment, environment_keys


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
        # Two halves of the internet are the internet.
        (
            {"endpoint_public_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
            "aws.endpoint_public_cidrs: '0.0.0.0/1' is not a restricted IPv4 CIDR: it opens the Kubernetes "
            "API to 2,147,483,648 addresses (the widest accepted is a /16)",
        ),
        (
            {"endpoint_public_cidrs": ["52.0.0.0/15"]},
            "aws.endpoint_public_cidrs: '52.0.0.0/15' is not a restricted",
        ),
        (
            {"endpoint_public_cidrs": [f"52.{i}.0.0/16" for i in range(17)]},
            "aws.endpoint_public_cidrs together cover 1,114,112 addresses (at most 1,048,576)",
        ),
        (
            {"endpoint_public_cidrs": ["10.1.0.0/16"]},
            "aws.endpoint_public_cidrs: '10.1.0.0/16' is not a public",
        ),
        (
            {"endpoint_public_cidrs": ["203.0.113.1/24"]},
            "aws.endpoint_public_cidrs: '203.0.113.1/24' is not a",
        ),
        (
            {"region": "useast1", "availability_zones": ["useast1a", "useast1b"]},
            "aws.region must be an AWS region name like us-east-1, got 'useast1'",
        ),
        ({"habana_ami_ids": {"useast1": "ami-0123456789abcdef0"}}, "aws.habana_ami_ids: 'useast1' is not"),
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


def test_real_region_names_and_narrow_public_ranges_are_accepted():
    for region in ("us-east-1", "us-gov-west-1", "cn-northwest-1", "ap-southeast-5", "eusc-de-east-1"):
        load_config({"aws": {"region": region, "availability_zones": [f"{region}a", f"{region}b"]}})
    cidrs = [f"52.{i}.0.0/16" for i in range(16)] + ["52.1.2.0/24"]  # overlaps count once
    assert len(load_config({"aws": {"endpoint_public_cidrs": cidrs}}).aws.endpoint_public_cidrs) == 17
    assert load_config({"aws": {"deploy_from_vpc": "true"}}).aws.deploy_from_vpc is True


TREE = {
    "artifacts_dir": "artifacts",
    "aws": {"region": "us-east-1", "endpoint_public_cidrs": ""},
    "train": {},
}


def test_environment_variables_map_to_the_keys_invoke_reads():
    assert environment_keys(TREE) == {
        "INVOKE_BMC_ARTIFACTS_DIR": "artifacts_dir",
        "INVOKE_BMC_AWS_REGION": "aws.region",
        "INVOKE_BMC_AWS_ENDPOINT_PUBLIC_CIDRS": "aws.endpoint_public_cidrs",
    }
    check_environment({"INVOKE_BMC_AWS_REGION": "eu-west-1", "INVOKE_RUN_ECHO": "1", "HOME": "/"}, TREE)


def test_an_unknown_invoke_bmc_variable_is_refused_with_the_nearest_key():
    with pytest.raises(ConfigError) as info:
        check_environment({"INVOKE_BMC_AWS_REGON": "eu-west-1", "INVOKE_BMC_AWS_FOO": "1"}, TREE)
    assert str(info.value).startswith(
        "environment variable INVOKE_BMC_AWS_FOO names no configuration key (`invoke config` lists them; "
        "1 more: INVOKE_BMC_AWS_REGON)"
    )
    with pytest.raises(
        ConfigError,
        match=r"INVOKE_BMC_AWS_REGON names no .* \(did you mean INVOKE_BMC_AWS_REGION, key aws\.region\?\)",
    ):
        check_environment({"INVOKE_BMC_AWS_REGON": "eu-west-1"}, TREE)
