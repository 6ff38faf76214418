"""Where the OVMS pods get the model repository from (the layout `invoke optimize` writes)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.errors import DeployError

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")


def _check_s3(bucket: str, prefix: str, region: str) -> None:
    if not _BUCKET.fullmatch(bucket):
        raise DeployError(f"model source bucket must be an S3 bucket name, got {bucket!r}")
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise DeployError(f"model source prefix must be a relative S3 key prefix, got {prefix!r}")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise DeployError(f"model source region must look like us-east-1, got {region!r}")


@dataclass(frozen=True)
class S3ModelSource:
    """EKS: an init container syncs the bucket under the pod's own AWS identity.

    With ``role_arn`` the pod uses IRSA (the token is projected into the init container only);
    without it, EKS Pod Identity (an association of ``service_account`` with a role, made by the
    infrastructure) and the webhook skips the OVMS container.
    """

    bucket: str
    prefix: str
    region: str
    service_account: str
    role_arn: str = ""

    def __post_init__(self) -> None:
        _check_s3(self.bucket, self.prefix, self.region)
        if not _DNS_LABEL.fullmatch(self.service_account):
            raise DeployError(f"service_account must be a DNS label, got {self.service_account!r}")
        if self.role_arn and not _ROLE_ARN.fullmatch(self.role_arn):
            raise DeployError(f"role_arn must be an IAM role ARN, got {self.role_arn!r}")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")


@dataclass(frozen=True)
class SecretS3ModelSource:
    """EKS Anywhere: the same sync with keys from a Secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).

    ``endpoint_url`` points at an S3-compatible store on-prem; empty means AWS S3.
    """

    bucket: str
    prefix: str
    region: str
    secret_name: str
    endpoint_url: str = ""

    def __post_init__(self) -> None:
        _check_s3(self.bucket, self.prefix, self.region)
        if not _DNS_LABEL.fullmatch(self.secret_name):
            raise DeployError(f"secret_name must be a DNS label, got {self.secret_name!r}")
        if self.endpoint_url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.endpoint_url):
            raise DeployError(f"endpoint_url must be an http(s) URL, got {self.endpoint_url!r}")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")


@dataclass(frozen=True)
class BakedModelSource:
    """An OVMS image with the repository baked in at /models (images/ovms, MODEL_DIR build arg)."""

    image: str

    def __post_init__(self) -> None:
        tag = self.image.rpartition(":")[2]
        if "@sha256:" not in self.image and (":" not in self.image or "/" in tag or tag == "latest"):
            raise DeployError(
                f"baked model image must be pinned by a tag other than latest, got {self.image!r}"
            )


ModelSource = S3ModelSource | SecretS3ModelSource | BakedModelSource
