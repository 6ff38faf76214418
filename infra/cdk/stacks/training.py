"""The DL1 training instance and the monthly budget that watches the whole account's spend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput
from constructs import Construct

from contracts.aws_names import DL1_INSTANCE_ID
from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.monthly_budget import MonthlyBudget, MonthlyBudgetProps
from infra.cdk.components.training_instance import TrainingInstance, TrainingInstanceProps
from infra.cdk.stacks.base import ZonedStack


@dataclass(frozen=True)
class TrainingStackProps:
    instance: TrainingInstanceProps
    budget: MonthlyBudgetProps


class TrainingStack(ZonedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, props: TrainingStackProps, **stack_args: Any
    ) -> None:
        super().__init__(scope, construct_id, **stack_args)
        training = TrainingInstance(self, "Dl1", props=props.instance)
        acknowledge(
            training.instance,
            rule="AwsSolutions-EC29",
            reason="A disposable training machine: its state lives in S3, so termination must stay possible.",
        )
        acknowledge(
            training.instance,
            rule="CloudFormation-Validate::W3010",
            reason="DL1 is offered in few zones; config names one that has it.",
        )
        if props.instance.pinned_ami_id:
            # The linter reads the AMI parameter's default as a hard-coded id.
            acknowledge(
                training.instance,
                rule="CloudFormation-Validate::W9010",
                reason="The AMI is a parameter; its default is the one pinned in aws.habana_ami_ids.",
            )
        self.instance = training.instance
        self.budget = MonthlyBudget(self, "Budget", props=props.budget)
        CfnOutput(self, DL1_INSTANCE_ID, value=training.instance.instance_id)
