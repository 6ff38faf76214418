"""Optimization logic that needs neither TensorFlow nor a real model."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.config import ToolkitConfig
from contracts.errors import OptimizationError
from workloads.classes import CLASS_CODES
from workloads.optimize.evaluate import evaluate_variants
from workloads.optimize.parity import compare_probabilities
from workloads.optimize.pipeline import latest_run, load_trained_run, run_optimize
from workloads.optimize.quantize import CalibrationImages
from workloads.optimize.selection import class_balanced_sample


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int


class FakeManifest:
    def __init__(self, **splits: list[Entry]):
        self._splits = splits

    def entries(self, split: str) -> list[Entry]:
        return list(self._splits.get(split, []))


# --- subsets --------------------------------------------------------------------------------


def test_class_balanced_sample_round_robins_over_classes_in_path_order():
    entries = [Entry(Path(f"/d/{c}{i}.jpg"), label) for label, c in enumerate("ABC") for i in range(3)]
    entries.append(Entry(Path("/d/Z0.jpg"), 20))  # a rare class still gets picked in the first round
    chosen = class_balanced_sample(list(reversed(entries)), 6)
    assert [e.path.name for e in chosen] == ["A0.jpg", "B0.jpg", "C0.jpg", "Z0.jpg", "A1.jpg", "B1.jpg"]
    assert class_balanced_sample(entries, 6) == chosen  # independent of the input order
    assert len(class_balanced_sample(entries, 100)) == len(entries)
    assert class_balanced_sample([], 5) == []


# --- parity ---------------------------------------------------------------------------------


def test_parity_passes_within_tolerance_with_the_same_top1():
    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    result = compare_probabilities(reference, reference + 4e-4, tolerance=1e-3)
    assert result.passed
    assert result.max_abs_diff == pytest.approx(4e-4)
    assert result.as_dict()["top1_agreement"] == 2


def test_parity_fails_over_tolerance_and_names_the_max_difference():
    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    candidate = reference.copy()
    candidate[1] = [0.1, 0.12, 0.78]
    result = compare_probabilities(reference, candidate, tolerance=1e-3)
    assert not result.passed
    assert "max |Δprob| 0.02 (tolerance 0.001)" in result.failure_message()
    assert "top-1 agrees on 2/2" in result.failure_message()


def test_parity_fails_when_top1_flips_even_within_tolerance():
    reference = np.array([[0.5001, 0.4999, 0.0]])
    candidate = np.array([[0.4999, 0.5001, 0.0]])
    result = compare_probabilities(reference, candidate, tolerance=1e-3)
    assert result.max_abs_diff <= result.tolerance
    assert not result.passed
    assert "top-1 agrees on 0/1" in result.failure_message()


def test_parity_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        compare_probabilities(np.zeros((2, 3)), np.zeros((3, 3)), 1e-3)


# --- evaluation plumbing with fake predictors -------------------------------------------------


@pytest.fixture
def images(tmp_path):
    """Five small JPEGs: a dark one is class 0, a bright one class 1."""
    entries = []
    for i, (value, label) in enumerate([(10, 0), (240, 1), (20, 0), (230, 1), (250, 1)]):
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(path)
        entries.append(Entry(path, label))
    return entries


def _brightness_classifier(batch: np.ndarray) -> np.ndarray:
    assert batch.shape[1:] == (8, 8, 3) and batch.dtype == np.float32
    bright = batch.mean(axis=(1, 2, 3)) > 127
    probs = np.zeros((len(batch), len(CLASS_CODES)), np.float32)
    probs[np.arange(len(batch)), bright.astype(int)] = 1.0
    return probs


def test_evaluate_variants_feeds_the_same_batches_to_every_predictor(images):
    messages = []
    always_zero = lambda batch: np.eye(len(CLASS_CODES), dtype=np.float32)[np.zeros(len(batch), int)]  # noqa: E731
    metrics = evaluate_variants(
        {"good": _brightness_classifier, "zero": always_zero},
        images,
        8,
        CLASS_CODES,
        batch_size=2,
        progress=messages.append,
    )
    assert metrics["good"]["accuracy"] == 1.0
    assert metrics["good"]["n_samples"] == 5
    assert metrics["zero"]["accuracy"] == pytest.approx(2 / 5)
    assert metrics["zero"]["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["zero"]["per_class"][CLASS_CODES[1]]["recall"] == 0.0
    assert messages[-1] == "evaluate: 5/5 test images through good, zero"


def test_evaluate_variants_rejects_a_predictor_with_the_wrong_batch_size(images):
    with pytest.raises(OptimizationError, match="returned shape"):
        evaluate_variants({"bad": lambda b: np.zeros((1, 21))}, images, 8, CLASS_CODES, progress=print)


def test_calibration_images_decode_lazily_and_can_be_iterated_twice(images):
    messages = []
    source = CalibrationImages([e.path for e in images], 8, messages.append, report_every=2)
    first = list(source)
    second = list(source)
    assert len(source) == 5
    assert [a.shape for a in first] == [(1, 8, 8, 3)] * 5
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert messages[:3] == [
        "int8: calibration image 2/5",
        "int8: calibration image 4/5",
        "int8: calibration image 5/5",
    ]


# --- run selection and run-directory errors ---------------------------------------------------


def _fake_run(runs: Path, name: str, mtime: int, *, card: bool = True, saved_model: bool = True) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    if saved_model:
        (run / "saved_model").mkdir()
    if card:
        path = run / "model_card.json"
        path.write_text(json.dumps({"run_id": name, "image_size": 32, "classes": list(CLASS_CODES)}))
        os.utime(path, ns=(mtime, mtime))
    return run


def test_latest_run_picks_the_most_recently_finished_complete_run(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "20240101-000000", 1_000)
    newest = _fake_run(runs, "my-named-run", 3_000)
    _fake_run(runs, "20250101-000000", 2_000)
    _fake_run(runs, "20260101-000000", 9_000, saved_model=False)  # unfinished: no SavedModel
    _fake_run(runs, "20270101-000000", 0, card=False)  # unfinished: no model card
    (runs / "notes.txt").write_text("not a run")
    assert latest_run(runs) == newest


@pytest.mark.parametrize("make", ["missing", "empty", "incomplete"])
def test_latest_run_without_a_trained_run_says_to_train_first(tmp_path, make):
    runs = tmp_path / "runs"
    if make != "missing":
        runs.mkdir()
    if make == "incomplete":
        _fake_run(runs, "r", 0, card=False)
    with pytest.raises(OptimizationError, match=r"^no trained run in .*runs; run `invoke train` first$"):
        latest_run(runs)


def test_load_trained_run_reads_image_size_and_classes(tmp_path):
    run = load_trained_run(_fake_run(tmp_path, "r1", 0))
    assert (run.run_id, run.image_size, run.classes) == ("r1", 32, CLASS_CODES)
    assert run.saved_model == tmp_path / "r1" / "saved_model"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no-dir", r"run directory .* does not exist; run `invoke train` first"),
        ("no-saved-model", r"has no saved_model/; the run is unfinished"),
        ("no-card", r"has no model_card.json; the run is unfinished"),
        ("bad-json", r"model_card.json is not a valid model card \(JSONDecodeError"),
        ("no-size", r"model_card.json is not a valid model card \(KeyError"),
        ("other-classes", r"lists 3 classes that differ from workloads.classes.CLASS_CODES"),
    ],
)
def test_broken_run_directories_are_one_line_errors(tmp_path, breakage, message):
    run = tmp_path / "run"
    if breakage != "no-dir":
        _fake_run(tmp_path, "run", 0, saved_model=breakage != "no-saved-model", card=breakage != "no-card")
    card = run / "model_card.json"
    if breakage == "bad-json":
        card.write_text("{")
    elif breakage == "no-size":
        card.write_text(json.dumps({"classes": list(CLASS_CODES)}))
    elif breakage == "other-classes":
        card.write_text(json.dumps({"image_size": 32, "classes": ["A", "B", "C"]}))
    with pytest.raises(OptimizationError, match=message) as info:
        run_optimize(ToolkitConfig(artifacts_dir=str(tmp_path / "a")), run, FakeManifest(), progress=print)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"train": [Entry(Path("/x.jpg"), 0)]}, "the split manifest has no test images"),
        ({"test": [Entry(Path("/x.jpg"), 0)]}, "the split manifest has no train images"),
        ({"test": [Entry(Path("/x.jpg"), 21)], "train": []}, "has label 21, outside the model's 21 classes"),
        # INT8 with accuracy control on (the default) and no val split: refused, not quietly plain PTQ.
        (
            {"test": [Entry(Path("/x.jpg"), 0)], "train": [Entry(Path("/y.jpg"), 0)]},
            r"accuracy control needs val images .* optimize.int8_accuracy_control: false",
        ),
    ],
)
def test_unusable_manifest_splits_fail_before_any_conversion(tmp_path, splits, message):
    run = _fake_run(tmp_path, "run", 0)
    with pytest.raises(OptimizationError, match=message):
        run_optimize(
            ToolkitConfig(artifacts_dir=str(tmp_path / "a")), run, FakeManifest(**splits), progress=print
        )
    assert not (run / "openvino").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".openvino")]


def _speed(fp32: float, int8: float):
    from workloads.optimize.speed import SpeedReport, VariantSpeed

    def variant(precision: str, ips: float) -> VariantSpeed:
        return VariantSpeed(precision, ips, 10.0, 40, 3.0, 4, "f32", {"f32": 9})

    return SpeedReport(16, 3.0, {}, {"fp32": variant("fp32", fp32), "int8": variant("int8", int8)})


def test_the_speed_report_warns_when_int8_is_not_faster():
    slower = _speed(fp32=200.0, int8=180.0)
    assert slower.int8_speedup == pytest.approx(0.9)
    assert slower.progress_lines()[-1].startswith(
        "warning: INT8 is not faster than FP32 on this machine (0.90×"
    )
    assert slower.as_dict()["warning"] == slower.warning and slower.as_dict()["int8_speedup"] == 0.9
    faster = _speed(fp32=200.0, int8=420.0)
    assert faster.warning is None and faster.as_dict()["int8_speedup"] == 2.1
    assert not any(line.startswith("warning:") for line in faster.progress_lines())
    assert faster.progress_lines()[-1] == "speed: INT8 2.10× FP32 images/s on this machine"


def test_speed_seconds_zero_skips_and_bounds_are_one_line_errors():
    from contracts.config import OptimizeConfig
    from contracts.errors import ConfigError

    OptimizeConfig(speed_seconds=0).validate()
    with pytest.raises(ConfigError, match=r"^optimize.speed_seconds must be in \[0, 60\]"):
        OptimizeConfig(speed_seconds=-1).validate()
