"""An ECR repository: immutable tags, scan on push, KMS encryption, a lifecycle, kept on delete."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from constructs import Construct

# Untagged images are the layers of interrupted or superseded pushes: nothing pulls them by tag.
UNTAGGED_EXPIRE_AFTER = Duration.days(14)
# Tags are immutable versions (images.version); the newest ones stay pullable, older ones are
# billed storage nobody deploys.
TAGGED_IMAGES_KEPT = 30


@dataclass(frozen=True)
class ImageRepositoryProps:
    repository_name: str
    encryption_key: kms.IKey


class ImageRepository(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: ImageRepositoryProps) -> None:
        super().__init__(scope, construct_id)
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=props.repository_name,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=props.encryption_key,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    rule_priority=1,
                    description=f"untagged images expire after {UNTAGGED_EXPIRE_AFTER.to_days()} days",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=UNTAGGED_EXPIRE_AFTER,
                ),
                ecr.LifecycleRule(
                    rule_priority=2,
                    description=f"the newest {TAGGED_IMAGES_KEPT} tagged images are kept",
                    tag_status=ecr.TagStatus.TAGGED,
                    tag_pattern_list=["*"],
                    max_image_count=TAGGED_IMAGES_KEPT,
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
