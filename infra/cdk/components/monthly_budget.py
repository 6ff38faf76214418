"""A monthly cost budget with e-mail alerts at 80 % actual and 100 % forecast spend."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_budgets as budgets
from constructs import Construct


@dataclass(frozen=True)
class MonthlyBudgetProps:
    budget_name: str
    amount_usd: float
    # Empty: the budget exists without alerts (`invoke up` requires an address).
    email: str


class MonthlyBudget(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: MonthlyBudgetProps) -> None:
        super().__init__(scope, construct_id)
        subscribers = [budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=props.email)]
        alerts = [("ACTUAL", 80.0), ("FORECASTED", 100.0)] if props.email else []
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=props.budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=props.amount_usd, unit="USD"),
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=threshold,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=subscribers,
                )
                for kind, threshold in alerts
            ],
        )
