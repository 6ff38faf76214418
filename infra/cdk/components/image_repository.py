"""An ECR repository: immutable tags, scan on push, KMS encryption, kept on delete."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from constructs import Construct


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
            removal_policy=RemovalPolicy.RETAIN,
        )
