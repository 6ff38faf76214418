"""The Invoke CLI as a user runs it: task list, configuration layers, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def invoke(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*INVOKE, *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=300
    )


def test_list_shows_every_task_with_a_description():
    result = invoke("--list")
    assert result.returncode == 0, result.stderr
    for entry in (
        "pipeline",
        "data.prepare (data)",
        "train.run (train)",
        "optimize.run (optimize)",
        "config.show",
    ):
        assert entry in result.stdout
    listing = json.loads(invoke("--list", "--list-format", "json").stdout)
    tasks = {t["name"]: t["help"] for t in listing["tasks"]}
    tasks.update({f"{c['name']}.{t['name']}": t["help"] for c in listing["collections"] for t in c["tasks"]})
    assert set(tasks) >= {
        "pipeline",
        "up",
        "down",
        "data.prepare",
        "train.run",
        "optimize.run",
        "bench.run",
        "bench.report",
        "k8s.render",
        "images.build",
        "images.push",
        "config.show",
    }
    assert all(help_text for help_text in tasks.values()), tasks


def test_help_documents_each_flag():
    result = invoke("--help", "train")
    assert result.returncode == 0
    for flag in ("--backbone", "--weights", "--image-size", "--resume", "--run-id", "--device"):
        assert flag in result.stdout
    assert "imagenet, none (offline, random init)" in result.stdout


def test_configuration_layers_file_then_environment(tmp_path):
    config_file = tmp_path / "runtime.yaml"
    config_file.write_text("bmc:\n  train:\n    backbone: resnet50\n  optimize:\n    model_name: bmc-test\n")
    result = invoke("-f", str(config_file), "config", env={"INVOKE_BMC_TRAIN_BATCH_SIZE": "64"})
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["train"]["backbone"] == "resnet50"
    assert effective["train"]["batch_size"] == 64
    assert effective["optimize"]["model_name"] == "bmc-test"
    assert effective["train"]["image_size"] == 224  # untouched default
    no_augment = json.loads(invoke("config", env={"INVOKE_BMC_TRAIN_AUGMENT": "false"}).stdout)
    assert no_augment["train"]["augment"] is False


def test_invalid_setting_is_one_line_and_exit_code_2(tmp_path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("bmc:\n  train:\n    backbone: vgg\n")
    result = invoke("-f", str(config_file), "config")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: train.backbone must be one of mobilenet_v3_large, mobilenet_v3_small, "
        "efficientnet_v2_b0, resnet50; got 'vgg'"
    ]
    for variable, value, message in (
        ("INVOKE_BMC_TRAIN_BATCH_SIZE", "abc", "error: train.batch_size must be an integer, got 'abc'"),
        ("INVOKE_BMC_TRAIN_AUGMENT", "maybe", "error: train.augment must be true or false, got 'maybe'"),
    ):
        from_env = invoke("config", env={variable: value})
        assert (from_env.returncode, from_env.stderr.strip()) == (2, message)
    flag = invoke("train", "--batch-size", "abc", "--artifacts-dir", str(tmp_path))
    assert flag.returncode == 2
    assert flag.stderr.strip() == "error: train.batch_size must be an integer, got 'abc'"
    missing_path = invoke("data", "--source", "local", "--artifacts-dir", str(tmp_path))
    assert missing_path.returncode == 2
    assert missing_path.stderr.strip() == "error: data.path is required when data.source is 'local'"
    assert not any(tmp_path.glob("artifacts*"))


def test_failed_steps_exit_1_with_one_line_and_write_nothing(tmp_path):
    result = invoke("optimize", "--artifacts-dir", str(tmp_path / "a"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: no trained run in")
    assert len(result.stderr.strip().splitlines()) == 1
    local = invoke(
        "data",
        "--source",
        "local",
        "--path",
        str(tmp_path / "nowhere"),
        "--artifacts-dir",
        str(tmp_path / "a"),
    )
    assert local.returncode == 1
    assert len(local.stderr.strip().splitlines()) == 1 and local.stderr.startswith("error: ")
    assert not (tmp_path / "a" / "data" / "split.json").exists()


def test_data_task_writes_the_split_manifest(tmp_path):
    result = invoke("data", "--images-per-class", "3", "--artifacts-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "data" / "split.json").read_text())
    assert manifest["source"] == "synthetic"
    assert sum(c["total"] for c in manifest["counts"].values()) == 63
    assert "wrote split manifest" in result.stdout


def test_bench_on_a_cluster_target_needs_its_recorded_endpoints(tmp_path):
    result = invoke("bench", "--target", "aws", "--artifacts-dir", str(tmp_path / "a"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: no endpoints recorded for aws ({tmp_path / 'a' / 'deploy' / 'aws' / 'endpoints.json'}); "
        "run `invoke up --target aws`"
    )
    unknown = invoke("bench", "--target", "gcp")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown target 'gcp'")


def test_up_vsphere_checks_its_inputs_before_touching_anything(tmp_path):
    creds = {"EKSA_VSPHERE_USERNAME": "u", "EKSA_VSPHERE_PASSWORD": "p"}
    result = invoke("up", "--target", "vsphere", "--artifacts-dir", str(tmp_path), env=creds)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: up --target vsphere needs the models: --model-bucket (ovms.eksa_model_delivery=secret-sync) "
        "or --model-image (baked)"
    )
    result = invoke("up", "--target", "vsphere", "--dry-run", "--artifacts-dir", str(tmp_path), env=creds)
    assert result.returncode == 1 and result.stderr.strip() == (
        "error: vsphere.server is not set; give the vCenter host name or address"
    )
    assert not (tmp_path / "deploy").exists()


def test_down_vsphere_without_a_cluster(tmp_path):
    creds = {"EKSA_VSPHERE_USERNAME": "u", "EKSA_VSPHERE_PASSWORD": "p"}
    result = invoke("down", "--target", "vsphere", "--artifacts-dir", str(tmp_path), env=creds)
    assert result.returncode == 1 and "no EKS Anywhere cluster recorded under" in result.stderr


def test_dry_run_is_refused_for_a_target_without_one(tmp_path):
    # `invoke up --target aws --dry-run` itself: tests/test_deploy_aws_dry_run.py (offline, no pin).
    local = invoke("up", "--target", "local", "--dry-run", "--artifacts-dir", str(tmp_path))
    assert local.returncode == 2
    assert local.stderr.strip() == "error: --dry-run applies to --target aws or vsphere, not local"


def test_ctrl_c_anywhere_in_a_bench_is_one_line_and_exit_130():
    # Invoke turns a KeyboardInterrupt outside run_step (the task's imports, between pools) into
    # exit 1 without a word; the bench task's body maps it itself.
    sys.path.insert(0, str(ROOT))
    try:
        import pytest
        from invoke import Exit

        import tasks
    finally:
        sys.path.remove(str(ROOT))

    def body(c):
        raise KeyboardInterrupt

    with pytest.raises(Exit) as stopped:
        tasks.interruptible(body)(None)
    assert (stopped.value.message, stopped.value.code) == ("error: interrupted", 130)
    assert tasks.bench_run.body.__wrapped__.__name__ == "bench_run"
