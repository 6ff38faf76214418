"""Checks before a deployment, each failing with one line that says what to do.

No credentials, a wrong region or zones, a missing CDK bootstrap, and DL1 offering or quota
problems are found here, in seconds, instead of half-way through a CloudFormation deployment.
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
    TokenRetrievalError,
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


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str  # as STS reports it (an assumed-role session for SSO and roles)

    @property
    def principal_arn(self) -> str:
        """The IAM principal for an EKS access entry: a session's role, not the session."""
        match = re.fullmatch(r"arn:(aws[-a-z]*):sts::(\d{12}):assumed-role/([^/]+)/.+", self.arn)
        if match:
            partition, account, role = match.groups()
            return f"arn:{partition}:iam::{account}:role/{role}"
        return self.arn


def caller_identity(sts: Any) -> Identity:
    try:
        response = sts.get_caller_identity()
    except (NoCredentialsError, PartialCredentialsError, TokenRetrievalError):
        raise DeployError(NO_CREDENTIALS) from None
    except ClientError as exc:
        if _code(exc) in CREDENTIAL_ERRORS:
            raise DeployError(f"{NO_CREDENTIALS} ({_code(exc)})") from None
        raise DeployError(f"cannot identify the AWS caller: {_message(exc)}") from None
    except NoRegionError:
        raise DeployError("no AWS region: set aws.region in the config") from None
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
        "the Habana AMI in aws.habana_ami_ids is not available in this region",
    ),
    (r"Could not connect to the endpoint URL", "the AWS region cannot be reached: check aws.region"),
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
