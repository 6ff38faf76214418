"""A CloudWatch log group encrypted with its own customer-managed key, with a retention period."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.components.encryption_key import EncryptionKey, EncryptionKeyProps

# CloudWatch retention periods (the ones contracts.config accepts) as the CDK enum.
RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


@dataclass(frozen=True)
class EncryptedLogGroupProps:
    description: str
    retention_days: int
    # None: a generated name. EKS control-plane logs need /aws/eks/<cluster>/cluster.
    log_group_name: str | None = None


class EncryptedLogGroup(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: EncryptedLogGroupProps) -> None:
        super().__init__(scope, construct_id)
        # Telemetry, not data: removed with its stack so that `down` leaves no orphaned log groups.
        self.key = EncryptionKey(
            self,
            "Encryption",
            props=EncryptionKeyProps(
                description=f"Encrypts {props.description}",
                removal_policy=RemovalPolicy.DESTROY,
                for_logs=True,
            ),
        ).key
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=props.log_group_name,
            encryption_key=self.key,
            retention=RETENTION[props.retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
