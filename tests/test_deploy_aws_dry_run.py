"""A newcomer's first command, through the real Invoke program and the pinned CDK CLI: on a fresh
checkout, with no AWS credentials or settings and no config edits, `invoke up --target aws
--dry-run` synthesizes every stack past the cdk-nag gate and exits 0. Nothing may leave the
machine: the run gets its own network namespace where the system allows one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.aws_names import ENDPOINT_CIDRS_PARAMETER, HABANA_AMI_PARAMETER, StackNames
from contracts.config import AwsConfig

ROOT = Path(__file__).resolve().parents[1]
INVOKE = Path(sys.executable).parent / "invoke"


def _offline_prefix() -> list[str]:
    """`unshare -rn`: a user and network namespace with no route out, when this system allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "-rn"]
    return []


def _clean_environment(home: Path) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    node = shutil.which("node")
    if node:
        env["PATH"] = f"{Path(node).parent}:{env['PATH']}"
    # Also inside the namespace: keep the SDKs off the instance-metadata address and the CDK CLI's
    # telemetry off, so the run sends nothing beyond loopback even where unshare is refused.
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "CDK_DISABLE_CLI_TELEMETRY": "true"}
    return env


def test_dry_run_on_a_fresh_checkout_without_credentials_synthesizes_every_stack(tmp_path):
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    prefix = _offline_prefix()
    command = [*prefix, str(INVOKE), "up", "--target", "aws", "--dry-run", "--artifacts-dir", str(artifacts)]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=_clean_environment(home),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "no AWS credentials: synthesized only, no `cdk diff`" in output
    assembly = artifacts / "deploy" / "aws" / "cdk.out"
    names = StackNames.for_prefix(AwsConfig().resource_prefix)
    templates = {name: json.loads((assembly / f"{name}.template.json").read_text()) for name in names.all}
    # Honest offline: the AMI and the caller's address are parameters filled by `invoke up`.
    training = templates[names.training]["Parameters"][HABANA_AMI_PARAMETER]
    assert training["Type"] == "AWS::EC2::Image::Id" and "Default" not in training
    assert "ami-" not in json.dumps(templates[names.training])
    cidrs = templates[names.cluster]["Parameters"][ENDPOINT_CIDRS_PARAMETER]
    assert cidrs["Type"] == "CommaDelimitedList" and "Default" not in cidrs
    # cdk-nag ran as a validation plugin: a finding would have failed the synth; none is reported.
    report = json.loads((assembly / "validation-report.json").read_text())
    assert all(r.get("summary", {}).get("status") != "failure" for r in report["pluginReports"])
    assert not (artifacts / "deploy" / "aws" / "habana-ami.json").exists()


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (
            "INVOKE_BMC_AWS_REGON",
            "error: environment variable INVOKE_BMC_AWS_REGON names no configuration key (did you mean "
            "INVOKE_BMC_AWS_REGION, key aws.region?)",
        ),
        (
            "INVOKE_BMC_AWS_REGION",
            "error: aws.region must be an AWS region name like us-east-1, got 'useast1'",
        ),
    ],
)
def test_a_mistyped_setting_stops_the_program_with_one_line(tmp_path, variable, expected):
    env = _clean_environment(tmp_path) | {variable: "useast1"}
    result = subprocess.run(
        [str(INVOKE), "up", "--target", "aws", "--dry-run", "--artifacts-dir", str(tmp_path / "artifacts")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(expected) and result.stderr.strip().count("\n") == 0
