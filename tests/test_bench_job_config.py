"""The in-cluster bench Job runs with the complete resolved configuration, not a subset of flags.

The Job is rendered from a non-default configuration, its ConfigMap is written where the pod mounts
it, and the bench container's own command line (its Invoke options, then `config.show` in place of
the task) runs with the container's environment and nothing else, from a folder that holds only
tasks.py, as the image's /app does. What it prints must be the configuration the Job was rendered
from, with the artifacts tree where the pod mounts it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from contracts.config import ToolkitConfig, load_config
from workloads.k8s.bench_job import ARTIFACTS, CONFIG_DIR, BenchJobSpec, PvcArtifacts, render_bench_job

ROOT = Path(__file__).resolve().parents[1]

NON_DEFAULT = {
    "optimize": {"model_name": "marrow-x"},
    "serving": {"performance_hint": "LATENCY", "num_streams": 2, "nireq": 3},
    "bench": {
        "protocol": "rest",
        "precision": "fp32",
        "warmup_seconds": 0.5,
        "min_requests": 7,
        "known_answer_images": 3,
        "request_timeout_seconds": 12.5,
        "usd_per_hour": {"c6i": 0.085},
    },
    # One pool only: the default c5 pool must not come back inside the pod.
    "aws": {"pools": {"c6i": {"instance_type": "c6i.xlarge", "cpu_generation": "icelake"}}},
}


def rendered_job(config: ToolkitConfig, out_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = BenchJobSpec(
        pool="c6i", image="r/bench:1", artifacts=PvcArtifacts(claim="bench-pvc"), target="aws"
    )
    path = render_bench_job(config, target="aws", spec=spec, out_dir=out_dir)
    documents = list(yaml.safe_load_all(path.read_text()))
    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    (job,) = [d for d in documents if d["kind"] == "Job"]
    return config_map, job


def bench_container(job: dict[str, Any]) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    (bench,) = [c for c in pod["initContainers"] + pod["containers"] if c["name"] == "bench"]
    return bench


def run_as_the_pod(config_map: dict[str, Any], job: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The container's Invoke options with `config.show` as the task, in the container's environment."""
    bench = bench_container(job)
    pod = job["spec"]["template"]["spec"]
    (mount,) = [m for m in bench["volumeMounts"] if m["mountPath"] == CONFIG_DIR]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    mounted = tmp_path / "mounted"
    for item in volume["configMap"]["items"]:
        (mounted / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (mounted / item["path"]).write_text(config_map["data"][item["key"]])
    command = bench["command"]
    task = command.index("bench")
    options = [arg.replace(CONFIG_DIR, str(mounted)) for arg in command[1:task]]
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "tasks.py", app / "tasks.py")
    env = {e["name"]: e["value"] for e in bench["env"]}
    env["HOME"] = str(tmp_path)  # /tmp in the pod
    env["PATH"] = os.environ.get("PATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *options, "config.show"],
        capture_output=True,
        text=True,
        env=env,
        cwd=app,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def test_the_pod_runs_with_the_configuration_the_job_was_rendered_from(tmp_path: Path) -> None:
    config = load_config(NON_DEFAULT)
    config_map, job = rendered_job(config, tmp_path / "manifests")
    shown = run_as_the_pod(config_map, job, tmp_path)
    expected = json.loads(
        json.dumps(dataclasses.asdict(dataclasses.replace(config, artifacts_dir=ARTIFACTS)))
    )
    assert shown == expected
    assert shown["optimize"]["model_name"] == "marrow-x"
    assert list(shown["aws"]["pools"]) == ["c6i"]


def test_settings_travel_in_the_file_never_as_flags(tmp_path: Path) -> None:
    config = load_config(NON_DEFAULT)
    _config_map, job = rendered_job(config, tmp_path)
    command = bench_container(job)["command"]
    after_task = command[command.index("bench") + 1 :]
    flags = [arg for arg in after_task if arg.startswith("--")]
    assert flags == ["--endpoint", "--target", "--pool", "--print-result"]
    # bench.protocol (rest here) picks the Service port the endpoint names.
    assert after_task[1] == "http://ovms-c6i.bone-marrow.svc.cluster.local:8000"


def test_a_user_config_replaces_free_key_mappings_instead_of_merging(tmp_path: Path) -> None:
    """invoke.yaml naming one pool gets that pool only (Invoke merges mappings key by key)."""
    (tmp_path / "tasks.py").write_text((ROOT / "tasks.py").read_text())
    (tmp_path / "invoke.yaml").write_text(yaml.safe_dump({"bmc": NON_DEFAULT}))
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "config.show"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert list(shown["aws"]["pools"]) == ["c6i"]
    assert list(shown["vsphere"]["pools"]) == list(ToolkitConfig().vsphere.pools)
    assert shown["bench"]["usd_per_hour"] == {"c6i": 0.085}
