"""A Lambda function that stops one EC2 instance: the action of an alarm on metric math.

CloudWatch's built-in stop action only works on an alarm set on a single per-instance metric; the
DL1 idle alarm combines CPU with the training heartbeat, so it invokes this function instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.encrypted_log_group import EncryptedLogGroup, EncryptedLogGroupProps

HANDLER_SOURCE = Path(__file__).with_name("instance_stopper_handler.py")


@dataclass(frozen=True)
class InstanceStopperProps:
    instance: ec2.IInstance
    log_retention_days: int


class InstanceStopper(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: InstanceStopperProps) -> None:
        super().__init__(scope, construct_id)
        logs = EncryptedLogGroup(
            self,
            "Logs",
            props=EncryptedLogGroupProps(
                description="the DL1 idle stop function's logs", retention_days=props.log_retention_days
            ),
        ).log_group
        instance_arn = Stack.of(self).format_arn(
            service="ec2", resource="instance", resource_name=props.instance.instance_id
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="DL1 idle stop: stop that one instance, write its own logs",
            statements=[
                iam.PolicyStatement(actions=["ec2:StopInstances"], resources=[instance_arn]),
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[logs.log_group_arn]
                ),
            ],
        )
        role = iam.Role(
            self,
            "Role",
            description="DL1 idle stop function",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            managed_policies=[self.policy],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description="Stops the DL1 instance when its idle alarm fires",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline(HANDLER_SOURCE.read_text()),
            environment={"INSTANCE_ID": props.instance.instance_id},
            role=role,
            log_group=logs,
            timeout=Duration.seconds(30),
            # One alarm, one instance: never more than one at a time.
            reserved_concurrent_executions=1,
        )
        for rule, reason in (
            (
                "HIPAA.Security-LambdaInsideVPC",
                "Calls only the EC2 API and touches no data; outside the VPC it needs no ENI permissions.",
            ),
            (
                "HIPAA.Security-LambdaDLQ",
                "A failed stop leaves the alarm in ALARM, visible there; the idle alarm is the record.",
            ),
        ):
            acknowledge(self.function, rule=rule, reason=reason)
