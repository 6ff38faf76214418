"""Two-phase transfer learning with checkpoints, resume and a complete run directory.

Phase 1 trains the head on a frozen pretrained backbone; phase 2 unfreezes the top of the
backbone at a lower learning rate (the reference went from ~70% to ~76% this way). Each phase
checkpoints every epoch (``BackupAndRestore``) so an interrupted run resumes where it stopped.

Usable without Invoke: ``python -m workloads.training.train --help`` (the DL1 image runs this).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.config import ToolkitConfig, TrainConfig, load_config
from contracts.errors import ToolkitError, TrainingError, TrainingInterrupted
from contracts.files import write_json_atomic
from contracts.run_directory import RunDirectory, unfinished_runs
from workloads.classes import CLASS_CODES, NUM_CLASSES
from workloads.metrics import classification_metrics
from workloads.progress import Progress, print_progress
from workloads.training import dataset as datasets
from workloads.training.devices import DeviceSetup, cluster_from_env, configure_cpu_threads_env, select_device
from workloads.training.keras_compat import import_tf_and_keras, keras_version
from workloads.training.losses import training_loss
from workloads.training.model import OUTPUT_NAME, build_model, freeze_for_head_training, unfreeze_top
from workloads.training.provenance import TrainingData, effective_config, provenance
from workloads.training.provenance import now as provenance_now
from workloads.training.report import model_card, model_card_markdown, save_confusion_matrix
from workloads.training.run_start import RunStart

# Fields that must match when resuming: they change the graph or the data.
RESUME_INVARIANTS = ("backbone", "weights", "image_size", "batch_size", "seed")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    saved_model: Path


def new_run_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def resolve_run_dir(runs_dir: Path, run_id: str | None, resume: bool) -> Path:
    """The run to write: ``run_id``, or for ``resume`` without one the most recently active
    unfinished run (by the time of its last history/checkpoint write, not by name)."""
    if run_id is not None and (not run_id or run_id.startswith(".") or "/" in run_id or os.sep in run_id):
        raise TrainingError(f"--run-id must be a plain folder name not starting with '.', got {run_id!r}")
    if resume:
        if run_id:
            run = RunDirectory.of(runs_dir, run_id)
            if not run.path.is_dir():
                raise TrainingError(f"cannot resume: no run {run_id!r} in {runs_dir}")
            if run.is_complete():
                raise TrainingError(f"run {run_id!r} is already complete; start a new run instead")
            return run.path
        candidates = unfinished_runs(runs_dir)
        if not candidates:
            raise TrainingError(f"nothing to resume: no unfinished run in {runs_dir}")
        return candidates[-1].path
    run_dir = RunDirectory.of(runs_dir, run_id or new_run_id()).path
    # An empty folder is no run (the DL1 script creates the mount point); the staged run replaces it.
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise TrainingError(
            f"run directory {run_dir} exists; pass --resume to continue it or choose another --run-id"
        )
    return run_dir


def run_training(
    config: ToolkitConfig,
    *,
    manifest_path: Path | None = None,
    runs_dir: Path | None = None,
    run_id: str | None = None,
    resume: bool = False,
    progress: Progress = print_progress,
    extra_callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train on the split manifest into ``runs/<run_id>`` (see :mod:`workloads.training.run_start`).

    A failure or Ctrl-C before the first epoch is checkpointed leaves nothing behind; Ctrl-C
    later raises :class:`TrainingInterrupted`, whose message names the resume command.
    """
    start = RunStart()
    try:
        return _run_training(
            config,
            start,
            manifest_path=manifest_path,
            runs_dir=runs_dir,
            run_id=run_id,
            resume=resume,
            progress=progress,
            extra_callbacks=extra_callbacks,
        )
    except KeyboardInterrupt:
        resumable = start.discard_unless_started()
        raise TrainingInterrupted(start.run_id, resumable=resumable) from None
    except BaseException:
        start.discard_unless_started()
        raise


def _run_training(
    config: ToolkitConfig,
    start: RunStart,
    *,
    manifest_path: Path | None,
    runs_dir: Path | None,
    run_id: str | None,
    resume: bool,
    progress: Progress,
    extra_callbacks: Sequence[Any],
) -> TrainResult:
    from workloads.data.manifest import SplitManifest

    train_cfg = config.train
    manifest_path = Path(manifest_path or config.paths.split_manifest)
    runs_dir = Path(runs_dir or config.paths.runs)
    manifest = SplitManifest.load(manifest_path)
    splits = {name: manifest.entries(name) for name in ("train", "val", "test")}
    data = TrainingData.of(manifest, use_class_weights=train_cfg.class_weights)
    data.check_classes(manifest_path)
    manifest_sha256 = manifest.sha256()
    _, workers = cluster_from_env(os.environ)
    if workers > 1 and not run_id and not resume:
        # A timestamp id could differ between workers started a second apart.
        raise TrainingError(
            f"multi-worker training ({workers} workers) needs --run-id, the same on every worker"
        )
    run = RunDirectory(resolve_run_dir(runs_dir, run_id, resume))
    run_dir = run.path
    start.attach(run)
    _check_resume_config(run, train_cfg, manifest_sha256)

    configure_cpu_threads_env(train_cfg.intra_op_threads, train_cfg.inter_op_threads, os.environ)
    tf, keras = import_tf_and_keras()
    keras.utils.set_random_seed(train_cfg.seed)
    device = select_device(
        tf,
        train_cfg.device,
        intra_op_threads=train_cfg.intra_op_threads,
        inter_op_threads=train_cfg.inter_op_threads,
        worker_port=train_cfg.worker_port,
    )
    progress(
        f"device: {device.kind} · replicas {device.replicas} · policy {device.precision_policy} · "
        f"worker {device.worker_index + 1}/{device.workers} · "
        f"TensorFlow {tf.__version__} · Keras {keras_version(keras)}"
    )
    global_batch = train_cfg.batch_size * device.replicas
    data.check_batch(global_batch, train_cfg.batch_size, device.replicas)
    if device.is_chief:
        _open_run(start, run, resume, config, manifest, manifest_path, manifest_sha256, data)
    # All ranks of a host together cache every train and val image once (each its own shard).
    use_cache = _use_cache(train_cfg, len(splits["train"]) + len(splits["val"]))
    # What fit sees: this worker's shard, repeated in full global batches for a fixed number of
    # steps, so no replica ever gets a partial or empty batch and every worker runs the same
    # steps (the collectives of a step need them all). One process is the 1-shard case.
    train_ds, val_ds = (
        datasets.build_dataset(
            tf,
            [str(e.path) for e in splits[name]],
            [e.label for e in splits[name]],
            image_size=train_cfg.image_size,
            batch_size=global_batch,
            training=name == "train",
            augment_images=train_cfg.augment,
            cache=use_cache,
            seed=train_cfg.seed,
            num_shards=device.workers,
            shard_index=device.worker_index,
            repeat=True,
        )
        # Every worker needs at least one image of the split (a smaller val split is only
        # evaluated at the end, not during fit).
        if len(splits[name]) >= device.workers
        else None
        for name in ("train", "val")
    )
    steps = {"train": max(1, len(splits["train"]) // global_batch)}
    steps["val"] = max(1, math.ceil(len(splits["val"]) / global_batch))
    # Keyed over all 21 outputs, absent classes included (see datasets.class_weights).
    weights = dict(data.weights) if data.weights is not None else None
    progress(data.summary_line())
    progress(
        f"data: train {len(splits['train'])} · val {len(splits['val'])} · "
        f"test {len(splits['test'])} images · "
        f"batch {global_batch} ({train_cfg.batch_size} x {device.replicas} replicas) · "
        f"{steps['train']} steps per epoch · shard {device.worker_index + 1}/{device.workers} · "
        f"cache {'memory' if use_cache else 'off'}"
    )

    keras.mixed_precision.set_global_policy(device.precision_policy)
    with device.strategy.scope():
        built = build_model(
            keras,
            backbone=train_cfg.backbone,
            image_size=train_cfg.image_size,
            num_classes=NUM_CLASSES,
            weights=train_cfg.weights,
        )
    if not built.pretrained:
        progress("weights: random initialisation, so the whole backbone trains in both phases")

    history: dict[str, list] = _load_history(run)
    phases = (
        ("head", train_cfg.head_epochs, train_cfg.head_learning_rate),
        ("finetune", train_cfg.finetune_epochs, train_cfg.finetune_learning_rate),
    )
    for number, (phase, epochs, learning_rate) in enumerate(phases, start=1):
        done_weights = run.checkpoints / f"{phase}.weights.h5"
        if phase == "head":
            freeze_for_head_training(built)
        else:
            trainable = unfreeze_top(keras, built, train_cfg.finetune_fraction)
            progress(f"phase {number}: {trainable}/{len(built.backbone.layers)} backbone layers trainable")
        if epochs == 0:
            continue
        if done_weights.exists():
            built.model.load_weights(str(done_weights))
            progress(f"phase {number} ({phase}) already complete — loaded {done_weights.name}")
            continue
        with device.strategy.scope():
            built.model.compile(
                optimizer=keras.optimizers.Adam(learning_rate),
                loss=training_loss(
                    tf, keras, label_smoothing=train_cfg.label_smoothing, num_classes=NUM_CLASSES
                ),
                metrics=["accuracy"],
            )
        backup_dir = run.checkpoints / f"{phase}-backup"
        if backup_dir.exists():
            progress(f"phase {number} ({phase}): resuming from the last completed epoch in {backup_dir}")
        # Every worker backs up (BackupAndRestore is collective); Keras lets only the chief write
        # backup_dir, the others a workertemp_<i> folder in it that they remove again.
        # The same callbacks on every worker (they decide which collectives run); only the chief's
        # epoch progress writes history.json and prints.
        images = steps["train"] * global_batch
        callbacks = [
            keras.callbacks.BackupAndRestore(backup_dir=str(backup_dir)),
            _epoch_progress(keras, progress, phase, number, epochs, images, history, run, device.is_chief),
        ]
        built.model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            steps_per_epoch=steps["train"],
            validation_steps=steps["val"] if val_ds is not None else None,
            class_weight=weights,
            callbacks=[*callbacks, *extra_callbacks],
            verbose=0,
        )
        _save_weights(built.model, done_weights, device.is_chief)
        if device.is_chief:  # the backup is gone (Keras removes it after fit); so is its folder
            with contextlib.suppress(OSError):
                backup_dir.rmdir()

    # Collective, on every worker: reading the trained weights all-reduces BatchNorm's moving
    # statistics. From here on nothing is distributed: the chief evaluates and exports a float32
    # copy (exactly the SavedModel it serves) while the others wait for it at the end.
    trained_weights = built.model.get_weights()
    if not device.is_chief:
        _wait_for_all_workers(tf, device)
        return TrainResult(run_dir=run_dir, metrics={}, saved_model=run.saved_model)
    serving = _float32_model(keras, train_cfg, trained_weights)
    val_ds, test_ds = (
        datasets.build_dataset(
            tf,
            [str(e.path) for e in splits[name]],
            [e.label for e in splits[name]],
            image_size=train_cfg.image_size,
            batch_size=train_cfg.batch_size,
            training=False,
            cache=False,
        )
        if splits[name]
        else None
        for name in ("val", "test")
    )

    progress("evaluating on the test split …")
    metrics: dict[str, Any] = {"history": history, "data": data.report()}
    for name, ds in (("val", val_ds), ("test", test_ds)):
        if ds is not None:
            metrics[name] = _evaluate(serving, ds, splits[name])
    eval_split = "test" if "test" in metrics else "val" if "val" in metrics else None
    if eval_split:
        figures = metrics[eval_split]
        progress(
            f"{eval_split}: accuracy {figures['accuracy']:.4f} · balanced accuracy "
            f"{figures['balanced_accuracy']:.4f} · macro-F1 {figures['macro_f1']:.4f}"
        )
        save_confusion_matrix(
            figures["confusion_matrix"],
            CLASS_CODES,
            run.confusion_matrix,
            title=f"{train_cfg.backbone} · {eval_split} split · run {run.run_id}",
        )
    _write_json(run.metrics, metrics)

    saved_model = run.saved_model
    save_serving_model(tf, serving, train_cfg.image_size, saved_model)
    card = model_card(
        model_name=config.optimize.model_name,
        run_id=run.run_id,
        backbone=train_cfg.backbone,
        weights=train_cfg.weights,
        image_size=train_cfg.image_size,
        classes=CLASS_CODES,
        split_manifest=manifest_path.resolve(),
        split_manifest_sha256=manifest.sha256(),
        metrics={k: _headline(v) for k, v in metrics.items() if k in ("val", "test")},
        framework={"tensorflow": tf.__version__, "keras": keras_version(keras), "device": device.kind},
        training_data=data.report(),
    )
    run.model_card_markdown.write_text(model_card_markdown(card))
    _write_json(run.model_card, card)  # last: marks the run complete
    progress(f"run complete: {run_dir}")
    _wait_for_all_workers(tf, device)
    return TrainResult(run_dir=run_dir, metrics=metrics, saved_model=saved_model)


def export_saved_model(tf: Any, keras: Any, model: Any, train_cfg: TrainConfig, target: Path) -> None:
    """Export an fp32 SavedModel with a named serving signature, atomically.

    The graph is rebuilt under the float32 policy so a bf16/fp16-trained model serves in fp32
    (OpenVINO chooses its own inference precision).
    """
    export = _float32_model(keras, train_cfg, model.get_weights())
    save_serving_model(tf, export, train_cfg.image_size, target)


def _float32_model(keras: Any, train_cfg: TrainConfig, weights: list[Any]) -> Any:
    """A copy of the trained model outside any distribution strategy, under the float32 policy.

    Evaluation and export use it: no collective runs, so the chief alone can, and the figures in
    metrics.json are those of the SavedModel that is served (not of the bf16/fp16 graph).
    """
    keras.mixed_precision.set_global_policy("float32")
    model = build_model(
        keras,
        backbone=train_cfg.backbone,
        image_size=train_cfg.image_size,
        num_classes=NUM_CLASSES,
        weights="none",
    ).model
    model.set_weights(weights)
    return model


def save_serving_model(tf: Any, export: Any, size: int, target: Path) -> None:
    """Save a float32 Keras model as a SavedModel with the ``image`` → ``probabilities`` signature."""

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image):
        return {OUTPUT_NAME: export(image, training=False)}

    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(export, str(staging), signatures={"serving_default": serve})
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _save_weights(model: Any, target: Path, is_chief: bool) -> None:
    """Collective: every worker calls it (reading the weights all-reduces BatchNorm's statistics).

    The chief writes ``target`` (staged, then renamed: a half-written file never marks a phase
    done); any other worker writes to a temporary directory outside the run and deletes it, as the
    TensorFlow multi-worker guide prescribes for non-chief saves.
    """
    if not is_chief:
        with tempfile.TemporaryDirectory(prefix="bmc-worker-weights-") as scratch:
            model.save_weights(str(Path(scratch) / target.name))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # The same suffix as the target: Keras picks the file format (and so the order in which it
    # reads, i.e. all-reduces, the weights) from it, and every worker must use the same one.
    partial = target.with_name(f".partial-{target.name}")
    model.save_weights(str(partial))
    os.replace(partial, target)


def _wait_for_all_workers(tf: Any, device: DeviceSetup) -> None:
    """A barrier at the end (a collective all-reduce): the other workers wait for the chief.

    They stay in the cluster until the chief has evaluated and written the run directory, so it
    never loses a peer mid-way; if the chief fails, this collective fails too and they exit non-zero.
    """
    if device.workers <= 1:
        return
    strategy = device.strategy

    @tf.function
    def barrier():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    barrier()


def _evaluate(model: Any, ds: Any, entries: Sequence[Any]) -> dict[str, Any]:
    probabilities = model.predict(ds, verbose=0)
    y_pred = np.argmax(probabilities, axis=1)
    y_true = np.asarray([e.label for e in entries])
    if len(y_pred) != len(y_true):
        raise TrainingError(
            f"{len(y_true) - len(y_pred)} evaluation images could not be decoded; rebuild the split manifest"
        )
    return classification_metrics(y_true, y_pred, CLASS_CODES)


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: figures[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "per_class") if k in figures}


def _use_cache(train_cfg: TrainConfig, num_images: int) -> bool:
    if train_cfg.cache == "auto":
        return datasets.cache_fits_in_memory(num_images, train_cfg.image_size)
    return train_cfg.cache == "memory"


def _check_resume_config(run: RunDirectory, train_cfg: TrainConfig, manifest_sha256: str = "") -> None:
    saved = run.config
    if not saved.is_file():
        return
    previous = json.loads(saved.read_text()).get("train", {})
    for key in RESUME_INVARIANTS:
        if key in previous and previous[key] != getattr(train_cfg, key):
            raise TrainingError(
                f"cannot resume {run.run_id}: "
                f"train.{key} was {previous[key]!r}, now {getattr(train_cfg, key)!r}"
            )
    recorded = _read_provenance(run).get("data", {}).get("split_manifest_sha256")
    if manifest_sha256 and recorded and recorded != manifest_sha256:
        raise TrainingError(
            f"cannot resume {run.run_id}: it started on split manifest sha256 {recorded[:12]}…, "
            f"the manifest is now {manifest_sha256[:12]}… (different data); start a new run"
        )


def _read_provenance(run: RunDirectory) -> dict[str, Any]:
    try:
        recorded = json.loads(run.provenance.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _open_run(
    start: RunStart,
    run: RunDirectory,
    resume: bool,
    config: ToolkitConfig,
    manifest: Any,
    manifest_path: Path,
    manifest_sha256: str,
    data: TrainingData,
) -> None:
    """Chief only: stage and move a new run into place, or refresh a resumed run's records."""
    record = provenance(
        run_id=run.run_id,
        manifest=manifest,
        manifest_path=manifest_path,
        manifest_sha256=manifest_sha256,
        data=data,
        label_smoothing=config.train.label_smoothing,
    )
    if not resume:
        files = {run.config: effective_config(config, manifest), run.provenance: record}
        start.open_new(run, files, _write_json)
        return
    start.open_resumed(run)
    previous = _read_provenance(run)
    record["started_at"] = previous.get("started_at", "")  # "" for a run from before provenance.json
    record["resumed_at"] = [*previous.get("resumed_at", []), provenance_now()]
    _write_json(run.config, effective_config(config, manifest))
    _write_json(run.provenance, record)


def _load_history(run: RunDirectory) -> dict[str, list]:
    path = run.history
    return json.loads(path.read_text()) if path.is_file() else {"epochs": []}


def _epoch_progress(
    keras: Any,
    progress: Progress,
    phase: str,
    number: int,
    epochs: int,
    n_train: int,
    history: dict[str, Any],
    run: RunDirectory,
    is_chief: bool = True,
) -> Any:
    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if not is_chief:
                return
            logs = logs or {}
            seconds = time.perf_counter() - self._start
            row = {"phase": phase, "epoch": epoch + 1, "seconds": round(seconds, 2)}
            row["images_per_second"] = round(n_train / seconds, 1) if seconds else None
            row.update({k: float(v) for k, v in logs.items()})
            history["epochs"] = [
                r for r in history["epochs"] if not (r["phase"] == phase and r["epoch"] == epoch + 1)
            ] + [row]
            _write_json(run.history, history)
            val = ""
            if "val_accuracy" in logs:
                val = f" · val_loss {logs['val_loss']:.3f} val_acc {logs['val_accuracy']:.3f}"
            progress(
                f"phase {number} ({phase}) epoch {epoch + 1}/{epochs} · "
                f"loss {logs.get('loss', float('nan')):.3f} "
                f"acc {logs.get('accuracy', float('nan')):.3f}{val} · "
                f"{seconds:.1f}s · {row['images_per_second']} img/s"
            )

    return EpochProgress()


def _write_json(path: Path, payload: Any) -> None:
    write_json_atomic(path, payload, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | Path):
        return list(value) if isinstance(value, tuple) else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.training.train", description="Train the bone-marrow cell classifier."
    )
    parser.add_argument("--artifacts-dir", default="artifacts", help="root of data/, runs/ and models/")
    parser.add_argument("--manifest", type=Path, help="split manifest (default: <artifacts>/data/split.json)")
    parser.add_argument("--runs-dir", type=Path, help="where run directories go (default: <artifacts>/runs)")
    parser.add_argument("--run-id", help="name of the run directory (default: a timestamp)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            help=f"train.{f.name} (default {f.default!r})",
        )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        config = load_config(
            {
                "artifacts_dir": args.artifacts_dir,
                "train": {k: v for k, v in overrides.items() if v is not None},
            }
        )
        run_training(
            config,
            manifest_path=args.manifest,
            runs_dir=args.runs_dir,
            run_id=args.run_id,
            resume=args.resume,
        )
    except TrainingInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return TrainingInterrupted.EXIT_CODE
    except KeyboardInterrupt:  # before training began (configuration), so nothing to resume
        print("error: interrupted", file=sys.stderr)
        return TrainingInterrupted.EXIT_CODE
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
