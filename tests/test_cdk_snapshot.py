"""Tripwires: template snapshots, frozen logical ids of stateful resources, no context lookups.

After an intended change: UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_cdk_snapshot.py, then
review the diff of tests/data/cdk/ like code.
"""

from __future__ import annotations

import json
import os

import pytest
from cdk_synthesis import DATA, REPO, masked, synthesized

UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
# Replacing one of these loses data or breaks everything built on it.
STATEFUL_TYPES = (
    "AWS::EC2::VPC",
    "AWS::S3::Bucket",
    "AWS::KMS::Key",
    "AWS::ECR::Repository",
    "AWS::EKS::Cluster",
)


def _write(path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.mark.parametrize("role", ["network", "data", "cluster", "training"])
def test_template_matches_its_snapshot(role):
    path = DATA / f"{role}.template.json"
    current = masked(synthesized().templates[role])
    if UPDATE:
        _write(path, current)
    assert path.exists(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1 and commit it"
    assert current == path.read_text(), f"{role} template changed: review, then UPDATE_SNAPSHOTS=1"


def test_logical_ids_of_stateful_resources_equal_the_committed_list():
    synth = synthesized()
    current = {
        role: sorted(k for k, r in template["Resources"].items() if r["Type"] in STATEFUL_TYPES)
        for role, template in synth.templates.items()
    }
    path = DATA / "stateful-logical-ids.json"
    if UPDATE and not path.exists():
        _write(path, json.dumps(current, indent=2) + "\n")
    # Never rewritten by UPDATE_SNAPSHOTS: a changed id means CloudFormation replaces the resource.
    assert current == json.loads(path.read_text())


def test_synthesis_needs_no_context_lookup():
    manifest = json.loads((synthesized().outdir / "manifest.json").read_text())
    assert not manifest.get("missing")
    assert json.loads((REPO / "cdk.context.json").read_text()) == {}


def test_cdk_json_runs_the_app_with_the_venv_python_and_the_cli_is_pinned_below_3():
    cdk = json.loads((REPO / "cdk.json").read_text())
    assert cdk["app"] == ".venv/bin/python -m infra.cdk.app"
    package = json.loads((REPO / "package.json").read_text())
    assert package["devDependencies"]["aws-cdk"].startswith("^2.1148")
    lock = json.loads((REPO / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/aws-cdk"]["version"]
    assert version.startswith("2.") and tuple(map(int, version.split(".")[:2])) >= (2, 1148)
