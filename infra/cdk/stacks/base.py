"""Stacks whose availability zones come from the config, never from an account lookup."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct


class ZonedStack(Stack):
    """A Stack that answers ``availability_zones`` with the configured zones.

    Without this, any construct asking the stack for its zones makes the CLI look them up in the
    account and cache them in cdk.context.json, and a synth without credentials gets dummy zones.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, zones: tuple[str, ...], **stack_args: Any
    ) -> None:
        self._zones = list(zones)
        super().__init__(scope, construct_id, **stack_args)

    @property
    def availability_zones(self) -> list[str]:
        return self._zones
