"""cdk-nag (AwsSolutions, HIPAA Security) and cfn-lint on the synthesized app."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
from pathlib import Path

import aws_cdk
from cdk_synthesis import SETTINGS, synthesize, synthesized

NAG_PACKS = ("AwsSolutions", "HIPAA.Security")


def test_both_nag_packs_ran_and_report_no_unacknowledged_finding():
    synth = synthesized()
    assert synth.error is None, synth.violations()
    assert synth.violations() == []
    # A pack without findings is absent from the report; without the acknowledgements both report.
    _recorded, findings = _without_acknowledgements()
    assert {plugin for plugin, _rule, _path in findings} >= set(NAG_PACKS)


@functools.cache
def _without_acknowledgements() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Synthesize again with every acknowledgement recorded instead of applied."""
    recorded: list[tuple[str, str, str]] = []
    original = aws_cdk.Validations.of

    class Recorder:
        def __init__(self, scope):
            self.path = scope.node.path
            self.validations = original(scope)

        def acknowledge(self, *rules):
            recorded.extend((self.path, rule.id, rule.reason) for rule in rules)

        def __getattr__(self, name):
            return getattr(self.validations, name)

    aws_cdk.Validations.of = lambda scope: Recorder(scope)
    try:
        synth = synthesize(SETTINGS)
    finally:
        aws_cdk.Validations.of = original
    return recorded, synth.violations()


def _plugin_rule(ack_id: str) -> str:
    # "CloudFormation-Validate::W3010" names its plugin; nag rule ids ("AwsSolutions-IAM5[...]") do not.
    return ack_id.split("::", 1)[1] if ack_id.startswith("CloudFormation-Validate::") else ack_id


def test_every_acknowledgement_is_narrow_matches_a_real_finding_and_says_why():
    recorded, findings = _without_acknowledgements()
    assert recorded, "no acknowledgement was recorded: the recorder is not wired"
    for path, rule, reason in recorded:
        matched = [f for f in findings if f[1] == _plugin_rule(rule) and f[2].startswith(path + "/")]
        assert matched, f"acknowledgement {rule} on {path} matches no finding"
        assert len(reason) >= 40 and "suppress" not in reason.lower(), (rule, reason)
        # Narrow: on a resource or its construct, never on a whole stack or the app.
        assert path.count("/") >= 1, (rule, path)
    for plugin, rule, path in findings:
        covered = [a for a in recorded if _plugin_rule(a[1]) == rule and path.startswith(a[0] + "/")]
        assert covered, f"{plugin} {rule} on {path} is neither fixed nor acknowledged"


def test_canary_an_acknowledgement_really_suppresses_a_finding():
    from aws_cdk import App, Stack
    from aws_cdk import aws_sns as sns
    from cdk_nag import AwsSolutionsChecks

    from infra.cdk.acknowledge import acknowledge

    def violations(acknowledged: bool) -> list[tuple[str, str]]:
        app = App()
        stack = Stack(app, "Canary")
        # Neither topic has an SSL-only policy (AwsSolutions-SNS3); only the first may be acknowledged.
        first = sns.Topic(stack, "First")
        sns.Topic(stack, "Second")
        if acknowledged:
            acknowledge(
                first, rule="AwsSolutions-SNS3", reason="Canary: proves that an acknowledgement works."
            )
        aws_cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        with contextlib.suppress(Exception):  # the unacknowledged finding fails the synthesis
            app.synth()
        report = json.loads((Path(app.outdir) / "validation-report.json").read_text())
        return sorted(
            (v["ruleName"], c["constructPath"])
            for p in report["pluginReports"]
            for v in p["violations"]
            for c in v["violatingConstructs"]
        )

    sns3 = ("AwsSolutions-SNS3", "Canary/First/Resource"), ("AwsSolutions-SNS3", "Canary/Second/Resource")
    assert set(sns3) <= set(violations(acknowledged=False))
    after = violations(acknowledged=True)
    assert sns3[0] not in after and sns3[1] in after


def test_cfn_lint_reports_no_errors():
    synth = synthesized()
    templates = sorted(str(p) for p in synth.outdir.glob("*.template.json"))
    assert len(templates) == 4
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    # cfn-lint's exit code is a bit mask: 2 = errors (4 = warnings, 8 = informational).
    assert not result.returncode & 2 and not errors, result.stdout + result.stderr
    assert result.returncode & ~(4 | 8) == 0, result.stderr
