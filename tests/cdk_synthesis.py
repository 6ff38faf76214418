"""One synthesis of the CDK app per test session, shared by the tests/test_cdk_*.py modules.

jsii synthesis takes seconds, so every module reads the same cloud assembly (cached here).
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "cdk"
ACCOUNT = "111111111111"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin"
AMI = "ami-0123456789abcdef0"
# Everything the issue makes configurable is set away from its default, so the tests see it flow through.
SETTINGS: dict[str, Any] = {
    "kubernetes": {
        "version": "1.32",
        "namespace": "cells",
        "model_sync_service_account": "model-sync",
        "bench_service_account": "bench-writer",
    },
    "aws": {
        "region": "us-west-2",
        "availability_zones": ["us-west-2b", "us-west-2c"],
        "resource_prefix": "bmtest",
        "pools": {
            "c5": {
                "instance_type": "c5.xlarge",
                "cpu_generation": "cascadelake",
                "desired_size": 2,
                "max_size": 3,
            },
            "c6i": {
                "instance_type": "c6i.xlarge",
                "cpu_generation": "icelake",
                "min_size": 0,
                "desired_size": 1,
            },
            "c7i": {
                "instance_type": "c7i.large",
                "cpu_generation": "sapphirerapids",
                "max_size": 3,
            },
        },
        "vpc_cidr": "10.60.0.0/16",
        "nat_gateways": 2,
        "endpoint_public_cidrs": ["203.0.113.0/24", "198.51.100.7/32"],
        "cluster_support_type": "EXTENDED",
        # The latest of each for Kubernetes 1.32 (kubernetes.version above).
        "addons": {
            "vpc_cni": "v1.19.2-eksbuild.5",
            "kube_proxy": "v1.32.3-eksbuild.7",
            "coredns": "v1.11.4-eksbuild.2",
            "pod_identity_agent": "v1.3.4-eksbuild.1",
        },
        "bench_artifacts_prefix": "bench/inputs",
        "bench_pool": {
            "instance_type": "c5.xlarge",
            "cpu_generation": "cascadelake",
            "min_size": 0,
            "desired_size": 0,
            "max_size": 2,
        },
        "cluster_admin_arns": [ADMIN_ARN],
        "dl1_instance_type": "dl1.24xlarge",
        "habana_ami_ids": {"us-west-2": AMI},
        "dl1_volume_gib": 750,
        "dl1_idle_minutes": 45,
        "dl1_idle_cpu_percent": 3.0,
        "budget_monthly_usd": 1500.0,
        "budget_email": "ml-ops@example.org",
        "log_retention_days": 365,
    },
}


@dataclass(frozen=True)
class Synthesis:
    config: Any
    stacks: Any  # infra.cdk.toolkit.ToolkitStacks
    outdir: Path
    templates: dict[str, dict]  # by role: network, data, cluster, training
    report: dict
    error: str | None  # what synthesis raised (a failed validation), if anything

    def template(self, role: str):
        from aws_cdk.assertions import Template

        return Template.from_json(self.templates[role])

    def resources(self, role: str, resource_type: str) -> dict[str, dict]:
        found = self.templates[role]["Resources"].items()
        return {k: r for k, r in found if r["Type"] == resource_type}

    def violations(self) -> list[tuple[str, str, str]]:
        """(plugin, rule, construct path) of every unacknowledged finding of every plugin."""
        return [
            (plugin["pluginName"], violation["ruleName"], construct["constructPath"])
            for plugin in self.report.get("pluginReports", [])
            for violation in plugin["violations"]
            for construct in violation["violatingConstructs"]
        ]


def cdk_context() -> dict:
    return json.loads((REPO / "cdk.json").read_text())["context"]


def synthesize(settings: dict, *, checks: bool = True) -> Synthesis:
    from aws_cdk import App

    from contracts.aws_names import StackNames
    from contracts.config import load_config
    from infra.cdk.toolkit import add_compliance_checks, add_stacks

    config = load_config(settings)
    outdir = Path(tempfile.mkdtemp(prefix="cdk-test-"))
    app = App(context=cdk_context(), outdir=str(outdir))
    stacks = add_stacks(app, config=config, account=ACCOUNT)
    if checks:
        add_compliance_checks(app)
    error = None
    try:
        app.synth()
    except Exception as exc:  # a failed validation still leaves the templates and the report
        error = str(exc)
    names = StackNames.for_prefix(config.aws.resource_prefix)
    templates = {
        role: json.loads((outdir / f"{getattr(names, role)}.template.json").read_text())
        for role in ("network", "data", "cluster", "training")
    }
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    return Synthesis(config, stacks, outdir, templates, report, error)


@functools.cache
def synthesized() -> Synthesis:
    """The app with SETTINGS and the compliance checks, synthesized once per session."""
    return synthesize(SETTINGS)


def masked(template: dict) -> str:
    """The template as stable text for the snapshot: asset hashes masked."""
    text = json.dumps(template, indent=1, sort_keys=True)
    return re.sub(r"\b[0-9a-f]{64}\b", "<asset-hash>", text) + "\n"
