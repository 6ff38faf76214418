"""Two real training processes with MultiWorkerMirroredStrategy on loopback (the DL1 code path).

The 8 Gaudi ranks under mpirun run this path through HPUStrategy (a MultiWorkerMirroredStrategy):
every collective step must run on every worker, only the chief may write the run directory, and
each rank reads its own shard. Here two CPU workers get a TF_CONFIG with free loopback ports and
run the real entry point, ``python -m workloads.training.train``, for a few steps each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from loopback import free_ports

from contracts.run_directory import RunDirectory
from workloads.classes import CLASS_CODES
from workloads.data.manifest import SplitManifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240
RUN_ID = "two-workers"

TRAIN_FLAGS = {
    "backbone": "mobilenet_v3_small",
    "weights": "none",
    "image-size": "32",
    "batch-size": "4",
    "head-epochs": "1",
    "finetune-epochs": "1",
    "cache": "memory",
    "device": "cpu",
    "intra-op-threads": "1",
    "inter-op-threads": "1",
}

# The non-chief runs under this audit hook: every write, rename, mkdir or removal it makes from
# Python under the runs folder is logged (TensorFlow's own C++ writes are checked afterwards by
# listing the run directory).
AUDIT = """
import os, runpy, sys
runs, log = sys.argv.pop(1), sys.argv.pop(1)
WRITES = {"os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.symlink", "os.truncate"}
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "r", args[2] or 0
        writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        paths = [args[0]] if writing else []
    elif event in WRITES:
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        if os.path.abspath(os.fsdecode(path)).startswith(runs):
            with open(log, "a") as f:
                f.write(event + " " + os.fsdecode(path) + "\\n")
sys.addaudithook(hook)
sys.argv[0] = "workloads.training.train"
runpy.run_module("workloads.training.train", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 classes x 7 images of 32 px: a few global batches of 8 per epoch, shards of unequal size."""
    from workloads.data.layout import scan_dataset
    from workloads.data.split import build_manifest
    from workloads.data.synthetic import generate_dataset

    artifacts = tmp_path_factory.mktemp("multiworker")
    dataset = generate_dataset(
        artifacts / "data" / "synthetic", images_per_class=7, image_size=32, seed=1, progress=lambda _: None
    )
    scan = scan_dataset(dataset, workers=2, progress=lambda _: None)
    manifest = build_manifest(scan, seed=42, val_fraction=0.15, test_fraction=0.15, source="synthetic")
    manifest.save(artifacts / "data" / "split.json")
    return artifacts


def _launch(artifacts: Path, tmp: Path) -> list[tuple[subprocess.Popen, Path, Path]]:
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    flags = [f"--{k}={v}" for k, v in TRAIN_FLAGS.items()]
    runs = artifacts / "runs"
    procs = []
    for index in range(2):
        worker_tmp = tmp / f"tmp-worker{index}"
        worker_tmp.mkdir()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "CUDA_VISIBLE_DEVICES": "-1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TMPDIR": str(worker_tmp),
        }
        args = ["--artifacts-dir", str(artifacts), "--run-id", RUN_ID, *flags]
        if index == 0:
            command = [sys.executable, "-m", "workloads.training.train", *args]
        else:
            command = [sys.executable, "-c", AUDIT, str(runs), str(tmp / "audit.log"), *args]
        log = tmp / f"worker{index}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append((proc, log, worker_tmp))
    return procs


def _wait_all(procs: list[tuple[subprocess.Popen, Path, Path]], timeout_s: float) -> list[int | None]:
    """Wait for every worker; kill all of them as soon as one fails or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        codes = [proc.poll() for proc, _, _ in procs]
        if all(code is not None for code in codes) or any(code not in (None, 0) for code in codes):
            break
        time.sleep(0.5)
    codes = [proc.poll() for proc, _, _ in procs]
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return codes


@pytest.fixture(scope="module")
def two_workers(tiny_split: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("workers")
    procs = _launch(tiny_split, tmp)
    started = time.monotonic()
    try:
        codes = _wait_all(procs, TIMEOUT_S)
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
    logs = [log.read_text(errors="replace") for _, log, _ in procs]
    audit = tmp / "audit.log"
    return {
        "codes": codes,
        "logs": logs,
        "seconds": time.monotonic() - started,
        "run": RunDirectory.of(tiny_split / "runs", RUN_ID),
        "audit": audit.read_text().splitlines() if audit.exists() else [],
        "worker_tmp": [worker_tmp for _, _, worker_tmp in procs],
    }


def _tails(result) -> str:
    return "\n".join(
        f"--- worker {i} (exit {c}) ---\n{log[-2500:]}"
        for i, (c, log) in enumerate(zip(result["codes"], result["logs"], strict=True))
    )


def test_both_workers_finish_and_the_run_directory_is_complete(two_workers):
    assert two_workers["codes"] == [0, 0], _tails(two_workers)
    run = two_workers["run"]
    assert run.is_complete()
    chief, other = two_workers["logs"]
    assert "worker 1/2" in chief and "worker 2/2" in other
    assert f"run complete: {run.path}" in chief and "run complete" not in other
    metrics = json.loads(run.metrics.read_text())
    manifest = SplitManifest.load(run.path.parents[1] / "data" / "split.json")
    for split in ("val", "test"):
        # The whole split, each image once (not one worker's shard, not padded).
        assert metrics[split]["n_samples"] == len(manifest.entries(split)) > 0
        assert sum(map(sum, metrics[split]["confusion_matrix"])) == metrics[split]["n_samples"]
    history = json.loads(run.history.read_text())["epochs"]
    assert [(r["phase"], r["epoch"]) for r in history] == [("head", 1), ("finetune", 1)]
    card = json.loads(run.model_card.read_text())
    assert card["classes"] == list(CLASS_CODES) and card["input"]["shape"] == [-1, 32, 32, 3]
    assert run.model_card_markdown.is_file() and run.confusion_matrix.is_file()
    assert run.saved_model_graph.is_file()
    assert (run.checkpoints / "head.weights.h5").is_file()
    assert (run.checkpoints / "finetune.weights.h5").is_file()


def test_each_worker_reads_only_its_shard(two_workers):
    assert two_workers["codes"] == [0, 0], _tails(two_workers)
    shards = [[line for line in log.splitlines() if line.startswith("data: ")] for log in two_workers["logs"]]
    assert all(len(lines) == 1 for lines in shards), shards
    assert "shard 1/2" in shards[0][0] and "shard 2/2" in shards[1][0]


def test_the_non_chief_leaves_nothing_in_the_run_directory(two_workers):
    assert two_workers["codes"] == [0, 0], _tails(two_workers)
    assert two_workers["audit"] == []
    run = two_workers["run"]
    # Only what the chief writes: the files RunDirectory names, no workertemp_1 backup folders,
    # no partial weights, no staging leftovers.
    layout = [getattr(run, name) for name, attr in vars(RunDirectory).items() if isinstance(attr, property)]
    known = {path.name for path in layout if isinstance(path, Path) and path.parent == run.path}
    assert {p.name for p in run.path.iterdir()} <= known
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["finetune.weights.h5", "head.weights.h5"]
    assert not [p for p in run.path.rglob("*") if "workertemp" in p.name or "partial" in p.name]
    # Its temporary copies (weights, checkpoints) are gone too.
    assert list(two_workers["worker_tmp"][1].iterdir()) == []
    assert two_workers["seconds"] < TIMEOUT_S


def test_shards_split_the_files_before_decoding_and_repeat_in_full_batches(tiny_split: Path):
    """build_dataset's sharding, in process: disjoint shards that cover the split, no auto-sharding."""
    from workloads.training import dataset as datasets
    from workloads.training.keras_compat import import_tf_and_keras

    tf, _ = import_tf_and_keras()
    entries = SplitManifest.load(tiny_split / "data" / "split.json").entries("train")
    paths = [str(e.path) for e in entries]
    ids = list(range(len(paths)))  # as labels, so each element names its file

    def shard(index: int, **kw):
        return datasets.build_dataset(
            tf, paths, ids, image_size=32, batch_size=4, training=True, augment_images=False,
            num_shards=2, shard_index=index, **kw,
        )  # fmt: skip

    seen = [[int(y) for _, labels in shard(i) for y in labels.numpy()] for i in (0, 1)]
    assert sorted(seen[0] + seen[1]) == ids and not set(seen[0]) & set(seen[1])
    assert sorted(map(len, seen)) == [len(ids) // 2, (len(ids) + 1) // 2]
    endless = shard(1, repeat=True)
    policy = endless.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.OFF
    batches = [labels.numpy() for _, labels in endless.take(3 * len(ids) // 4)]
    assert {len(b) for b in batches} == {4} and set(np.concatenate(batches)) == set(seen[1])
