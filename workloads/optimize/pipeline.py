"""`invoke optimize`: a trained run → OpenVINO FP32/FP16/INT8 IRs, checked, scored and published.

Steps: convert the SavedModel (FP32, FP16-compressed weights) → TF/FP32 parity on a few test
images → INT8 post-training quantization on a class-balanced train subset (with NNCF accuracy
control on the val split unless ``optimize.int8_accuracy_control`` is false) → every variant on
the test split → the INT8 gate (``workloads.optimize.gate``) → each IR's speed on this machine
(``workloads.optimize.speed``; a ``warning:`` when INT8 is not faster) → ``optimization.json`` → publish
all precisions to the OVMS repository together (a precision whose files are byte-identical to
its latest published version reuses that version).

The IRs and the report are built in a staging folder and renamed into place in one step: to
``<run>/openvino`` when every check passes, to ``<run>/openvino-rejected`` (replacing an older
rejected attempt) when one fails. A rejected attempt publishes nothing and leaves the run's
accepted record — ``<run>/openvino`` and the published versions — as it was.

The swap is two renames (the old folder aside as ``.<name>-old-*``, the new one in), so a kill
between them leaves the old folder aside; the next optimize of the run renames it back and
removes staging folders of killed attempts (each live attempt holds a lock on its own), then
cleans the model repository (``workloads.optimize.repository.recover``); both are reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from contracts.config import OptimizeConfig, ToolkitConfig, openvino_properties
from contracts.errors import OptimizationError
from contracts.files import write_json_atomic
from contracts.known_answer import ReferenceImage, StoredKnownAnswer, sha256_bytes
from contracts.model_repository import MODEL_BIN, ModelVersion, execution_precision, served_name
from contracts.run_directory import OPTIMIZATION_REPORT, RunDirectory, finished_runs
from workloads.bench.cpuinfo import cpu_info
from workloads.classes import CLASS_CODES
from workloads.images import decode_batch, load_batch
from workloads.optimize.convert import INPUT_NAME, OUTPUT_NAME, convert_saved_model, save_ir
from workloads.optimize.evaluate import Predictor, evaluate_variants, openvino_predictor, tensorflow_predictor
from workloads.optimize.gate import GateBudgets, Int8Gate, check_int8_gate
from workloads.optimize.parity import ParityResult, check_parity
from workloads.optimize.quantize import PRESET_NAME, quantize_int8
from workloads.optimize.repository import publish, published_entry, recover
from workloads.optimize.selection import LabelledImage, SplitEntries, class_balanced_sample
from workloads.optimize.speed import measure_speed
from workloads.progress import Progress, print_progress
from workloads.telemetry import opt_out_of_openvino_telemetry

REFERENCE = "tf"
# Test images whose answers are stored with each published version (at least bench.known_answer_images).
KNOWN_ANSWER_IMAGES = 8
# 2: "int8_gate" (every rule and figure) replaces "int8_budget"; "published" entries say "unchanged".
# Since 2 also "speed" (each IR's images/s on the build machine, what it executed in): an addition.
REPORT_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class TrainedRun:
    directory: RunDirectory
    run_id: str
    image_size: int
    classes: tuple[str, ...]
    card: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.directory.path

    @property
    def saved_model(self) -> Path:
        return self.directory.saved_model

    @property
    def model_card(self) -> Path:
        return self.directory.model_card


@dataclass(frozen=True)
class VariantResult:
    precision: str  # "tf" (the SavedModel reference), "fp32", "fp16" or "int8"
    path: Path  # the SavedModel folder or the IR's model.xml
    metrics: dict[str, Any]  # workloads.metrics.classification_metrics on the test split


@dataclass(frozen=True)
class OptimizeResult:
    run_dir: Path
    report_path: Path
    variants: dict[str, VariantResult]
    parity: ParityResult
    int8_gate: Int8Gate | None  # None when int8 is not among optimize.precisions
    published: tuple[ModelVersion, ...]
    # Names (<model>-<precision>) whose latest version held byte-identical files and was reused.
    unchanged: frozenset[str] = frozenset()


def latest_run(runs_dir: Path) -> Path:
    """The most recently finished run (model_card.json is written last by training)."""
    candidates = finished_runs(runs_dir)
    if not candidates:
        raise OptimizationError(f"no trained run in {runs_dir}; run `invoke train` first")
    return max(candidates, key=lambda r: (r.model_card.stat().st_mtime_ns, r.run_id)).path


def load_trained_run(run_dir: Path) -> TrainedRun:
    run = RunDirectory(Path(run_dir))
    run_dir = run.path
    if not run_dir.is_dir():
        raise OptimizationError(f"run directory {run_dir} does not exist; run `invoke train` first")
    if not run.saved_model.is_dir():
        raise OptimizationError(
            f"{run_dir} has no {run.saved_model.name}/; the run is unfinished — rerun `invoke train`"
        )
    card_path = run.model_card
    if not card_path.is_file():
        raise OptimizationError(
            f"{run_dir} has no {card_path.name}; the run is unfinished — rerun `invoke train`"
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        image_size = int(card["image_size"])
        classes = tuple(str(c) for c in card["classes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OptimizationError(
            f"{card_path} is not a valid model card ({type(exc).__name__}: {exc})"
        ) from None
    if classes != CLASS_CODES:
        raise OptimizationError(
            f"{card_path} lists {len(classes)} classes that differ from workloads.classes.CLASS_CODES; "
            "the run was trained with another class list — retrain it"
        )
    return TrainedRun(run, str(card.get("run_id", run.run_id)), image_size, classes, card)


def run_optimize(
    config: ToolkitConfig, run_dir: Path, manifest: SplitEntries, *, progress: Progress = print_progress
) -> OptimizeResult:
    opt_out_of_openvino_telemetry()
    opt = config.optimize
    run = load_trained_run(run_dir)
    precisions = list(dict.fromkeys(opt.precisions))
    GateBudgets.from_config(opt).check_classes(run.classes)
    test = _split(manifest, "test", len(run.classes))
    calibration = (
        class_balanced_sample(_split(manifest, "train", len(run.classes)), opt.calibration_size)
        if "int8" in precisions
        else []
    )
    validation = accuracy_control_images(opt, manifest) if "int8" in precisions else []
    progress(
        f"optimize: run {run.run_id} · {', '.join(precisions)} · {len(test)} test images · "
        f"image size {run.image_size}"
    )

    recover_run_dir(run.directory, progress)
    recover(config.paths.model_repository, opt.model_name, precisions, progress=progress)

    out_dir = run.directory.openvino
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{STAGING_INFIX}", dir=run.run_dir))
    staging.chmod(0o755)
    staging_lock = _lock_dir(staging)  # tells recover_run_dir of another optimize that it is live
    try:
        outcome = _build_and_check(
            opt, run, precisions, test, calibration, validation, staging, progress, _Speed.of(config)
        )
        _replace_dir(staging, run.directory.openvino_rejected if outcome.failure else out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if staging_lock is not None:
            os.close(staging_lock)
    if outcome.failure:
        progress(f"report: {run.directory.rejected_optimization_report} (rejected)")
        raise OptimizationError(outcome.failure)
    report_path = run.directory.optimization_report
    progress(f"report: {report_path}")

    published = publish(
        config.paths.model_repository,
        opt.model_name,
        {p: out_dir / p for p in precisions},
        run.model_card,
        progress=progress,
        known_answers=stored_known_answers(
            opt.model_name,
            {p: out_dir / p / "model.xml" for p in precisions},
            class_balanced_sample(test, max(KNOWN_ANSWER_IMAGES, config.bench.known_answer_images)),
            run.image_size,
            run.classes,
            _server_properties(config),
        ),
    )
    outcome.report["published"] = [
        published_entry(m, unchanged=m.name in published.unchanged) for m in published
    ]
    write_json_atomic(report_path, outcome.report)
    return OptimizeResult(
        run.run_dir,
        report_path,
        outcome.variants,
        outcome.parity,
        outcome.gate,
        tuple(published),
        published.unchanged,
    )


def stored_known_answers(
    model_name: str,
    irs: dict[str, Path],
    images: Sequence[LabelledImage],
    image_size: int,
    classes: Sequence[str],
    properties: dict[str, Any],
) -> dict[str, StoredKnownAnswer]:
    """Each accepted IR's answers for fixed test images, stored with its published version.

    ``invoke bench`` checks a served model against these (``known_answer.json``) rather than against
    the file it serves, so a damaged or swapped model cannot agree with itself. They are computed
    with the local server's compile ``properties`` (``serving.*``, as OVMS names them) and the
    variant's pinned INFERENCE_PRECISION_HINT (f32), so a server on this machine answers the same
    up to thread scheduling, whatever the CPU's default precision.
    """
    encoded = [Path(e.path).read_bytes() for e in images]
    tensors = decode_batch(encoded, image_size)
    cpu = cpu_info()
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    references = [
        ReferenceImage(sha256_bytes(data), str(e.path), int(e.label))
        for data, e in zip(encoded, images, strict=True)
    ]
    answers = {}
    for precision, xml in irs.items():
        pinned = {**properties, "INFERENCE_PRECISION_HINT": execution_precision(precision)}
        compiled = ov.Core().compile_model(str(xml), "CPU", pinned)
        probabilities = np.asarray(compiled({INPUT_NAME: tensors})[compiled.output(OUTPUT_NAME)], np.float32)
        answers[precision] = StoredKnownAnswer(
            model=served_name(model_name, precision),
            precision=precision,
            image_size=image_size,
            images=tuple(references),
            classes=tuple(classes),
            probabilities=tuple(tuple(float(v) for v in row) for row in probabilities),
            computed_by=f"invoke optimize: OpenVINO {ov.get_version()} in process, {pinned}",
            created_at=created,
            cpu={"cpu_model": cpu["cpu_model"], "flags": cpu["flags"]},
        )
    return answers


def accuracy_control_images(opt: OptimizeConfig, manifest: SplitEntries) -> list[LabelledImage]:
    """The val images NNCF's accuracy control scores INT8 on; [] only when it is switched off.

    No budget turns it off — 0 asks for no drop at all — only ``optimize.int8_accuracy_control:
    false`` does, and a split without val images is an error rather than a silent plain PTQ.
    """
    if not opt.int8_accuracy_control:
        return []
    sample = class_balanced_sample(list(manifest.entries("val")), opt.accuracy_control_images)
    if not sample:
        raise OptimizationError(
            "NNCF accuracy control needs val images but the split manifest has none; rebuild it "
            "with `invoke data`, or set optimize.int8_accuracy_control: false to quantize without it"
        )
    return sample


def _server_properties(config: ToolkitConfig) -> dict[str, Any]:
    serving = config.serving
    return openvino_properties(serving.performance_hint, serving.num_streams, serving.inference_threads)


@dataclass(frozen=True)
class _Speed:
    """How the speed check compiles and feeds each IR: as the local server, at bench.batch_size."""

    batch_size: int
    server_properties: dict[str, Any]

    @classmethod
    def of(cls, config: ToolkitConfig) -> _Speed:
        return cls(config.bench.batch_size, _server_properties(config))

    def properties_for(self, precision: str) -> dict[str, Any]:
        return {**self.server_properties, "INFERENCE_PRECISION_HINT": execution_precision(precision)}


@dataclass
class _Outcome:
    report: dict[str, Any]
    parity: ParityResult
    variants: dict[str, VariantResult]
    gate: Int8Gate | None
    failure: str | None


def _build_and_check(
    opt: OptimizeConfig,
    run: TrainedRun,
    precisions: Sequence[str],
    test: list[LabelledImage],
    calibration: list[LabelledImage],
    validation: list[LabelledImage],
    staging: Path,
    progress: Progress,
    speed: _Speed | None = None,
) -> _Outcome:
    progress(f"convert: {run.saved_model} → OpenVINO IR {ov.get_version()}")
    fp32_model = convert_saved_model(run.saved_model, run.image_size, len(run.classes))
    irs: dict[str, Path] = {}
    # FP32 always: it is the reference for parity and for the INT8 budget.
    for precision in ("fp32", "fp16") if "fp16" in precisions else ("fp32",):
        irs[precision] = save_ir(fp32_model, staging / precision, compress_to_fp16=precision == "fp16")
        progress(f"convert: {precision} IR, weights {_megabytes(irs[precision])}")

    reference = tensorflow_predictor(run.saved_model)
    predictors: dict[str, Predictor] = {REFERENCE: reference, "fp32": openvino_predictor(irs["fp32"])}
    parity_entries = class_balanced_sample(test, opt.parity_images)
    parity = check_parity(
        reference,
        predictors["fp32"],
        load_batch([Path(e.path) for e in parity_entries], run.image_size),
        opt.parity_tolerance,
    )
    progress(
        f"parity: TF vs FP32 IR on {parity.n_images} images · max |Δprob| {parity.max_abs_diff:.2e} "
        f"(tolerance {parity.tolerance:g}) · top-1 agrees {parity.top1_agreement}/{parity.n_images}"
    )
    report = _report_header(opt, run, len(test), parity)
    if not parity.passed:
        return _finish(report, run, staging, parity, {}, None, parity.failure_message())

    if "int8" in precisions:
        report["quantization"] = {
            "tool": "nncf",
            "preset": PRESET_NAME,
            "calibration_split": "train",
            "calibration_images": len(calibration),
            "selection": "class-balanced round robin, each class in path order",
            # null only when optimize.int8_accuracy_control is false.
            "accuracy_control": (
                {"split": "val", "images": len(validation), "max_drop_points": opt.int8_max_accuracy_drop}
                if validation
                else None
            ),
        }
        if not validation:
            progress("int8: NNCF accuracy control is off (optimize.int8_accuracy_control: false)")
        int8_model = quantize_int8(
            fp32_model,
            [Path(e.path) for e in calibration],
            run.image_size,
            progress=progress,
            validation=[(Path(e.path), int(e.label)) for e in validation],
            max_drop_points=opt.int8_max_accuracy_drop,
        )
        # As OpenVINO saves NNCF models by default: quantized weights int8, the few others fp16.
        irs["int8"] = save_ir(int8_model, staging / "int8", compress_to_fp16=True)
        progress(f"int8: IR weights {_megabytes(irs['int8'])}")
    for precision in ("fp16", "int8"):
        if precision in irs:
            predictors[precision] = openvino_predictor(irs[precision])

    metrics = evaluate_variants(predictors, test, run.image_size, run.classes, progress=progress)
    for name, m in metrics.items():
        progress(
            f"{name}: accuracy {m['accuracy']:.4f} · balanced accuracy {m['balanced_accuracy']:.4f} · "
            f"macro-F1 {m['macro_f1']:.4f} ({m['n_samples']} images)"
        )

    gate = None
    if "int8" in metrics:
        gate = check_int8_gate(metrics["fp32"], metrics["int8"], GateBudgets.from_config(opt))
        report["int8_gate"] = gate.as_dict()
        for line in gate.progress_lines():
            progress(line)
    failure = None if gate is None or gate.accepted else gate.rejection_message()
    if speed is not None and opt.speed_seconds > 0:
        batch = load_batch([Path(test[i % len(test)].path) for i in range(speed.batch_size)], run.image_size)
        report["speed"] = measure_speed(
            irs, batch, seconds=opt.speed_seconds, properties_for=speed.properties_for, progress=progress
        ).as_dict()

    # Paths as they will be once the staging folder is renamed into place.
    variants = {REFERENCE: VariantResult(REFERENCE, run.saved_model, metrics[REFERENCE])}
    final_dir = run.directory.openvino_rejected if failure else run.directory.openvino
    variants.update(
        {p: VariantResult(p, final_dir / xml.relative_to(staging), metrics[p]) for p, xml in irs.items()}
    )
    report["variants"] = {name: _variant_entry(v, run.run_dir, irs) for name, v in variants.items()}
    return _finish(report, run, staging, parity, variants, gate, failure)


def _finish(
    report: dict[str, Any],
    run: TrainedRun,
    staging: Path,
    parity: ParityResult,
    variants: dict[str, VariantResult],
    gate: Int8Gate | None,
    failure: str | None,
) -> _Outcome:
    if failure:
        accepted = run.directory.optimization_report
        kept = (
            f"the accepted record {accepted} and the published versions are unchanged"
            if accepted.is_file()
            else "the run has no accepted optimization yet"
        )
        advice = (
            " — raise the budget named, enlarge optimize.calibration_size, or leave int8 out of "
            "optimize.precisions"
            if gate is not None and not gate.accepted
            else ""
        )
        failure = (
            f"{failure}; nothing was published and {kept} "
            f"(this attempt: {run.directory.rejected_optimization_report}){advice}"
        )
    report["status"] = "rejected" if failure else "accepted"
    report["error"] = failure
    write_json_atomic(staging / OPTIMIZATION_REPORT, report)
    return _Outcome(report, parity, variants, gate, failure)


def _report_header(opt: OptimizeConfig, run: TrainedRun, n_test: int, parity: ParityResult) -> dict[str, Any]:
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run_id": run.run_id,
        "model_name": opt.model_name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "image_size": run.image_size,
        "classes": list(run.classes),
        "split_manifest_sha256": run.card.get("split_manifest_sha256"),
        "test_images": n_test,
        "settings": _plain(dataclasses.asdict(opt)),
        "versions": _versions(),
        "parity": parity.as_dict(),
        "quantization": None,
        "variants": {},
        "int8_gate": None,
        "speed": None,  # workloads.optimize.speed; null when optimize.speed_seconds is 0
        "status": None,
        "error": None,
        "published": [],
    }


def _variant_entry(variant: VariantResult, run_dir: Path, staged_irs: dict[str, Path]) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": variant.path.relative_to(run_dir).as_posix()}
    if variant.precision == REFERENCE:
        entry["format"] = "tensorflow_saved_model"
    else:
        entry["format"] = "openvino_ir"
        entry["bin_bytes"] = staged_irs[variant.precision].with_name(MODEL_BIN).stat().st_size
    entry["metrics"] = variant.metrics
    return entry


def _split(manifest: SplitEntries, split: str, num_classes: int) -> list[LabelledImage]:
    entries = list(manifest.entries(split))
    if not entries:
        raise OptimizationError(f"the split manifest has no {split} images; rebuild it with `invoke data`")
    bad = next((e for e in entries if not 0 <= int(e.label) < num_classes), None)
    if bad is not None:
        raise OptimizationError(
            f"{bad.path} has label {bad.label}, outside the model's {num_classes} classes"
        )
    return entries


STAGING_INFIX = "-staging-"  # .openvino-staging-*: an attempt being built
ASIDE_INFIX = "-old-"  # .openvino-old-*, .openvino-rejected-old-*: the previous folder during a swap


def _swap_step(name: str) -> None:
    """Called between the two renames of a swap; tests inject faults (an exception, a SIGKILL) here."""


def _lock_dir(folder: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``folder`` (released on close or death)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def recover_run_dir(run: RunDirectory, progress: Progress = print_progress) -> list[str]:
    """Undo what killed optimize attempts left in a run directory; returns one note per action.

    A swap killed between its renames left ``openvino/`` (or ``openvino-rejected/``) aside: the
    newest aside folder is renamed back. Other aside folders and the staging folders of attempts
    that are no longer running (no lock on them) are removed."""
    notes: list[str] = []
    for target in (run.openvino, run.openvino_rejected):
        asides = sorted(run.path.glob(f".{target.name}{ASIDE_INFIX}*"), key=lambda p: p.stat().st_mtime)
        if asides and not target.exists():
            asides.pop().rename(target)
            notes.append(f"restored {target.name}/ (an optimize was killed while replacing it)")
        for aside in asides:
            shutil.rmtree(aside, ignore_errors=True)
            notes.append(f"removed {aside.name}")
    for staging in sorted(run.path.glob(f".{run.openvino.name}{STAGING_INFIX}*")):
        lock = _lock_dir(staging)
        if lock is None:
            continue  # another optimize of this run is building it now
        try:
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            os.close(lock)
        notes.append(f"removed {staging.name} (a killed optimize's staging folder)")
    if notes:
        progress(f"cleaned up {run.path}: " + "; ".join(notes))
    return notes


def _replace_dir(staging: Path, target: Path) -> None:
    """Swap ``staging`` in as ``target`` by two renames; a previous ``target`` is put aside first and
    removed only after the swap (a kill in between leaves it aside for :func:`recover_run_dir`)."""
    old = None
    if target.exists():
        suffix = staging.name.rsplit("-", 1)[-1]
        old = target.with_name(f".{target.name}{ASIDE_INFIX}{suffix}")
        target.rename(old)
        _swap_step("aside")
    try:
        staging.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"openvino": ov.get_version()}
    for package in ("nncf",):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    tf = sys.modules.get("tensorflow")
    versions["tensorflow"] = getattr(tf, "__version__", None)
    return versions


def _megabytes(xml: Path) -> str:
    return f"{xml.with_name(MODEL_BIN).stat().st_size / 1e6:.2f} MB"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
