"""Commands of the CDK CLI pinned in package.json (node_modules/.bin/cdk), run through Invoke."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import DeployError
from workloads.deploy.aws_preflight import explain_cdk_failure

CONFIG_FILE_CONTEXT = "bmc:config-file"  # read by infra/cdk/app.py
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CdkCli:
    """``runner`` is an Invoke context (``run`` and ``cd``); commands run in the repository root."""

    runner: Any
    region: str
    repo: Path = REPO

    @property
    def binary(self) -> Path:
        return self.repo / "node_modules" / ".bin" / "cdk"

    def synth_command(self, *, assembly: Path, config_file: Path) -> str:
        return self._command(
            "synth", "--quiet", "--output", str(assembly), "--context", f"{CONFIG_FILE_CONTEXT}={config_file}"
        )

    def diff_command(self, *, assembly: Path) -> str:
        return self._command("diff", "--all", "--app", str(assembly))

    def deploy_command(
        self, *, assembly: Path, outputs_file: Path, parameters: Mapping[str, Mapping[str, str]] | None = None
    ) -> str:
        """``parameters``: stack name → CloudFormation parameter → value, filled at deploy time."""
        # Approval is the point of --dry-run (which shows the diff); `up` itself is the go-ahead.
        given = [
            arg
            for stack, values in sorted((parameters or {}).items())
            for key, value in sorted(values.items())
            for arg in ("--parameters", f"{stack}:{key}={value}")
        ]
        return self._command(
            "deploy",
            "--all",
            "--app",
            str(assembly),
            "--require-approval",
            "never",
            "--concurrency",
            "2",
            "--outputs-file",
            str(outputs_file),
            *given,
        )

    def destroy_command(self, *, assembly: Path, stacks: tuple[str, ...]) -> str:
        return self._command("destroy", "--force", "--exclusively", "--app", str(assembly), *stacks)

    def run(self, command: str, *, action: str) -> None:
        if not self.binary.exists():
            raise DeployError("the pinned CDK CLI is not installed: run `npm ci` in the repository root")
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_VERSION_CHECK": "1",
        }
        with self.runner.cd(str(self.repo)):
            result = self.runner.run(command, env=env, warn=True, pty=False)
        if result is None or result.exited != 0:
            output = "" if result is None else f"{result.stdout}\n{result.stderr}"
            raise DeployError(explain_cdk_failure(output, action=action))

    def _command(self, *args: str) -> str:
        return shlex.join([str(self.binary.relative_to(self.repo)), *args, "--no-notices"])
