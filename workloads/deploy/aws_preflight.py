"""Checks before a deployment, each failing with one line that says what to do.

No credentials (an unknown profile, an SSO login that expired or never happened), a wrong region or
zones, a missing CDK bootstrap, and DL1 offering or quota problems are found here, in seconds,
instead of half-way through a CloudFormation deployment. The caller's access-entry principal
(a role with its full path) is worked out here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from contracts.errors import DeployError

BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
# Service Quotas: "Running On-Demand DL instances" (vCPUs), the quota dl1.* instances count against.
DL_QUOTA_CODE = "L-6E869C2A"
CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
}
NO_CREDENTIALS = (
    "no usable AWS credentials: set AWS_PROFILE (then `aws sso login`) or AWS_ACCESS_KEY_ID/SECRET"
)
# The roles IAM Identity Center creates for permission sets: AWSReservedSSO_<set>_<id>, under this
# path (an Identity Center instance outside us-east-1 may add its region). STS drops the path from
# a session's ARN, but an EKS access entry needs the role's full ARN ("invalid principal" otherwise).
SSO_ROLE_PREFIX = "AWSReservedSSO_"
SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
IAM_READ_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str  # as STS reports it (an assumed-role session for SSO and roles)

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1]

    @property
    def role_name(self) -> str | None:
        """The role behind an assumed-role session (SSO sessions included); None for IAM users."""
        match = re.fullmatch(r"arn:aws[-a-z]*:sts::\d{12}:assumed-role/([^/]+)/.+", self.arn)
        return match.group(1) if match else None


def session_for(region: str) -> Any:
    """A boto3 session for ``region``; an unknown AWS_PROFILE is one line, not a traceback."""
    import boto3

    try:
        return boto3.session.Session(region_name=region)
    except ProfileNotFound as exc:
        raise DeployError(
            f"AWS profile {exc.kwargs.get('profile')!r} is not in ~/.aws/config: check AWS_PROFILE "
            "(`aws configure list-profiles`) or set up SSO with `aws configure sso`"
        ) from None


def access_entry_principal(identity: Identity, iam: Any, *, warn: Callable[[str], None] = print) -> str:
    """The IAM principal ARN for the caller's EKS access entry: a session's role with its full path."""
    role = identity.role_name
    if role is None:
        if ":federated-user/" in identity.arn or identity.arn.endswith(":root"):
            raise DeployError(
                f"{identity.arn} cannot be given an EKS access entry: set aws.cluster_admin_arns to an "
                "IAM role or user ARN"
            )
        return identity.arn
    try:
        return str(iam.get_role(RoleName=role)["Role"]["Arn"])
    except ClientError as exc:
        if _code(exc) not in IAM_READ_DENIED:
            raise DeployError(f"cannot read IAM role {role}: {_message(exc)}") from None
    path = SSO_ROLE_PATH if role.startswith(SSO_ROLE_PREFIX) else "/"
    guessed = f"arn:{identity.partition}:iam::{identity.account}:role{path}{role}"
    warn(
        f"warning: iam:GetRole on {role} is denied; assuming {guessed} for the cluster-admin access "
        "entry (if kubectl is refused, set aws.cluster_admin_arns to the role's ARN)"
    )
    return guessed


def caller_identity(sts: Any, *, profile: str | None = None) -> Identity:
    try:
        response = sts.get_caller_identity()
    except (SSOError, UnauthorizedSSOTokenError, TokenRetrievalError) as exc:
        login = f"aws sso login --profile {profile}" if profile else "aws sso login"
        raise DeployError(
            f"the AWS SSO session has expired or was never started ({type(exc).__name__}): run `{login}`"
        ) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise DeployError(NO_CREDENTIALS) from None
    except ClientError as exc:
        if _code(exc) in CREDENTIAL_ERRORS:
            raise DeployError(f"{NO_CREDENTIALS} ({_code(exc)})") from None
        raise DeployError(f"cannot identify the AWS caller: {_message(exc)}") from None
    except NoRegionError:
        raise DeployError("no AWS region: set aws.region in the config") from None
    except EndpointConnectionError as exc:
        raise DeployError(
            f"cannot reach AWS STS ({exc.kwargs.get('endpoint_url')}): check aws.region and the network"
        ) from None
    return Identity(account=response["Account"], arn=response["Arn"])


def check_region(ec2: Any, *, region: str, zones: tuple[str, ...]) -> None:
    try:
        found = ec2.describe_availability_zones(
            Filters=[{"Name": "region-name", "Values": [region]}], AllAvailabilityZones=False
        )["AvailabilityZones"]
    except EndpointConnectionError:
        raise DeployError(
            f"AWS region {region!r} does not exist or cannot be reached: check aws.region"
        ) from None
    except ClientError as exc:
        if _code(exc) in ("AuthFailure", "OptInRequired", "UnauthorizedOperation"):
            raise DeployError(
                f"region {region} is not enabled for this account ({_code(exc)}): check aws.region"
            ) from None
        raise DeployError(f"cannot list the zones of {region}: {_message(exc)}") from None
    available = sorted(z["ZoneName"] for z in found if z.get("State", "available") == "available")
    missing = [zone for zone in zones if zone not in available]
    if missing:
        raise DeployError(
            f"zone(s) {', '.join(missing)} not available in {region} (available: {', '.join(available)}): "
            "set aws.availability_zones"
        )


def check_bootstrap(ssm: Any, *, account: str, region: str) -> None:
    try:
        ssm.get_parameter(Name=BOOTSTRAP_PARAMETER)
    except ClientError as exc:
        if _code(exc) in ("ParameterNotFound", "AccessDeniedException"):
            raise DeployError(
                f"account {account} is not CDK-bootstrapped in {region}: run "
                f"`npx cdk bootstrap aws://{account}/{region}` once"
            ) from None
        raise DeployError(f"cannot read the CDK bootstrap version: {_message(exc)}") from None


def check_dl1(
    ec2: Any, quotas: Any, *, region: str, zone: str, instance_type: str, warn: Callable[[str], None] = print
) -> None:
    """The DL1 instance goes into the first configured zone: it must be offered there and fit the quota."""
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [instance_type]}]
    )["InstanceTypeOfferings"]
    zones = sorted(o["Location"] for o in offerings)
    if not zones:
        raise DeployError(f"{instance_type} is not offered in {region}: choose another aws.region")
    if zone not in zones:
        raise DeployError(
            f"{instance_type} is not offered in {zone} (it is in {', '.join(zones)}): make one of those the "
            "first of aws.availability_zones"
        )
    (info,) = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    vcpus = info["VCpuInfo"]["DefaultVCpus"]
    try:
        quota = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=DL_QUOTA_CODE)["Quota"]["Value"]
    except ClientError as exc:
        # Reading quotas needs servicequotas:GetServiceQuota; without it, CloudFormation will tell.
        warn(f"warning: cannot read the DL instance quota ({_code(exc)}); continuing")
        return
    if quota < vcpus:
        raise DeployError(
            f"the 'Running On-Demand DL instances' quota in {region} is {quota:g} vCPUs but {instance_type} "
            f"needs {vcpus}: request an increase (Service Quotas, ec2 {DL_QUOTA_CODE})"
        )


# What the CDK CLI prints when a deployment fails, mapped to one line each (first match wins).
DEPLOY_FAILURES: tuple[tuple[str, str], ...] = (
    (
        r"Unable to resolve AWS account|Need to perform AWS calls for account .* but no credentials",
        NO_CREDENTIALS,
    ),
    (r"ExpiredToken|The security token included in the request is (expired|invalid)", NO_CREDENTIALS),
    (
        r"has not been bootstrapped|/cdk-bootstrap/hnb659fds/version.*(not found|does not exist)|"
        r"is not bootstrapped|SSM parameter /cdk-bootstrap",
        "the account/region is not CDK-bootstrapped: run `npx cdk bootstrap aws://ACCOUNT/REGION` once",
    ),
    (
        r"VcpuLimitExceeded|You have requested more vCPU capacity than your current vCPU limit",
        f"the DL1 instance exceeds the 'Running On-Demand DL instances' vCPU quota: request an increase "
        f"(Service Quotas, ec2 {DL_QUOTA_CODE})",
    ),
    (
        r"InsufficientInstanceCapacity",
        "AWS has no dl1 capacity in that zone right now: retry later or put another zone first in "
        "aws.availability_zones",
    ),
    (
        r"Unsupported.*(instance type|availability zone|configuration)|is not supported in your requested "
        r"Availability Zone",
        "the instance type is not offered in that zone: put one offering it first in aws.availability_zones",
    ),
    (
        r"InvalidAMIID|image id '\[?ami-",
        "the Habana AMI is not available in this region: pin another in aws.habana_ami_ids, or delete "
        "deploy/aws/habana-ami.json under the artifacts folder to look it up again",
    ),
    (r"Could not connect to the endpoint URL", "the AWS region cannot be reached: check aws.region"),
    (
        r"Parameters: \[[^\]]*\] must have values",
        "a stack parameter has no value (HabanaAmiId or EndpointPublicCidrs): deploy with "
        "`invoke up --target aws`, which fills them in",
    ),
)


def explain_cdk_failure(output: str, *, action: str) -> str:
    for pattern, line in DEPLOY_FAILURES:
        if re.search(pattern, output):
            return line
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
    return f"cdk {action} failed: {last[:300]}"


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", str(exc))
