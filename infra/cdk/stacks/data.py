"""What outlives the rest: the data buckets, their key, the access-log bucket, the image repositories.

`invoke down --target aws` keeps this stack; every resource in it is RETAINed even if it is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from contracts.aws_names import (
    BENCH_RESULTS_PREFIX,
    BENCH_RESULTS_ROLE_ARN,
    BUCKET_KINDS,
    MODEL_SYNC_ROLE_ARN,
    REPOSITORY_KINDS,
    bucket_output,
    repository_name,
    repository_output,
)
from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.data_access_role import DataAccessRole, DataAccessRoleProps
from infra.cdk.components.encryption_key import EncryptionKey, EncryptionKeyProps
from infra.cdk.components.image_repository import ImageRepository, ImageRepositoryProps
from infra.cdk.components.pod_identity_trust import pod_identity_principal
from infra.cdk.components.prefix_access_role import BucketPrefix, PrefixAccessRole, PrefixAccessRoleProps
from infra.cdk.components.secure_bucket import AccessLogBucket, SecureBucket, SecureBucketProps
from infra.cdk.stacks.base import ZonedStack


@dataclass(frozen=True)
class PodIdentityScope:
    """Where the Pod Identity roles may be used: one cluster, one namespace, one service account each."""

    cluster_name: str
    namespace: str
    model_sync_service_account: str
    bench_service_account: str


@dataclass(frozen=True)
class DataStackProps:
    resource_prefix: str
    pod_identity: PodIdentityScope
    # Prefix of the models bucket the in-cluster bench reads its artifacts tree from.
    bench_artifacts_prefix: str


class DataStack(ZonedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, props: DataStackProps, **stack_args: Any
    ) -> None:
        super().__init__(scope, construct_id, **stack_args)
        # Retained: deleting it would make the retained buckets and repositories unreadable.
        self.key = EncryptionKey(
            self,
            "DataKey",
            props=EncryptionKeyProps(
                description=f"{props.resource_prefix}: data buckets and image repositories",
                removal_policy=RemovalPolicy.RETAIN,
            ),
        ).key
        access_logs = AccessLogBucket(self, "AccessLogs").bucket
        _acknowledge_access_log_bucket(access_logs)
        self.buckets: dict[str, s3.Bucket] = {}
        for kind in BUCKET_KINDS:
            bucket = SecureBucket(
                self,
                kind.capitalize(),
                props=SecureBucketProps(
                    encryption_key=self.key, access_log_bucket=access_logs, access_log_prefix=f"{kind}/"
                ),
            ).bucket
            acknowledge(
                bucket,
                rule="HIPAA.Security-S3BucketReplicationEnabled",
                reason="Single-region research data: versioning guards against deletion; no DR replica.",
            )
            self.buckets[kind] = bucket
            CfnOutput(self, bucket_output(kind), value=bucket.bucket_name)
        self.repositories: dict[str, ecr.IRepository] = {}
        for kind in REPOSITORY_KINDS:
            repository = ImageRepository(
                self,
                f"{kind.capitalize()}Images",
                props=ImageRepositoryProps(
                    repository_name=repository_name(props.resource_prefix, kind), encryption_key=self.key
                ),
            ).repository
            self.repositories[kind] = repository
            CfnOutput(self, repository_output(kind), value=repository.repository_uri)

        # Who may touch the data is decided next to the data (and kept with it).
        self.model_sync_role = DataAccessRole(
            self,
            "ModelSyncAccess",
            props=DataAccessRoleProps(
                description="OVMS model sync on EKS (Pod Identity): reads the models bucket only",
                assumed_by=pod_identity_principal(
                    self,
                    cluster_name=props.pod_identity.cluster_name,
                    namespace=props.pod_identity.namespace,
                    service_account=props.pod_identity.model_sync_service_account,
                ),
                buckets=(self.buckets["models"],),
                key=self.key,
                write=False,
            ),
        ).role
        CfnOutput(self, MODEL_SYNC_ROLE_ARN, value=self.model_sync_role.role_arn)
        self.bench_results_role = PrefixAccessRole(
            self,
            "BenchResultsAccess",
            props=PrefixAccessRoleProps(
                description="In-cluster bench (Pod Identity): reads its artifacts, writes only bench results",
                assumed_by=pod_identity_principal(
                    self,
                    cluster_name=props.pod_identity.cluster_name,
                    namespace=props.pod_identity.namespace,
                    service_account=props.pod_identity.bench_service_account,
                ),
                key=self.key,
                reads=(BucketPrefix(self.buckets["models"], props.bench_artifacts_prefix),),
                writes=(BucketPrefix(self.buckets["results"], BENCH_RESULTS_PREFIX),),
            ),
        ).role
        CfnOutput(self, BENCH_RESULTS_ROLE_ARN, value=self.bench_results_role.role_arn)
        training = DataAccessRole(
            self,
            "TrainingAccess",
            props=DataAccessRoleProps(
                description="DL1 training: datasets, models and results buckets, training image, SSM",
                assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
                buckets=tuple(self.buckets[kind] for kind in BUCKET_KINDS),
                key=self.key,
                write=True,
                pull_from=(self.repositories["train"],),
                managed_policy_names=("AmazonSSMManagedInstanceCore",),
            ),
        )
        acknowledge(
            training.role,
            rule="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            reason="The AWS-maintained minimum for SSM Session Manager, which replaces SSH on DL1.",
        )
        self.training_role = training.role


def _acknowledge_access_log_bucket(bucket: s3.IBucket) -> None:
    for rule, reason in (
        ("HIPAA.Security-S3DefaultEncryptionKMS", "S3 log delivery cannot write to SSE-KMS buckets; SSE-S3."),
        ("HIPAA.Security-S3BucketReplicationEnabled", "Access logs of a single-region setup; no replica."),
    ):
        acknowledge(bucket, rule=rule, reason=reason)
