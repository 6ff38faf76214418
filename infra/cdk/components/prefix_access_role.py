"""A role that reads some key prefixes and writes others, nothing more (for one Pod Identity).

Reads: list and get under each read prefix. Writes: put (and multipart parts) under each write
prefix, no get, no delete. The data key may be used only through S3 (kms:ViaService).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnElement, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.data_access_role import READ_OBJECTS

PUT_OBJECTS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


@dataclass(frozen=True)
class BucketPrefix:
    bucket: s3.Bucket
    # Without leading or trailing '/': the grant covers "<prefix>/*".
    prefix: str


@dataclass(frozen=True)
class PrefixAccessRoleProps:
    description: str
    assumed_by: iam.IPrincipal
    key: kms.IKey
    reads: tuple[BucketPrefix, ...]
    writes: tuple[BucketPrefix, ...]


class PrefixAccessRole(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: PrefixAccessRoleProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(self, "Role", description=props.description, assumed_by=props.assumed_by)
        statements = []
        for place in props.reads + props.writes:
            # `aws s3 sync` lists before it copies, in either direction.
            statements.append(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[place.bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [place.prefix, f"{place.prefix}/*"]}},
                )
            )
        if props.reads:
            statements.append(
                iam.PolicyStatement(
                    actions=list(READ_OBJECTS),
                    resources=[p.bucket.arn_for_objects(f"{p.prefix}/*") for p in props.reads],
                )
            )
        if props.writes:
            statements.append(
                iam.PolicyStatement(
                    actions=list(PUT_OBJECTS),
                    resources=[p.bucket.arn_for_objects(f"{p.prefix}/*") for p in props.writes],
                )
            )
        # Decrypt also for writes: completing a multipart upload decrypts its data key.
        key_actions = ["kms:Decrypt"] + (["kms:GenerateDataKey"] if props.writes else [])
        statements.append(
            iam.PolicyStatement(
                actions=key_actions,
                resources=[props.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}"}},
            )
        )
        self.policy = iam.ManagedPolicy(self, "Policy", description=props.description, statements=statements)
        self.role.add_managed_policy(self.policy)
        for place in props.reads + props.writes:
            bucket_resource = place.bucket.node.default_child
            if not isinstance(bucket_resource, CfnElement):
                raise TypeError(f"{place.bucket.node.path} has no CloudFormation resource to acknowledge")
            bucket_id = stack.resolve(stack.get_logical_id(bucket_resource))
            acknowledge(
                self.policy,
                rule=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{place.prefix}/*]",
                reason="Objects under one key prefix of one bucket: bucket and prefix are named exactly.",
            )
