"""Conversion, parity, INT8 quantization, evaluation and publication on a tiny real Keras model."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import colorsys
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from contracts.config import OptimizeConfig, ToolkitConfig, openvino_properties
from contracts.errors import OptimizationError
from contracts.known_answer import StoredKnownAnswer, verify_version
from contracts.model_repository import ModelRepository
from workloads.classes import CLASS_CODES
from workloads.images import load_batch
from workloads.optimize import pipeline
from workloads.optimize.convert import convert_saved_model, save_ir
from workloads.optimize.evaluate import openvino_predictor, tensorflow_predictor
from workloads.optimize.parity import check_parity
from workloads.optimize.pipeline import run_optimize
from workloads.optimize.repository import published_entry

SIZE = 32


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int


class FakeManifest:
    def __init__(self, **splits: list[Entry]):
        self._splits = splits

    def entries(self, split: str) -> list[Entry]:
        return list(self._splits.get(split, []))


@dataclass(frozen=True)
class SavedModels:
    trained: Path  # learns the colour → class mapping of the images below
    untrained: Path  # same architecture, other random weights: a "wrong" model
    renamed_dynamic: Path  # trained weights, input "pixels" [?,?,?,3] → output "scores"


def _colour(label: int) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(label / 21, 1.0 if label % 2 == 0 else 0.5, 1.0 if label % 3 else 0.6)
    return np.array([r, g, b]) * 255


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> FakeManifest:
    """4 train + 3 test JPEGs per class, each a noisy patch of its class colour, 40x40 (resized to 32)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    splits: dict[str, list[Entry]] = {"train": [], "test": []}
    for label, code in enumerate(CLASS_CODES):
        (root / code).mkdir()
        for i in range(7):
            pixels = np.clip(_colour(label) + rng.normal(0, 12, (40, 40, 3)), 0, 255).astype(np.uint8)
            path = root / code / f"{code}_{i}.jpg"
            Image.fromarray(pixels).save(path, quality=95)
            splits["train" if i < 4 else "test"].append(Entry(path, label))
    return FakeManifest(**splits)


def _tiny_model(spatial: int | None = SIZE, input_name: str = "image"):
    image = keras.Input((spatial, spatial, 3), name=input_name)
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    probabilities = keras.layers.Dense(len(CLASS_CODES), activation="softmax", name="probabilities")(x)
    return keras.Model(image, probabilities)


def _export(
    model, path: Path, *, spatial: int | None = SIZE, input_name="image", output_name="probabilities"
):
    @tf.function(input_signature=[tf.TensorSpec([None, spatial, spatial, 3], tf.float32, name=input_name)])
    def serve(batch):
        return {output_name: model(batch, training=False)}

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})
    return path


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, manifest) -> SavedModels:
    root = tmp_path_factory.mktemp("saved_models")
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    train = manifest.entries("train")
    x = load_batch([e.path for e in train], SIZE)
    y = np.array([e.label for e in train])
    model.compile(keras.optimizers.Adam(0.03), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=120, batch_size=len(x), verbose=0)
    keras.utils.set_random_seed(1)
    dynamic = _tiny_model(spatial=None, input_name="pixels")
    dynamic.set_weights(model.get_weights())
    return SavedModels(
        trained=_export(model, root / "trained"),
        untrained=_export(_tiny_model(), root / "untrained"),
        renamed_dynamic=_export(
            dynamic, root / "dynamic", spatial=None, input_name="pixels", output_name="scores"
        ),
    )


@pytest.fixture(autouse=True)
def _no_openvino_telemetry(monkeypatch):
    # ov.convert_model sends usage telemetry unless it sees CI=true; offline, every conversion
    # then forks a sender process that waits up to 3 s and slows TensorFlow down meanwhile.
    monkeypatch.setenv("CI", "true")


@pytest.fixture
def artifacts(tmp_path) -> Path:
    return tmp_path / "artifacts"


def _make_run(artifacts: Path, saved_model: Path, run_id: str = "20250101-120000") -> Path:
    run = artifacts / "runs" / run_id
    shutil.copytree(saved_model, run / "saved_model")
    card = {
        "model_name": "bone-marrow",
        "run_id": run_id,
        "backbone": "tiny-test-cnn",
        "image_size": SIZE,
        "classes": list(CLASS_CODES),
        "input": {"name": "image", "shape": [-1, SIZE, SIZE, 3], "dtype": "float32"},
        "output": {"name": "probabilities", "shape": [-1, 21], "dtype": "float32"},
        "split_manifest_sha256": "0" * 64,
    }
    (run / "model_card.json").write_text(json.dumps(card))
    return run


# Every INT8 gate budget lifted: for tests about the plumbing, not about a tiny model's accuracy.
LENIENT = {
    "int8_max_accuracy_drop": 100.0,
    "int8_max_balanced_accuracy_drop": 100.0,
    "int8_max_protected_recall_drop": 100.0,
    "int8_max_class_recall_drop": 100.0,
}


def _config(artifacts: Path, **optimize) -> ToolkitConfig:
    # The fixture manifest has no val split, so NNCF accuracy control is switched off explicitly.
    settings = {
        "calibration_size": 42,
        "parity_images": 21,
        "int8_accuracy_control": False,
        "speed_seconds": 0.3,
        **optimize,
    }
    return ToolkitConfig(artifacts_dir=str(artifacts), optimize=OptimizeConfig(**settings))


def _tensor_names_and_shapes(model: ov.Model):
    return (
        [(sorted(p.get_names()), str(p.get_partial_shape())) for p in model.inputs],
        [(sorted(p.get_names()), str(p.get_partial_shape())) for p in model.outputs],
    )


# --- conversion -----------------------------------------------------------------------------


def test_conversion_names_tensors_and_fp16_halves_the_weights(saved_models, tmp_path):
    model = convert_saved_model(saved_models.trained, SIZE, 21)
    fp32 = save_ir(model, tmp_path / "fp32", compress_to_fp16=False)
    fp16 = save_ir(model, tmp_path / "fp16", compress_to_fp16=True)

    for xml in (fp32, fp16):
        assert _tensor_names_and_shapes(ov.Core().read_model(xml)) == (
            [(["image"], "[?,32,32,3]")],
            [(["probabilities"], "[?,21]")],
        )
    fp32_bytes = fp32.with_name("model.bin").stat().st_size
    fp16_bytes = fp16.with_name("model.bin").stat().st_size
    assert fp16_bytes < 0.6 * fp32_bytes


def test_the_same_graph_saves_to_the_same_bytes_however_many_models_came_before(saved_models, tmp_path):
    first = save_ir(
        convert_saved_model(saved_models.trained, SIZE, 21), tmp_path / "a", compress_to_fp16=True
    )
    convert_saved_model(saved_models.untrained, SIZE, 21)  # OpenVINO's node counter moves on
    second = save_ir(
        convert_saved_model(saved_models.trained, SIZE, 21), tmp_path / "b", compress_to_fp16=True
    )

    assert first.read_bytes() == second.read_bytes()
    assert first.with_name("model.bin").read_bytes() == second.with_name("model.bin").read_bytes()


def test_conversion_pins_dynamic_spatial_size_and_renames_tensors(saved_models):
    model = convert_saved_model(saved_models.renamed_dynamic, SIZE, 21)
    assert _tensor_names_and_shapes(model) == ([(["image"], "[?,32,32,3]")], [(["probabilities"], "[?,21]")])


def test_conversion_rejects_a_model_card_that_disagrees_with_the_graph(saved_models):
    with pytest.raises(
        OptimizationError, match=r"input shape \[\?,32,32,3\], but the model card says \[\?,64,64,3\]"
    ):
        convert_saved_model(saved_models.trained, 64, 21)
    with pytest.raises(OptimizationError, match=r"outputs shape \[\?,21\], expected \[\?,10\]"):
        convert_saved_model(saved_models.trained, SIZE, 10)
    with pytest.raises(OptimizationError, match="OpenVINO could not convert"):
        convert_saved_model(saved_models.trained / "missing", SIZE, 21)


def test_reference_predictor_requires_the_contract_signature(saved_models):
    with pytest.raises(OptimizationError, match=r"serving_default maps \['pixels'\] → \['scores'\]"):
        tensorflow_predictor(saved_models.renamed_dynamic)


# --- parity ---------------------------------------------------------------------------------


def test_parity_holds_for_the_converted_ir_and_fails_for_another_model(saved_models, manifest, tmp_path):
    images = load_batch([e.path for e in manifest.entries("test")[::3]], SIZE)
    reference = tensorflow_predictor(saved_models.trained)
    same = save_ir(
        convert_saved_model(saved_models.trained, SIZE, 21), tmp_path / "same", compress_to_fp16=False
    )
    other = save_ir(
        convert_saved_model(saved_models.untrained, SIZE, 21), tmp_path / "other", compress_to_fp16=False
    )

    good = check_parity(reference, openvino_predictor(same), images, tolerance=1e-3)
    bad = check_parity(reference, openvino_predictor(other), images, tolerance=1e-3)

    assert good.passed and good.n_images == len(images) and good.max_abs_diff < 1e-4
    assert not bad.passed and bad.max_abs_diff > 1e-3
    assert f"max |Δprob| {bad.max_abs_diff:.3g}" in bad.failure_message()


# --- the whole stage ------------------------------------------------------------------------


@pytest.mark.slow
def test_optimize_scores_every_variant_publishes_and_does_not_republish_identical_models(
    saved_models, manifest, artifacts
):
    run = _make_run(artifacts, saved_models.trained)
    messages: list[str] = []
    result = run_optimize(_config(artifacts, **LENIENT), run, manifest, progress=messages.append)

    openvino_dir = run / "openvino"
    assert result.report_path == openvino_dir / "optimization.json"
    assert sorted(p.name for p in openvino_dir.iterdir()) == ["fp16", "fp32", "int8", "optimization.json"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no staging left
    int8_ops = ov.Core().read_model(openvino_dir / "int8" / "model.xml").get_ops()
    assert "FakeQuantize" in {op.get_type_name() for op in int8_ops}
    assert any(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8 for op in int8_ops)
    assert _tensor_names_and_shapes(ov.Core().read_model(openvino_dir / "int8" / "model.xml")) == (
        [(["image"], "[?,32,32,3]")],
        [(["probabilities"], "[?,21]")],
    )

    assert set(result.variants) == {"tf", "fp32", "fp16", "int8"}
    for variant in result.variants.values():
        assert variant.path.exists()
        assert variant.metrics["n_samples"] == 63
        assert set(variant.metrics["per_class"]) == set(CLASS_CODES)
    assert result.variants["tf"].metrics["accuracy"] > 0.8  # the tiny model did learn the colours
    assert (
        result.variants["fp32"].metrics["confusion_matrix"]
        == result.variants["tf"].metrics["confusion_matrix"]
    )
    assert result.parity.passed and result.parity.n_images == 21
    assert result.int8_gate is not None and result.int8_gate.accepted

    report = json.loads(result.report_path.read_text())
    assert report["status"] == "accepted" and report["error"] is None
    assert report["run_id"] == "20250101-120000" and report["image_size"] == SIZE
    assert report["test_images"] == 63
    assert report["quantization"]["preset"] == "mixed" and report["quantization"]["calibration_images"] == 42
    assert report["parity"] == result.parity.as_dict()
    assert report["schema_version"] == 2
    assert report["int8_gate"] == result.int8_gate.as_dict() and report["int8_gate"]["accepted"] is True
    assert report["quantization"]["accuracy_control"] is None  # switched off by the setting, said so
    assert "int8: NNCF accuracy control is off (optimize.int8_accuracy_control: false)" in messages
    assert any(m.startswith("int8 gate: accepted") for m in messages)
    assert any(m.startswith("int8 gate: ok · protected class BLA (Blast) recall") for m in messages)
    assert report["variants"]["int8"]["path"] == "openvino/int8/model.xml"
    assert report["variants"]["tf"]["path"] == "saved_model"
    assert report["variants"]["int8"]["metrics"] == result.variants["int8"].metrics
    assert report["settings"]["precisions"] == ["fp32", "fp16", "int8"]
    # Speed on this machine beside the accuracy figures, every variant executing f32 where not
    # quantized (this CPU would default to bf16).
    speed = report["speed"]
    assert set(speed["variants"]) == {"fp32", "fp16", "int8"} and speed["seconds_per_variant"] == 0.3
    assert speed["batch_size"] == 16 and speed["properties"]["fp32"]["INFERENCE_PRECISION_HINT"] == "f32"
    for figures in speed["variants"].values():
        assert figures["images_per_second"] > 0 and figures["requests"] >= 8
        assert figures["execution_precision"] == "f32" and "bf16" not in figures["layer_precisions"]
    assert set(speed["variants"]["int8"]["layer_precisions"]) & {"i8", "u8"}
    ratio = speed["variants"]["int8"]["images_per_second"] / speed["variants"]["fp32"]["images_per_second"]
    assert speed["int8_speedup"] == pytest.approx(ratio, abs=1e-3)
    assert any(m.startswith("speed: int8 ") and "executes f32" in m for m in messages)
    assert (speed["warning"] is not None) == (ratio <= 1.0)
    assert any(m.startswith("warning: INT8 is not faster") for m in messages) == (ratio <= 1.0)
    assert report["published"] == [published_entry(m) for m in result.published]
    assert result.unchanged == frozenset()

    repo = artifacts / "models"
    assert [(m.name, m.version) for m in result.published] == [
        ("bone-marrow-fp32", 1),
        ("bone-marrow-fp16", 1),
        ("bone-marrow-int8", 1),
    ]
    published_int8 = (repo / "bone-marrow-int8" / "1" / "model.bin").read_bytes()
    assert published_int8 == (openvino_dir / "int8" / "model.bin").read_bytes()
    assert json.loads((repo / "bone-marrow-int8" / "1" / "model_card.json").read_text())["run_id"] == run.name
    # Integrity: SHA256SUMS verifies, and the stored known answer is this IR's, on 8 fixed test images.
    for model in result.published:
        verify_version(model.directory, ("model.xml", "model.bin", "model_card.json", "known_answer.json"))
        stored = StoredKnownAnswer.load(model.directory / "known_answer.json")
        assert (stored.model, stored.image_size, len(stored.images)) == (model.name, model.image_size, 8)
        tensors = load_batch([i.path for i in stored.images], model.image_size)
        serving = ToolkitConfig().serving  # stored with the local server's compile settings
        properties = openvino_properties(
            serving.performance_hint, serving.num_streams, serving.inference_threads
        )
        compiled = ov.Core().compile_model(str(model.xml), "CPU", properties)
        answered = compiled({"image": tensors})[compiled.output("probabilities")]
        assert np.max(np.abs(answered - np.asarray(stored.probabilities))) < 1e-3
    assert any(m.startswith("parity: TF vs FP32 IR on 21 images") for m in messages)
    assert any(m.startswith("int8: calibration image 42/42") for m in messages)

    # The same run optimized again writes byte-identical IRs (even in a process whose OpenVINO
    # has numbered other nodes since): every version is reused, none added.
    messages.clear()
    again = run_optimize(_config(artifacts, **LENIENT), run, manifest, progress=messages.append)

    assert [m.version for m in again.published] == [1, 1, 1]
    assert again.unchanged == {"bone-marrow-fp32", "bone-marrow-fp16", "bone-marrow-int8"}
    assert sum(m.startswith("unchanged bone-marrow-") for m in messages) == 3
    assert ModelRepository(repo).versions("bone-marrow", "fp32") == [1]
    assert [e["unchanged"] for e in json.loads(again.report_path.read_text())["published"]] == [True] * 3
    # What optimize published is what serving and bench find.
    assert ModelRepository(repo).find("bone-marrow", "int8") == again.published[2]
    assert (repo / "bone-marrow-int8" / "1" / "model.bin").read_bytes() == published_int8
    config = json.loads((repo / "config.json").read_text())
    assert [e["config"]["name"] for e in config["model_config_list"]] == [
        "bone-marrow-fp32",
        "bone-marrow-fp16",
        "bone-marrow-int8",
    ]


@pytest.mark.slow
def test_rejected_int8_publishes_nothing_but_leaves_its_report_aside(saved_models, manifest, artifacts):
    run = _make_run(artifacts, saved_models.trained)
    # A negative budget rejects INT8 whatever its accuracy (load_config would refuse it; the
    # dataclass does not validate).
    config = _config(artifacts, **dict(LENIENT, int8_max_accuracy_drop=-1.0))

    with pytest.raises(
        OptimizationError, match=r"^INT8 model rejected: test accuracy .* vs FP32 .*budget of -1"
    ) as info:
        run_optimize(config, run, manifest, progress=lambda m: None)

    assert "\n" not in str(info.value)
    assert "the run has no accepted optimization yet" in str(info.value)
    assert not (artifacts / "models").exists()
    assert not (run / "openvino").exists()
    report = json.loads((run / "openvino-rejected" / "optimization.json").read_text())
    assert report["status"] == "rejected" and report["error"] == str(info.value)
    assert report["int8_gate"]["accepted"] is False
    assert set(report["variants"]) == {"tf", "fp32", "fp16", "int8"}
    assert report["variants"]["int8"]["path"] == "openvino-rejected/int8/model.xml"
    assert (run / report["variants"]["int8"]["path"]).is_file()
    assert report["published"] == []


def _never_predicting(code: str, openvino_predictor):
    """openvino_predictor, except that the INT8 IR never predicts ``code`` (its blasts collapse)."""
    index = CLASS_CODES.index(code)

    def make(xml_path, *args, **kwargs):
        predict = openvino_predictor(xml_path, *args, **kwargs)
        if Path(xml_path).parent.name != "int8":
            return predict

        def collapsed(batch):
            probabilities = np.array(predict(batch))
            probabilities[:, index] = 0.0
            return probabilities

        return collapsed

    return make


@pytest.mark.slow
def test_a_protected_class_losing_recall_rejects_int8_and_keeps_the_accepted_record(
    saved_models, manifest, artifacts, monkeypatch
):
    run = _make_run(artifacts, saved_models.trained)
    run_optimize(_config(artifacts, **LENIENT), run, manifest, progress=lambda m: None)
    accepted = {p.relative_to(run): p.read_bytes() for p in (run / "openvino").rglob("*") if p.is_file()}
    repo = ModelRepository(artifacts / "models")
    published = repo.find_all("bone-marrow", ["fp32", "fp16", "int8"])

    # INT8 now loses every blast: 3 of 63 test images (4.8 points) and 1/21 of balanced accuracy,
    # within the lifted budgets, but BLA's recall falls from 100% to 0%.
    monkeypatch.setattr(pipeline, "openvino_predictor", _never_predicting("BLA", pipeline.openvino_predictor))
    config = _config(artifacts, **dict(LENIENT, int8_max_protected_recall_drop=1.0))
    messages: list[str] = []
    with pytest.raises(OptimizationError) as info:
        run_optimize(config, run, manifest, progress=messages.append)

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "INT8 model rejected: protected class BLA (Blast) recall 0.00% vs FP32 100.00% on 3 test images: "
        "a drop of 100.00 points, over the budget of 1 (optimize.int8_max_protected_recall_drop)"
    )
    assert f"the accepted record {run / 'openvino' / 'optimization.json'} and the published" in message
    assert [m for m in messages if "VIOLATED" in m] == [
        "int8 gate: VIOLATED · " + message.removeprefix("INT8 model rejected: ").split("; ")[0]
    ]
    # The earlier record and what it published are untouched …
    assert {
        p.relative_to(run): p.read_bytes() for p in (run / "openvino").rglob("*") if p.is_file()
    } == accepted
    assert repo.find_all("bone-marrow", ["fp32", "fp16", "int8"]) == published
    assert repo.versions("bone-marrow", "int8") == [1]
    # … and the rejection is recorded beside it.
    rejected = json.loads((run / "openvino-rejected" / "optimization.json").read_text())
    assert rejected["status"] == "rejected" and rejected["error"] == message
    assert rejected["published"] == []
    gate = rejected["int8_gate"]
    assert gate["accepted"] is False and len(gate["violations"]) == 1
    bla = next(r for r in gate["rules"] if r["class"] == "BLA")
    assert (bla["support"], bla["fp32"], bla["int8"], bla["passed"]) == (3, 1.0, 0.0, False)
    assert any(m == f"report: {run / 'openvino-rejected' / 'optimization.json'} (rejected)" for m in messages)


def test_parity_failure_stops_before_quantization_and_publishes_nothing(
    saved_models, manifest, artifacts, monkeypatch
):
    run = _make_run(artifacts, saved_models.trained)
    (artifacts / "models").mkdir(parents=True)
    (artifacts / "models" / "config.json").write_text('{"model_config_list": []}')
    # Tamper: the "converted" IR comes from a different model than the SavedModel.
    convert = pipeline.convert_saved_model
    monkeypatch.setattr(
        pipeline, "convert_saved_model", lambda _dir, size, n: convert(saved_models.untrained, size, n)
    )

    def no_quantization(*args, **kwargs):
        raise AssertionError("quantization must not start after a parity failure")

    monkeypatch.setattr(pipeline, "quantize_int8", no_quantization)

    with pytest.raises(
        OptimizationError, match=r"^TF/OpenVINO FP32 parity failed on 21 test images: max \|Δprob\| "
    ):
        run_optimize(_config(artifacts), run, manifest, progress=lambda m: None)

    assert not (run / "openvino").exists()
    report = json.loads((run / "openvino-rejected" / "optimization.json").read_text())
    assert report["parity"]["passed"] is False and report["parity"]["max_abs_diff"] > 1e-3
    assert report["status"] == "rejected" and report["variants"] == {}
    assert sorted(p.name for p in (artifacts / "models").iterdir()) == ["config.json"]
    assert json.loads((artifacts / "models" / "config.json").read_text()) == {"model_config_list": []}


def test_fp32_only_skips_quantization_and_publishes_one_model(saved_models, manifest, artifacts, monkeypatch):
    run = _make_run(artifacts, saved_models.trained)
    monkeypatch.setattr(pipeline, "quantize_int8", lambda *a, **k: pytest.fail("int8 was not requested"))
    result = run_optimize(
        _config(artifacts, precisions=("fp32",)), run, FakeManifest(test=manifest.entries("test"))
    )

    assert set(result.variants) == {"tf", "fp32"}
    assert result.int8_gate is None
    assert [(m.name, m.version) for m in result.published] == [("bone-marrow-fp32", 1)]
    assert sorted(p.name for p in (run / "openvino").iterdir()) == ["fp32", "optimization.json"]


@pytest.mark.slow
def test_optimize_reads_the_real_split_manifest(saved_models, synthetic_split, artifacts):
    from workloads.data.manifest import SplitManifest

    manifest = SplitManifest.load(synthetic_split / "data" / "split.json")
    run = _make_run(artifacts, saved_models.trained)
    result = run_optimize(
        _config(artifacts, **LENIENT, int8_accuracy_control=True), run, manifest, progress=lambda m: None
    )

    assert result.variants["int8"].metrics["n_samples"] == len(manifest.entries("test"))
    report = json.loads(result.report_path.read_text())
    assert report["quantization"]["calibration_images"] == 42  # 2 of each class's train images
    assert report["quantization"]["accuracy_control"] == {
        "split": "val",
        "images": len(manifest.entries("val")),
        "max_drop_points": 100.0,
    }
    assert [m.version for m in result.published] == [1, 1, 1]


def test_accuracy_control_validation_function_scores_top1():
    from workloads.optimize.quantize import top1_accuracy

    class FakeCompiled:
        def output(self, index):
            return "probabilities"

        def __call__(self, image):
            return {"probabilities": image}

    items = [(np.array([[0.1, 0.9]]), 1), (np.array([[0.8, 0.2]]), 1), (np.array([[0.3, 0.7]]), 1)]
    assert top1_accuracy(FakeCompiled(), items) == pytest.approx(2 / 3)
    assert top1_accuracy(FakeCompiled(), []) == 0.0
