"""Invoke CLI of the bone-marrow toolkit. `invoke --list` shows every task; `invoke --help TASK` its flags.

Configuration: typed defaults in workloads/config.py, overridden by `invoke.yaml` (key `bmc`),
then by `INVOKE_BMC_<SECTION>_<KEY>` environment variables, then by the flags below.
The tasks only parse arguments and report; the work happens in `workloads`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, task

from workloads.config import ToolkitConfig, defaults_mapping, load_config, replace
from workloads.errors import ToolkitError

# Settings of the local embedded demo (`invoke pipeline`): synthetic data, no download,
# a short CPU training run. Real runs use `invoke data/train/optimize` with the defaults.
DEMO_TRAIN = {
    "backbone": "mobilenet_v3_small",
    "weights": "none",
    "image_size": 128,
    "head_epochs": 2,
    "finetune_epochs": 4,
    "head_learning_rate": 2e-3,
    "finetune_learning_rate": 1e-3,
}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping) or hasattr(value, "_config"):
        return {k: _plain(value[k]) for k in value}
    return value


def _as_strings(value: Any) -> Any:
    """Defaults as strings for Invoke's config tree.

    Invoke casts an environment variable to the type of the value it overrides, and its casts
    are lax (any non-empty string is a true bool, "abc" for an int is a traceback). As strings,
    every value reaches workloads.config, which parses and validates it with a one-line error.
    """
    if isinstance(value, dict):
        return {k: _as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load(c, artifacts_dir: str | None = None) -> ToolkitConfig:
    """The effective configuration: defaults < invoke.yaml < environment < --artifacts-dir."""
    try:
        mapping = _plain(c.config.get("bmc", {}))
        if artifacts_dir:
            mapping["artifacts_dir"] = artifacts_dir
        return load_config(mapping)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def replace_or_exit(config: ToolkitConfig, section: str, **changes: Any) -> ToolkitConfig:
    """Apply command-line flags (None = not given) to one section; bad values exit with code 2."""
    try:
        return replace(config, section, **changes)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def run_step(step, *args, **kwargs):
    """Run a workloads function; a ToolkitError becomes one line on stderr and exit code 1."""
    try:
        return step(*args, **kwargs)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=1) from None


@task(
    name="prepare",
    default=True,
    help={
        "source": "synthetic (generated offline), local (a copy on disk) or kaggle (needs credentials)",
        "path": "dataset root for --source local (holds bone_marrow_cell_dataset/)",
        "images_per_class": "synthetic images per class",
        "seed": "seed of the generator and of the stratified split",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def data_prepare(c, source=None, path=None, images_per_class=None, seed=None, artifacts_dir=None):
    """Get the dataset (synthetic, local or Kaggle) and write the stratified split manifest."""
    from workloads.data.prepare import prepare_data

    config = load(c, artifacts_dir)
    config = replace_or_exit(
        config, "data", source=source, path=path, synthetic_images_per_class=images_per_class, seed=seed
    )
    run_step(prepare_data, config)


@task(
    name="run",
    default=True,
    help={
        "backbone": "mobilenet_v3_large (default), mobilenet_v3_small, efficientnet_v2_b0 or resnet50",
        "weights": "imagenet, none (offline, random init) or a path to no-top Keras weights",
        "image_size": "square input size in pixels",
        "batch_size": "batch size per replica (global = this x replicas)",
        "head_epochs": "phase 1 epochs (head only on a frozen pretrained backbone)",
        "finetune_epochs": "phase 2 epochs (top of the backbone unfrozen)",
        "device": "auto, cpu, gpu or hpu",
        "run_id": "run directory name under <artifacts>/runs (default: a timestamp)",
        "resume": "continue the given (or the latest unfinished) run after an interruption",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def train_run(
    c,
    backbone=None,
    weights=None,
    image_size=None,
    batch_size=None,
    head_epochs=None,
    finetune_epochs=None,
    device=None,
    run_id=None,
    resume=False,
    artifacts_dir=None,
):
    """Two-phase transfer learning on the split manifest; writes a complete run directory."""
    from workloads.training.train import run_training

    config = load(c, artifacts_dir)
    config = replace_or_exit(
        config,
        "train",
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        batch_size=batch_size,
        head_epochs=head_epochs,
        finetune_epochs=finetune_epochs,
        device=device,
    )
    run_step(run_training, config, run_id=run_id, resume=resume)


@task(
    name="run",
    default=True,
    help={
        "run": "run directory to optimize (default: the newest complete run)",
        "int8_max_drop": "reject INT8 if its test accuracy is more than this many points below FP32",
        "calibration_size": "number of train-split images for INT8 calibration",
        "model_name": "base name in the OVMS repository (<name>-fp32, <name>-int8, …)",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def optimize_run(c, run=None, int8_max_drop=None, calibration_size=None, model_name=None, artifacts_dir=None):
    """OpenVINO IR FP32/FP16, NNCF INT8, evaluation, parity, and OVMS repository publication."""
    from workloads.data.manifest import SplitManifest
    from workloads.optimize.pipeline import latest_run, run_optimize

    config = load(c, artifacts_dir)
    config = replace_or_exit(
        config,
        "optimize",
        int8_max_accuracy_drop=int8_max_drop,
        calibration_size=calibration_size,
        model_name=model_name,
    )
    run_dir = Path(run) if run else run_step(latest_run, config.paths.runs)
    manifest = run_step(SplitManifest.load, config.paths.split_manifest)
    run_step(run_optimize, config, run_dir, manifest)


@task(
    help={
        "images_per_class": "synthetic images per class",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    }
)
def pipeline(c, images_per_class=None, artifacts_dir=None):
    """The local embedded demo: synthetic data → short CPU training → OpenVINO FP32/INT8."""
    from workloads.data.manifest import SplitManifest
    from workloads.data.prepare import prepare_data
    from workloads.optimize.pipeline import run_optimize
    from workloads.training.train import run_training

    config = load(c, artifacts_dir)
    config = replace_or_exit(config, "data", source="synthetic", synthetic_images_per_class=images_per_class)
    config = replace_or_exit(config, "train", **DEMO_TRAIN)
    print("== 1/3 data", flush=True)
    run_step(prepare_data, config)
    print("== 2/3 train", flush=True)
    result = run_step(run_training, config)
    print("== 3/3 optimize", flush=True)
    manifest = run_step(SplitManifest.load, config.paths.split_manifest)
    run_step(run_optimize, config, result.run_dir, manifest)


@task(name="show", default=True)
def config_show(c):
    """Print the effective configuration (defaults < invoke.yaml < INVOKE_BMC_* environment)."""
    import dataclasses
    import json

    print(json.dumps(dataclasses.asdict(load(c)), indent=2))


ns = Collection(pipeline)
ns.add_collection(Collection("data", data_prepare))
ns.add_collection(Collection("train", train_run))
ns.add_collection(Collection("optimize", optimize_run))
ns.add_collection(Collection("config", config_show))
ns.configure({"bmc": _as_strings(defaults_mapping())})
