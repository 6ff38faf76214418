"""Acknowledging one cdk-nag finding on one construct, with the reason it is acceptable."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, *, rule: str, reason: str) -> None:
    """``rule`` is a full finding id, e.g. ``AwsSolutions-IAM5[Resource::*]`` (no prefix matching)."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
