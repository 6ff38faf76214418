"""CDK CLI commands (exact strings, through Invoke's MockContext) and their failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import MockContext, Result

from contracts.errors import DeployError
from workloads.deploy.cdk_cli import REPO, CdkCli

CDK = "node_modules/.bin/cdk"


def _cli(run=None, repo: Path = REPO) -> CdkCli:
    return CdkCli(runner=MockContext(run=run or {}), region="us-west-2", repo=repo)


def test_commands_use_the_pinned_cli_the_synthesized_assembly_and_the_config_file():
    cli = _cli()
    assembly, config, outputs = Path("/a/cdk.out"), Path("/a/config.json"), Path("/a/outputs.json")
    assert cli.synth_command(assembly=assembly, config_file=config) == (
        f"{CDK} synth --quiet --output /a/cdk.out --context bmc:config-file=/a/config.json --no-notices"
    )
    assert cli.diff_command(assembly=assembly) == f"{CDK} diff --all --app /a/cdk.out --no-notices"
    assert cli.deploy_command(assembly=assembly, outputs_file=outputs) == (
        f"{CDK} deploy --all --app /a/cdk.out --require-approval never --concurrency 2 "
        "--outputs-file /a/outputs.json --no-notices"
    )
    parameters = {
        "p-training": {"HabanaAmiId": "ami-0123"},
        "p-cluster": {"EndpointPublicCidrs": "1.2.0.0/16,5.6.7.8/32"},
    }
    assert cli.deploy_command(assembly=assembly, outputs_file=outputs, parameters=parameters) == (
        f"{CDK} deploy --all --app /a/cdk.out --require-approval never --concurrency 2 "
        "--outputs-file /a/outputs.json --parameters p-cluster:EndpointPublicCidrs=1.2.0.0/16,5.6.7.8/32 "
        "--parameters p-training:HabanaAmiId=ami-0123 --no-notices"
    )
    assert cli.destroy_command(assembly=assembly, stacks=("p-training", "p-cluster", "p-network")) == (
        f"{CDK} destroy --force --exclusively --app /a/cdk.out p-training p-cluster p-network --no-notices"
    )


def test_paths_with_spaces_are_quoted():
    command = _cli().synth_command(assembly=Path("/my dir/cdk.out"), config_file=Path("/my dir/c.json"))
    assert "--output '/my dir/cdk.out'" in command and "'bmc:config-file=/my dir/c.json'" in command


class CwdRecordingContext(MockContext):
    def run(self, command, **kwargs):
        self.cwd_seen = self.cwd
        return super().run(command, **kwargs)


def _repo_with_cli(root: Path) -> Path:
    """A checkout after `npm ci` (the tests check what is run, not the CLI itself)."""
    (root / "node_modules" / ".bin").mkdir(parents=True)
    (root / CDK).write_text("#!/bin/sh\n")
    return root


def test_run_goes_to_the_repository_root_and_passes_on_success(tmp_path):
    repo = _repo_with_cli(tmp_path)
    command = f"{CDK} diff --all --app /a --no-notices"
    context = CwdRecordingContext(run={command: Result(exited=0)})
    CdkCli(runner=context, region="us-west-2", repo=repo).run(command, action="diff")
    context.run.assert_called_once()
    assert context.cwd_seen == str(repo)
    assert context.run.call_args.kwargs["env"]["AWS_REGION"] == "us-west-2"


def test_a_failed_deploy_is_one_explained_line():
    command = f"{CDK} deploy --all --no-notices"
    failure = Result(
        exited=1, stderr="Dl1Instance | CREATE_FAILED | VcpuLimitExceeded: You have requested more"
    )
    cli = CdkCli(runner=MockContext(run={command: failure}), region="us-west-2")
    with pytest.raises(DeployError, match=r"^the DL1 instance exceeds the 'Running On-Demand DL instances'"):
        cli.run(command, action="deploy")


def test_without_npm_ci_the_cli_is_missing_and_nothing_runs(tmp_path):
    context = MockContext()
    with pytest.raises(DeployError, match=r"^the pinned CDK CLI is not installed: run `npm ci`"):
        CdkCli(runner=context, region="us-west-2", repo=tmp_path).run("anything", action="synth")
