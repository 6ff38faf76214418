"""Two-phase transfer learning with checkpoints, resume and a complete run directory.

Phase 1 trains the head on a frozen pretrained backbone; phase 2 unfreezes the top of the
backbone at a lower learning rate (the reference went from ~70% to ~76% this way). Each phase
checkpoints every epoch (``BackupAndRestore``) so an interrupted run resumes where it stopped.

Usable without Invoke: ``python -m workloads.training.train --help`` (the DL1 image runs this).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.config import ToolkitConfig, TrainConfig, load_config
from contracts.errors import ToolkitError, TrainingError
from contracts.files import write_json_atomic
from contracts.run_directory import RunDirectory
from workloads.classes import CLASS_CODES, NUM_CLASSES
from workloads.metrics import classification_metrics
from workloads.progress import Progress, print_progress
from workloads.training import dataset as datasets
from workloads.training.devices import configure_cpu_threads_env, select_device
from workloads.training.keras_compat import import_tf_and_keras, keras_version
from workloads.training.model import OUTPUT_NAME, build_model, freeze_for_head_training, unfreeze_top
from workloads.training.report import model_card, model_card_markdown, save_confusion_matrix

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
    if resume:
        if run_id:
            run = RunDirectory.of(runs_dir, run_id)
            if not run.path.is_dir():
                raise TrainingError(f"cannot resume: no run {run_id!r} in {runs_dir}")
            if run.is_complete():
                raise TrainingError(f"run {run_id!r} is already complete; start a new run instead")
            return run.path
        candidates = sorted(p for p in runs_dir.glob("*") if p.is_dir() and not RunDirectory(p).is_complete())
        if not candidates:
            raise TrainingError(f"nothing to resume: no unfinished run in {runs_dir}")
        return candidates[-1]
    run_dir = RunDirectory.of(runs_dir, run_id or new_run_id()).path
    if run_dir.exists():
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
    from workloads.data.manifest import SplitManifest

    train_cfg = config.train
    manifest_path = Path(manifest_path or config.paths.split_manifest)
    runs_dir = Path(runs_dir or config.paths.runs)
    manifest = SplitManifest.load(manifest_path)
    splits = {name: manifest.entries(name) for name in ("train", "val", "test")}
    if not splits["train"]:
        raise TrainingError(f"the split manifest {manifest_path} has no training images")
    run = RunDirectory(resolve_run_dir(runs_dir, run_id, resume))
    run_dir = run.path
    _check_resume_config(run, train_cfg)

    configure_cpu_threads_env(train_cfg.intra_op_threads, train_cfg.inter_op_threads, os.environ)
    tf, keras = import_tf_and_keras()
    keras.utils.set_random_seed(train_cfg.seed)
    device = select_device(
        tf,
        train_cfg.device,
        intra_op_threads=train_cfg.intra_op_threads,
        inter_op_threads=train_cfg.inter_op_threads,
    )
    progress(
        f"device: {device.kind} · replicas {device.replicas} · policy {device.precision_policy} · "
        f"worker {device.worker_index + 1}/{device.workers} · "
        f"TensorFlow {tf.__version__} · Keras {keras_version(keras)}"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    if device.is_chief:
        _write_json(run.config, dataclasses.asdict(config))

    global_batch = train_cfg.batch_size * device.replicas
    use_cache = _use_cache(train_cfg, len(splits["train"]) + len(splits["val"]))
    train_ds, val_ds, test_ds = (
        datasets.build_dataset(
            tf,
            [str(e.path) for e in splits[name]],
            [e.label for e in splits[name]],
            image_size=train_cfg.image_size,
            batch_size=global_batch,
            training=name == "train",
            augment_images=train_cfg.augment,
            cache=use_cache and name != "test",
            seed=train_cfg.seed,
        )
        if splits[name]
        else None
        for name in ("train", "val", "test")
    )
    counts = [manifest.class_counts("train").get(code, 0) for code in CLASS_CODES]
    weights = datasets.class_weights(counts) if train_cfg.class_weights else None
    progress(
        f"data: train {len(splits['train'])} · val {len(splits['val'])} · "
        f"test {len(splits['test'])} images · "
        f"batch {global_batch} · cache {'memory' if use_cache else 'off'}"
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
                loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"],
            )
        backup_dir = run.checkpoints / f"{phase}-backup"
        if backup_dir.exists():
            progress(f"phase {number} ({phase}): resuming from the last completed epoch in {backup_dir}")
        callbacks = [
            keras.callbacks.BackupAndRestore(backup_dir=str(backup_dir)),
            _epoch_progress(keras, progress, phase, number, epochs, len(splits["train"]), history, run),
            *extra_callbacks,
        ]
        built.model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            class_weight=weights,
            callbacks=callbacks,
            verbose=0,
        )
        if device.is_chief:
            done_weights.parent.mkdir(parents=True, exist_ok=True)
            built.model.save_weights(str(done_weights))

    if not device.is_chief:
        return TrainResult(run_dir=run_dir, metrics={}, saved_model=run.saved_model)

    progress("evaluating on the test split …")
    metrics: dict[str, Any] = {"history": history}
    for name, ds in (("val", val_ds), ("test", test_ds)):
        if ds is not None:
            metrics[name] = _evaluate(built.model, ds, splits[name])
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
    export_saved_model(tf, keras, built.model, train_cfg, saved_model)
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
    )
    run.model_card_markdown.write_text(model_card_markdown(card))
    _write_json(run.model_card, card)  # last: marks the run complete
    progress(f"run complete: {run_dir}")
    return TrainResult(run_dir=run_dir, metrics=metrics, saved_model=saved_model)


def export_saved_model(tf: Any, keras: Any, model: Any, train_cfg: TrainConfig, target: Path) -> None:
    """Export an fp32 SavedModel with a named serving signature, atomically.

    The graph is rebuilt under the float32 policy so a bf16/fp16-trained model serves in fp32
    (OpenVINO chooses its own inference precision).
    """
    keras.mixed_precision.set_global_policy("float32")
    export = build_model(
        keras,
        backbone=train_cfg.backbone,
        image_size=train_cfg.image_size,
        num_classes=NUM_CLASSES,
        weights="none",
    ).model
    export.set_weights(model.get_weights())
    size = train_cfg.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image):
        return {OUTPUT_NAME: export(image, training=False)}

    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(export, str(staging), signatures={"serving_default": serve})
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


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


def _check_resume_config(run: RunDirectory, train_cfg: TrainConfig) -> None:
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
) -> Any:
    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
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
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
