"""Configuration through the Invoke program as a user runs it: -f files, pools replaced, --artifacts-dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def invoke(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_BMC_")}
    return subprocess.run([*INVOKE, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _tasks() -> list[str]:
    listing = json.loads(invoke("--list", "--list-format", "json").stdout)
    names = [t["name"] for t in listing["tasks"]]
    names += [f"{c['name']}.{t['name']}" for c in listing["collections"] for t in c["tasks"]]
    return sorted(names)


def test_a_missing_f_file_is_one_error_line(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.yaml"
    result = invoke("-f", str(missing), "config")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: configuration file {missing} (invoke -f) not found"
    ]
    assert result.stdout == ""


def test_every_task_takes_artifacts_dir() -> None:
    tasks = _tasks()
    assert "config.show" in tasks and len(tasks) >= 10
    lacking = [name for name in tasks if "--artifacts-dir" not in invoke("--help", name).stdout]
    assert lacking == []


def test_config_prints_the_given_artifacts_dir(tmp_path: Path) -> None:
    result = invoke("config", "--artifacts-dir", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["artifacts_dir"] == str(tmp_path / "a")


def _pools(tmp_path: Path, pools_yaml: str) -> subprocess.CompletedProcess:
    path = tmp_path / "pools.yaml"
    path.write_text("bmc:\n  vsphere:\n    pools:\n" + pools_yaml)
    return invoke("-f", str(path), "config")


def test_vsphere_pools_replace_the_default_icelake_pool(tmp_path: Path) -> None:
    result = _pools(tmp_path, "      spr: {instance_type: vsphere-vm, cpu_generation: sapphirerapids}\n")
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["vsphere"]["pools"]) == ["spr"]


@pytest.mark.parametrize(
    ("pools_yaml", "pools", "error"),
    [
        (
            "      icelake: null\n      spr: {instance_type: vsphere-vm, cpu_generation: sapphirerapids}\n",
            ["spr"],
            None,
        ),
        ("      icelake: null\n", None, "error: vsphere.pools must name at least one node pool"),
    ],
)
def test_a_null_pool_is_removed(
    tmp_path: Path, pools_yaml: str, pools: list | None, error: str | None
) -> None:
    result = _pools(tmp_path, pools_yaml)
    if error is None:
        assert result.returncode == 0, result.stderr
        assert list(json.loads(result.stdout)["vsphere"]["pools"]) == pools
    else:
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [error]
