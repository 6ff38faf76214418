"""A customer-managed KMS key with rotation, optionally usable by CloudWatch Logs."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


@dataclass(frozen=True)
class EncryptionKeyProps:
    description: str
    removal_policy: RemovalPolicy
    # Let CloudWatch Logs of this account and region encrypt log groups with the key.
    for_logs: bool = False


class EncryptionKey(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: EncryptionKeyProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=props.description,
            enable_key_rotation=True,
            removal_policy=props.removal_policy,
        )
        if props.for_logs:
            stack = Stack.of(self)
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="CloudWatchLogs",
                    principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                    actions=[
                        "kms:Encrypt*",
                        "kms:Decrypt*",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:Describe*",
                    ],
                    resources=["*"],
                    conditions={
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": (
                                f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                            )
                        }
                    },
                )
            )
