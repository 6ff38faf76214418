"""Checks before a deployment (moto where it can, stand-ins for DL1 and quotas), and error lines."""

from __future__ import annotations

import hashlib
import json
import os

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from moto_aws import REGION, Dl1Ec2, DlQuota, moto_session  # noqa: F401 (fixture)

from contracts.errors import DeployError
from workloads.deploy import aws_preflight as preflight
from workloads.deploy.aws_partition import Partition, partition_of

SSO_ROLE = "AWSReservedSSO_AdministratorAccess_1f9ff11932198c00"


class Raising:
    def __init__(self, exc):
        self.exc = exc

    def __getattr__(self, _name):
        def call(**_kwargs):
            raise self.exc

        return call


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "Operation")


def _trust() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": []})


def _assume(moto_session, role_arn: str, session_name: str) -> preflight.Identity:  # noqa: F811
    """Sign in as ``role_arn`` on the moto server, as `aws sso login` or `assume-role` would."""
    credentials = moto_session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)[
        "Credentials"
    ]
    sts = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    ).client("sts", endpoint_url=moto_session.url)
    return preflight.caller_identity(sts)


def test_an_sso_session_is_an_access_entry_for_its_role_with_the_full_path(moto_session):  # noqa: F811
    iam = moto_session.client("iam")
    role = iam.create_role(
        RoleName=SSO_ROLE, Path="/aws-reserved/sso.amazonaws.com/", AssumeRolePolicyDocument=_trust()
    )
    identity = _assume(moto_session, role["Role"]["Arn"], "alice@example.org")
    # STS drops the path from the session's ARN; EKS calls that an invalid principal.
    assert identity.arn == f"arn:aws:sts::123456789012:assumed-role/{SSO_ROLE}/alice@example.org"
    assert preflight.access_entry_principal(identity, iam) == (
        f"arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/{SSO_ROLE}"
    )


def test_roles_keep_their_path_and_users_are_taken_as_they_are(moto_session):  # noqa: F811
    iam = moto_session.client("iam")
    role = iam.create_role(RoleName="Deployer", Path="/ci/", AssumeRolePolicyDocument=_trust())
    identity = _assume(moto_session, role["Role"]["Arn"], "pipeline")
    assert preflight.access_entry_principal(identity, iam) == "arn:aws:iam::123456789012:role/ci/Deployer"
    iam.create_user(UserName="bob", Path="/engineers/")
    key = iam.create_access_key(UserName="bob")["AccessKey"]
    sts = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    ).client("sts", endpoint_url=moto_session.url)
    user = preflight.caller_identity(sts)
    assert user.role_name is None and preflight.access_entry_principal(user, iam) == user.arn
    assert user.arn == "arn:aws:iam::123456789012:user/engineers/bob"


def test_without_iam_read_the_known_sso_path_is_assumed_and_said(moto_session):  # noqa: F811
    warnings: list[str] = []
    sso = preflight.Identity("123456789012", f"arn:aws-cn:sts::123456789012:assumed-role/{SSO_ROLE}/bob")
    denied = Raising(_client_error("AccessDenied"))
    assert preflight.access_entry_principal(sso, denied, warn=warnings.append) == (
        f"arn:aws-cn:iam::123456789012:role/aws-reserved/sso.amazonaws.com/{SSO_ROLE}"
    )
    plain = preflight.Identity("123456789012", "arn:aws:sts::123456789012:assumed-role/Ops/carol")
    assert preflight.access_entry_principal(plain, denied, warn=warnings.append) == (
        "arn:aws:iam::123456789012:role/Ops"
    )
    assert len(warnings) == 2 and all("set aws.cluster_admin_arns" in w for w in warnings)
    federated = preflight.Identity("123456789012", "arn:aws:sts::123456789012:federated-user/dave")
    with pytest.raises(
        DeployError, match=r"cannot be given an EKS access entry: set aws\.cluster_admin_arns"
    ):
        preflight.access_entry_principal(federated, denied)


@pytest.mark.parametrize("exc", [NoCredentialsError(), _client_error("ExpiredToken")])
def test_no_or_expired_credentials_are_one_line(exc):
    with pytest.raises(DeployError, match=r"^no usable AWS credentials: set AWS_PROFILE") as info:
        preflight.caller_identity(Raising(exc))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "exc",
    [
        SSOTokenLoadError(error_msg="Token for corp does not exist"),
        UnauthorizedSSOTokenError(),
        TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed"),
    ],
)
def test_a_missing_or_expired_sso_login_says_how_to_log_in(exc):
    with pytest.raises(DeployError) as info:
        preflight.caller_identity(Raising(exc), profile="research")
    assert str(info.value).startswith("the AWS SSO session has expired or was never started (")
    assert str(info.value).endswith("): run `aws sso login --profile research`")


@pytest.fixture
def aws_home(tmp_path, monkeypatch, moto_session):  # noqa: F811
    """A user with no AWS set-up but what the test writes: HOME, config and credentials files are
    temporary, instance metadata is off, and every endpoint is the moto server (loopback)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_session.url)
    return tmp_path


SSO_CONFIG = """
[profile research]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = AdministratorAccess
region = us-west-2

[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = us-west-2
sso_registration_scopes = sso:account:access
"""


def test_an_unknown_profile_is_one_line(aws_home, monkeypatch):
    (aws_home / "config").write_text(SSO_CONFIG)
    monkeypatch.setenv("AWS_PROFILE", "reserch")
    with pytest.raises(
        DeployError, match=r"^AWS profile 'reserch' is not in ~/\.aws/config: check AWS_PROFILE"
    ):
        preflight.session_for(REGION)


def test_no_credentials_at_all_is_one_line(aws_home):
    session = preflight.session_for(REGION)
    with pytest.raises(DeployError, match=r"^no usable AWS credentials"):
        preflight.caller_identity(session.client("sts"), profile=session.profile_name)


@pytest.mark.parametrize("cached", [False, True])
def test_a_never_started_or_expired_sso_session_says_how_to_log_in(aws_home, monkeypatch, cached):
    (aws_home / "config").write_text(SSO_CONFIG)
    monkeypatch.setenv("AWS_PROFILE", "research")
    if cached:  # what `aws sso login` left an hour ago, without a refresh token
        cache = aws_home / ".aws" / "sso" / "cache"
        cache.mkdir(parents=True)
        (cache / f"{hashlib.sha1(b'corp').hexdigest()}.json").write_text(
            json.dumps(
                {
                    "startUrl": "https://example.awsapps.com/start",
                    "region": "us-west-2",
                    "accessToken": "expired",
                    "expiresAt": "2020-01-01T00:00:00Z",
                }
            )
        )
    session = preflight.session_for(REGION)
    with pytest.raises(DeployError) as info:
        preflight.caller_identity(session.client("sts"), profile=session.profile_name)
    assert str(info.value).endswith("run `aws sso login --profile research`")


def test_regions_are_known_offline_with_their_partition():
    assert partition_of("us-west-2") == Partition("aws", "amazonaws.com")
    assert partition_of("cn-northwest-1") == Partition("aws-cn", "amazonaws.com.cn")
    assert partition_of("us-gov-west-1").name == "aws-us-gov"
    with pytest.raises(
        DeployError, match=r"^aws\.region 'us-east-9' is not an AWS region \(did you mean us-east-\d\?\)"
    ):
        partition_of("us-east-9")


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
        (
            "bmtest-training failed: ValidationError: Parameters: [HabanaAmiId] must have values",
            "a stack parameter has no value (HabanaAmiId or EndpointPublicCidrs)",
        ),
        ("something else entirely\n  the last line", "cdk deploy failed: the last line"),
    ],
)
def test_cdk_failures_become_one_line(output, expected):
    line = preflight.explain_cdk_failure(output, action="deploy")
    assert line.startswith(expected) and "\n" not in line
