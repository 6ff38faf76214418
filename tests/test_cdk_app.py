"""infra/cdk/app.py as the CDK CLI runs it: context and out dir from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cdk_synthesis import REPO, SETTINGS, cdk_context


def _run_app(tmp_path, context: dict, account: str = "222222222222") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # What the CDK CLI hands an app: its context, where to write, and the account/region it found.
        "CDK_CONTEXT_JSON": json.dumps({**cdk_context(), **context}),
        "CDK_OUTDIR": str(tmp_path / "out"),
        "CDK_DEFAULT_ACCOUNT": account,
        "CDK_DEFAULT_REGION": "eu-west-1",  # ignored: the region comes from the toolkit config
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    return subprocess.run(
        [sys.executable, "-m", "infra.cdk.app"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_app_synthesizes_the_config_file_named_in_the_context(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(SETTINGS))
    result = _run_app(tmp_path, {"bmc:config-file": str(config_file)})
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    stacks = {k: v for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"}
    assert sorted(stacks) == ["bmtest-cluster", "bmtest-data", "bmtest-network", "bmtest-training"]
    assert {v["environment"] for v in stacks.values()} == {"aws://222222222222/us-west-2"}


def test_a_config_the_app_cannot_use_is_one_line_and_exit_2(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"aws": {"region": "eu-west-1", "availability_zones": ["eu-west-1a"]}}))
    result = _run_app(tmp_path, {"bmc:config-file": str(config_file)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: aws.availability_zones must list at least two zones (EKS needs two)"
    )
    assert not (tmp_path / "out" / "manifest.json").exists()
