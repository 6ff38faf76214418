"""Checks before a deployment (moto where it can, stand-ins for DL1 and quotas), and error lines."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from moto_aws import REGION, Dl1Ec2, DlQuota, moto_session  # noqa: F401 (fixture)

from contracts.errors import DeployError
from workloads.deploy import aws_preflight as preflight


class Raising:
    def __init__(self, exc):
        self.exc = exc

    def __getattr__(self, _name):
        def call(**_kwargs):
            raise self.exc

        return call


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "Operation")


def test_identity_from_sts_and_the_principal_behind_a_role_session(moto_session):  # noqa: F811
    identity = preflight.caller_identity(moto_session.client("sts"))
    assert identity.account == "123456789012"
    session = preflight.Identity(
        "123456789012", "arn:aws:sts::123456789012:assumed-role/Admin/alice@example.org"
    )
    assert session.principal_arn == "arn:aws:iam::123456789012:role/Admin"
    user = preflight.Identity("123456789012", "arn:aws:iam::123456789012:user/bob")
    assert user.principal_arn == user.arn


@pytest.mark.parametrize("exc", [NoCredentialsError(), _client_error("ExpiredToken")])
def test_no_or_expired_credentials_are_one_line(exc):
    with pytest.raises(DeployError, match=r"^no usable AWS credentials: set AWS_PROFILE") as info:
        preflight.caller_identity(Raising(exc))
    assert "\n" not in str(info.value)


def test_zones_must_exist_in_the_region(moto_session):  # noqa: F811
    ec2 = moto_session.client("ec2")
    preflight.check_region(ec2, region=REGION, zones=("us-west-2a", "us-west-2b"))
    with pytest.raises(
        DeployError, match=r"^zone\(s\) us-west-2z not available in us-west-2 \(available: .*"
    ):
        preflight.check_region(ec2, region=REGION, zones=("us-west-2a", "us-west-2z"))
    with pytest.raises(
        DeployError, match=r"^region eu-south-2 is not enabled for this account \(OptInRequired\)"
    ):
        preflight.check_region(Raising(_client_error("OptInRequired")), region="eu-south-2", zones=("x",))


def test_missing_cdk_bootstrap_says_how_to_bootstrap(moto_session):  # noqa: F811
    ssm = moto_session.client("ssm")
    with pytest.raises(DeployError) as info:
        preflight.check_bootstrap(ssm, account="123456789012", region=REGION)
    assert str(info.value) == (
        "account 123456789012 is not CDK-bootstrapped in us-west-2: run "
        "`npx cdk bootstrap aws://123456789012/us-west-2` once"
    )
    ssm.put_parameter(Name=preflight.BOOTSTRAP_PARAMETER, Value="30", Type="String")
    preflight.check_bootstrap(ssm, account="123456789012", region=REGION)


def test_dl1_must_be_offered_in_the_first_zone_and_fit_the_quota(moto_session):  # noqa: F811
    ec2 = Dl1Ec2(moto_session.client("ec2"), zones=("us-west-2b", "us-west-2c"))
    args = {"region": REGION, "instance_type": "dl1.24xlarge"}
    preflight.check_dl1(ec2, DlQuota(value=96), zone="us-west-2b", **args)
    with pytest.raises(
        DeployError, match=r"^dl1\.24xlarge is not offered in us-west-2a \(it is in us-west-2b, "
    ):
        preflight.check_dl1(ec2, DlQuota(value=96), zone="us-west-2a", **args)
    with pytest.raises(DeployError) as info:
        preflight.check_dl1(ec2, DlQuota(value=0), zone="us-west-2b", **args)
    assert str(info.value) == (
        "the 'Running On-Demand DL instances' quota in us-west-2 is 0 vCPUs but dl1.24xlarge needs 96: "
        "request an increase (Service Quotas, ec2 L-6E869C2A)"
    )
    with pytest.raises(
        DeployError, match=r"^dl1\.24xlarge is not offered in us-west-2: choose another aws.region"
    ):
        preflight.check_dl1(Dl1Ec2(ec2.real, zones=()), DlQuota(), zone="us-west-2b", **args)
    warnings = []
    preflight.check_dl1(
        ec2, Raising(_client_error("AccessDeniedException")), zone="us-west-2b", warn=warnings.append, **args
    )
    assert warnings == ["warning: cannot read the DL instance quota (AccessDeniedException); continuing"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Unable to resolve AWS account to use. It must be either configured", "no usable AWS credentials"),
        (
            "bmtest-network: SSM parameter /cdk-bootstrap/hnb659fds/version not found. Has the environment "
            "been bootstrapped? Please run 'cdk bootstrap'",
            "the account/region is not CDK-bootstrapped",
        ),
        (
            "Dl1Instance CREATE_FAILED You have requested more vCPU capacity than your current vCPU limit",
            "the DL1 instance exceeds the 'Running On-Demand DL instances' vCPU quota",
        ),
        ("Resource handler returned message: InsufficientInstanceCapacity", "AWS has no dl1 capacity"),
        (
            "Your requested instance type (dl1.24xlarge) is not supported in your requested Availability "
            "Zone (us-west-2a)",
            "the instance type is not offered in that zone",
        ),
        ("something else entirely\n  the last line", "cdk deploy failed: the last line"),
    ],
)
def test_cdk_failures_become_one_line(output, expected):
    line = preflight.explain_cdk_failure(output, action="deploy")
    assert line.startswith(expected) and "\n" not in line
