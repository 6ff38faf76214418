"""Training on any subset of the 21 classes, staged run directories, resume by time, provenance.

Fast (no TensorFlow): the class-weight map, the too-small rules, the run-directory staging and
the choice of the run ``--resume`` continues. End-to-end training on an imbalanced split with
empty classes is in test_training_subsets.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from contracts.config import MAX_DATA_WORKERS, DataConfig, available_cpus, load_config
from contracts.errors import ConfigError, TrainingError, TrainingInterrupted
from contracts.run_directory import RunDirectory, finished_runs, unfinished_runs
from workloads.classes import CLASS_CODES, NUM_CLASSES
from workloads.data.layout import scan_dataset
from workloads.data.split import build_manifest
from workloads.training.dataset import ABSENT_CLASS_WEIGHT, class_weights
from workloads.training.provenance import TrainingData, effective_config, provenance
from workloads.training.run_start import RunStart
from workloads.training.train import _write_json, resolve_run_dir


def _manifest(tmp_path: Path, write_image, sizes: dict[str, int], source: str = "local"):
    root = tmp_path / "dataset" / "bone_marrow_cell_dataset"
    for code, n in sizes.items():
        (root / code).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / code / f"{code}_{i + 1:05d}.jpg", seed=i)
    scan = scan_dataset(root.parent, workers=2, progress=lambda _: None)
    return build_manifest(scan, seed=1, val_fraction=0.15, test_fraction=0.15, source=source)


# --- class weights over all 21 outputs ------------------------------------------------------------
def test_class_weights_cover_every_output_even_absent_classes():
    counts = [0] * NUM_CLASSES
    counts[CLASS_CODES.index("NGS")] = 400
    counts[CLASS_CODES.index("BLA")] = 100
    counts[CLASS_CODES.index("LYT")] = 25
    weights = class_weights(counts)
    # Keras 2 demands exactly the keys 0 … 20; a gap (an empty class) is what used to crash fit.
    assert sorted(weights) == list(range(NUM_CLASSES))
    present = [CLASS_CODES.index(c) for c in ("NGS", "BLA", "LYT")]
    assert sum(weights[i] for i in present) / 3 == pytest.approx(1.0)
    assert weights[CLASS_CODES.index("LYT")] == pytest.approx(2 * weights[CLASS_CODES.index("BLA")])
    assert weights[CLASS_CODES.index("BLA")] == pytest.approx(2 * weights[CLASS_CODES.index("NGS")])
    absent = [i for i in range(NUM_CLASSES) if i not in present]
    assert {weights[i] for i in absent} == {ABSENT_CLASS_WEIGHT}
    assert sorted(class_weights([0] * NUM_CLASSES)) == list(range(NUM_CLASSES))


def test_keras_accepts_the_weight_map_of_a_split_with_empty_classes():
    """The exact check Keras 2 applies to class_weight (data_adapter), without importing TF."""
    counts = [0, 3, 0, 7] + [0] * (NUM_CLASSES - 4)
    keys = sorted(class_weights(counts))
    assert keys == list(range(len(keys))) and len(keys) == NUM_CLASSES


# --- too small to train -----------------------------------------------------------------------------
def test_a_one_class_split_is_one_clear_error(tmp_path, write_image):
    manifest = _manifest(tmp_path, write_image, {"NGS": 6})
    data = TrainingData.of(manifest, use_class_weights=True)
    with pytest.raises(TrainingError) as info:
        data.check_classes(tmp_path / "split.json")
    message = str(info.value)
    assert "\n" not in message
    assert "training images of 1 class (NGS) only" in message and "at least 2" in message


def test_no_training_image_and_less_than_one_batch_are_errors(tmp_path, write_image):
    empty = TrainingData(
        counts={c: {"train": 0, "val": 0, "test": 0, "total": 0} for c in CLASS_CODES}, weights=None
    )
    with pytest.raises(TrainingError, match="has no training images"):
        empty.check_classes(tmp_path / "split.json")
    manifest = _manifest(tmp_path, write_image, {"NGS": 8, "ABE": 3})
    data = TrainingData.of(manifest, use_class_weights=True)
    data.check_classes(tmp_path / "split.json")  # two classes: fine
    n_train = data.total("train")
    data.check_batch(n_train, n_train, 1)  # exactly one batch: fine
    with pytest.raises(
        TrainingError, match=rf"has {n_train} images, fewer than one batch of 32 .*lower --batch-size"
    ):
        data.check_batch(32, 16, 2)


def test_absent_classes_are_reported(tmp_path, write_image):
    manifest = _manifest(tmp_path, write_image, {"NGS": 10, "BLA": 4, "ABE": 2, "KSC": 1})
    data = TrainingData.of(manifest, use_class_weights=True)
    absent = [c for c in CLASS_CODES if c not in ("NGS", "BLA", "ABE", "KSC")]
    assert list(data.absent("train")) == absent
    line = data.summary_line()
    assert line.startswith("classes: 4/21 with training images; absent from train: ART, BAS")
    assert "keeps all 21 outputs" in line
    assert line.endswith("not in test: KSC")  # one image: train only
    report = data.report()
    assert report["absent_classes"]["train"] == absent
    assert list(report["class_weights"]) == list(CLASS_CODES)
    assert report["class_counts"]["KSC"] == {"train": 1, "val": 0, "test": 0, "total": 1}
    assert TrainingData.of(manifest, use_class_weights=False).report()["class_weights"] is None


# --- provenance -----------------------------------------------------------------------------------------
def test_config_and_provenance_record_the_data_as_used(tmp_path, write_image):
    manifest = _manifest(tmp_path, write_image, {"NGS": 5, "BLA": 3})
    config = load_config({"artifacts_dir": str(tmp_path / "a")})  # data.source defaults to synthetic
    recorded = effective_config(config, manifest)
    assert recorded["data"]["source"] == "local"
    assert recorded["data"]["path"] == str(manifest.dataset_root) != ""
    assert recorded["train"] == json.loads(json.dumps(recorded["train"]))  # plain data
    data = TrainingData.of(manifest, use_class_weights=True)
    record = provenance(
        run_id="r1",
        manifest=manifest,
        manifest_path=tmp_path / "split.json",
        manifest_sha256=manifest.sha256(),
        data=data,
        label_smoothing=0.1,
    )
    assert record["data"]["source"] == "local"
    assert record["data"]["dataset_root"] == str(manifest.dataset_root)
    assert record["data"]["split_manifest_sha256"] == manifest.sha256()
    assert record["class_counts"]["NGS"]["total"] == 5
    assert record["class_weights"]["NGS"] < record["class_weights"]["BLA"]
    assert record["class_weights"]["ABE"] == ABSENT_CLASS_WEIGHT
    assert record["label_smoothing"] == 0.1 and record["started_at"]


# --- staged run directories, resume by time -------------------------------------------------------------
def test_a_new_run_appears_complete_or_not_at_all(tmp_path):
    runs = tmp_path / "runs"
    run = RunDirectory.of(runs, "r1")
    start = RunStart()
    seen = []

    def write(path, payload):
        seen.append(path)
        assert not run.path.exists()  # still staged
        assert path.parent.name.startswith(".r1.staging-")
        _write_json(path, payload)

    start.open_new(run, {run.config: {"a": 1}, run.provenance: {"b": 2}}, write)
    assert len(seen) == 2
    assert json.loads(run.config.read_text()) == {"a": 1}
    assert sorted(p.name for p in runs.iterdir()) == ["r1"]
    # Nothing trained yet: a failure now removes it, and the runs/ folder this process made.
    assert start.discard_unless_started() is False
    assert not runs.exists()


def test_a_staging_failure_leaves_nothing_and_a_started_run_is_kept(tmp_path):
    runs = tmp_path / "runs"
    run = RunDirectory.of(runs, "r2")

    def failing(path, payload):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        RunStart().open_new(run, {run.config: {}}, failing)
    assert not runs.exists()
    runs.mkdir()
    with pytest.raises(OSError, match="disk full"):
        RunStart().open_new(run, {run.config: {}}, failing)
    assert list(runs.iterdir()) == []
    start = RunStart()
    start.open_new(run, {run.config: {}}, _write_json)
    _write_json(run.history, {"epochs": [{"phase": "head", "epoch": 1}]})
    assert start.discard_unless_started() is True
    assert run.config.is_file()
    # A run taken meanwhile is not overwritten.
    with pytest.raises(TrainingError, match="exists; pass --resume"):
        RunStart().open_new(run, {run.config: {}}, _write_json)
    assert [p.name for p in runs.iterdir()] == ["r2"]


def test_resume_without_run_id_picks_the_latest_unfinished_run_by_time(tmp_path):
    runs = tmp_path / "runs"
    now = time.time()
    for name, age in (("zzz-old", 3000), ("aaa-latest", 10), ("mmm", 600)):
        run = RunDirectory.of(runs, name)
        run.checkpoints.mkdir(parents=True)
        _write_json(run.config, {"train": {}})
        backup = run.checkpoints / "head-backup" / "checkpoint"
        backup.parent.mkdir()
        backup.write_text("x")
        for path in (run.config, backup):
            os.utime(path, (now - age, now - age))
    done = RunDirectory.of(runs, "zzzz-finished")
    done.saved_model.mkdir(parents=True)
    done.model_card.write_text("{}")
    (runs / ".zzzzz.staging-1-abc").mkdir()  # a hidden staging folder is never a run
    assert [r.run_id for r in unfinished_runs(runs)] == ["zzz-old", "mmm", "aaa-latest"]
    assert resolve_run_dir(runs, None, resume=True) == runs / "aaa-latest"
    assert [r.run_id for r in finished_runs(runs)] == ["zzzz-finished"]
    # The history written at each epoch end counts as activity too.
    _write_json(RunDirectory.of(runs, "mmm").history, {"epochs": []})
    assert resolve_run_dir(runs, None, resume=True) == runs / "mmm"


def test_recorded_start_time_counts_when_files_are_older(tmp_path):
    runs = tmp_path / "runs"
    old = time.time() - 10_000
    for name in ("a", "b"):
        run = RunDirectory.of(runs, name)
        run.path.mkdir(parents=True)
        _write_json(run.config, {})
        os.utime(run.config, (old, old))
    b = RunDirectory.of(runs, "b")
    _write_json(b.provenance, {"started_at": "2099-01-01T00:00:00+00:00"})
    os.utime(b.provenance, (old - 50, old - 50))
    assert unfinished_runs(runs)[-1].run_id == "b"


def test_run_ids_and_leftover_empty_folders(tmp_path):
    runs = tmp_path / "runs"
    for bad in (".hidden", "a/b", ""):
        with pytest.raises(TrainingError, match="plain folder name"):
            resolve_run_dir(runs, bad, resume=False)
    (runs / "empty").mkdir(parents=True)  # e.g. the mount point the DL1 script creates
    assert resolve_run_dir(runs, "empty", resume=False) == runs / "empty"
    run = RunDirectory.of(runs, "empty")
    RunStart().open_new(run, {run.config: {"x": 1}}, _write_json)
    assert json.loads(run.config.read_text()) == {"x": 1}


def test_interrupt_messages_name_the_resume_command():
    kept = TrainingInterrupted("20260101-120000", resumable=True)
    assert str(kept) == "training interrupted; resume with `invoke train --resume --run-id 20260101-120000`"
    assert TrainingInterrupted.EXIT_CODE == 130
    gone = TrainingInterrupted("x", resumable=False)
    assert "nothing was kept" in str(gone) and "\n" not in str(gone)


# --- data.workers ------------------------------------------------------------------------------------
def test_data_workers_default_to_the_usable_cores_and_are_validated():
    assert DataConfig().workers == available_cpus() >= 1
    if hasattr(os, "sched_getaffinity"):
        assert available_cpus() == len(os.sched_getaffinity(0))
    assert load_config({"data": {"workers": "3"}}).data.workers == 3
    for bad, message in (
        (0, f"data.workers must be between 1 and {MAX_DATA_WORKERS}, got 0"),
        (
            MAX_DATA_WORKERS + 1,
            f"data.workers must be between 1 and {MAX_DATA_WORKERS}, got {MAX_DATA_WORKERS + 1}",
        ),
        ("many", "data.workers must be an integer, got 'many'"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config({"data": {"workers": bad}})
        assert str(info.value) == message


def test_data_task_takes_a_validated_workers_flag(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def invoke(*args):
        return subprocess.run(
            [sys.executable, "-m", "invoke", "--search-root", str(root), *args],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=300,
        )

    shown = invoke("--help", "data")
    assert shown.returncode == 0 and "--workers" in shown.stdout
    assert f"{available_cpus()} here" in " ".join(shown.stdout.split())
    bad = invoke("data", "--workers", "0", "--artifacts-dir", str(tmp_path / "a"))
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        f"error: data.workers must be between 1 and {MAX_DATA_WORKERS}, got 0",
    )
    ok = invoke("data", "--images-per-class", "3", "--workers", "1", "--artifacts-dir", str(tmp_path / "b"))
    assert ok.returncode == 0, ok.stderr
    assert "(1 threads)" in ok.stdout


def test_an_empty_folder_in_the_way_is_kept_when_a_start_fails(tmp_path):
    runs = tmp_path / "runs"
    run = RunDirectory.of(runs, "dl1-run")
    run.path.mkdir(parents=True)  # the DL1 script's mount point
    start = RunStart()
    start.open_new(run, {run.config: {}}, _write_json)
    assert run.config.is_file()
    assert start.discard_unless_started() is False
    assert run.path.is_dir() and list(run.path.iterdir()) == []


def test_resume_refuses_a_different_split_manifest(tmp_path, write_image):
    from workloads.training.train import run_training

    manifest = _manifest(tmp_path, write_image, {"NGS": 5, "BLA": 4})
    config = load_config({"artifacts_dir": str(tmp_path / "a"), "train": {"weights": "none"}})
    manifest.save(config.paths.split_manifest)
    run = RunDirectory.of(config.paths.runs, "r")
    run.path.mkdir(parents=True)
    _write_json(run.config, {"train": {}})
    _write_json(run.provenance, {"data": {"split_manifest_sha256": "0" * 64}})
    with pytest.raises(TrainingError) as info:
        run_training(config, run_id="r", resume=True, progress=lambda _: None)
    assert str(info.value) == (
        f"cannot resume r: it started on split manifest sha256 000000000000…, the manifest is now "
        f"{manifest.sha256()[:12]}… (different data); start a new run"
    )
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "provenance.json"]
