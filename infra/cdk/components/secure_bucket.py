"""An S3 bucket for data: KMS, versioning, no public access, TLS only, access logs, kept on delete."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

# Parts of an interrupted multipart upload are billed until aborted; `invoke up` resumes well within this.
ABORT_INCOMPLETE_UPLOADS_AFTER = Duration.days(7)
# Versioning guards against an accidental overwrite or delete; a replaced version is billed like a
# current one, so it is kept long enough to notice and restore, then expired.
NONCURRENT_VERSIONS_EXPIRE_AFTER = Duration.days(90)


def versioned_bucket_lifecycle() -> list[s3.LifecycleRule]:
    """The lifecycle of every versioned bucket: incomplete uploads aborted, old versions expired."""
    return [
        s3.LifecycleRule(
            abort_incomplete_multipart_upload_after=ABORT_INCOMPLETE_UPLOADS_AFTER,
            noncurrent_version_expiration=NONCURRENT_VERSIONS_EXPIRE_AFTER,
        )
    ]


@dataclass(frozen=True)
class SecureBucketProps:
    encryption_key: kms.IKey
    access_log_bucket: s3.IBucket
    access_log_prefix: str


class SecureBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: SecureBucketProps) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=props.encryption_key,
            bucket_key_enabled=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=props.access_log_bucket,
            server_access_logs_prefix=props.access_log_prefix,
            lifecycle_rules=versioned_bucket_lifecycle(),
            # Data outlives the infrastructure: never auto_delete_objects.
            removal_policy=RemovalPolicy.RETAIN,
        )


class AccessLogBucket(Construct):
    """The target of S3 server access logs (SSE-S3: log delivery cannot write to SSE-KMS buckets)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=versioned_bucket_lifecycle(),
            removal_policy=RemovalPolicy.RETAIN,
        )
