"""A role with exactly the data access it needs, as a customer-managed policy (no inline policy).

Actions are listed one by one (no ``s3:Get*``-style wildcards); the only wildcard left is the
object part of a bucket's ARN, acknowledged per bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnElement, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.cdk.acknowledge import acknowledge

READ_OBJECTS = ("s3:GetObject", "s3:GetObjectVersion")
WRITE_OBJECTS = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
LIST_BUCKET = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")
PULL_IMAGES = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")


@dataclass(frozen=True)
class DataAccessRoleProps:
    description: str
    assumed_by: iam.IPrincipal
    buckets: tuple[s3.Bucket, ...]
    key: kms.IKey
    write: bool
    pull_from: tuple[ecr.IRepository, ...] = ()
    managed_policy_names: tuple[str, ...] = ()


class DataAccessRole(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: DataAccessRoleProps) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(self, "Role", description=props.description, assumed_by=props.assumed_by)
        object_actions = READ_OBJECTS + (WRITE_OBJECTS if props.write else ())
        key_actions = ("kms:Decrypt", "kms:GenerateDataKey") if props.write else ("kms:Decrypt",)
        statements = [
            iam.PolicyStatement(actions=list(LIST_BUCKET), resources=[b.bucket_arn for b in props.buckets]),
            iam.PolicyStatement(
                actions=list(object_actions), resources=[b.arn_for_objects("*") for b in props.buckets]
            ),
            iam.PolicyStatement(actions=list(key_actions), resources=[props.key.key_arn]),
        ]
        if props.pull_from:
            statements += [
                iam.PolicyStatement(
                    actions=list(PULL_IMAGES), resources=[r.repository_arn for r in props.pull_from]
                ),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            ]
        self.policy = iam.ManagedPolicy(self, "Policy", description=props.description, statements=statements)
        self.role.add_managed_policy(self.policy)
        stack = Stack.of(self)
        for bucket in props.buckets:
            bucket_resource = bucket.node.default_child
            if not isinstance(bucket_resource, CfnElement):
                raise TypeError(f"{bucket.node.path} has no CloudFormation resource to acknowledge")
            logical_id = stack.resolve(stack.get_logical_id(bucket_resource))
            acknowledge(
                self.policy,
                rule=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/*]",
                reason="Object-level access inside this one bucket; the bucket itself is named exactly.",
            )
        if props.pull_from:
            acknowledge(
                self.policy,
                rule="AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken takes no resource ARN; image pulls name the repository.",
            )
        for name in props.managed_policy_names:
            self.role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(name))
