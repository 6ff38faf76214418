"""OpenVINOModel in-process: what it loads, reports and how it spreads requests over infer requests."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import openvino as ov
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from contracts.errors import ServingError
from workloads.bench.cpuinfo import cpu_info
from workloads.classes import CLASS_CODES
from workloads.serving import repository as serving_repository
from workloads.serving.model import OpenVINOModel, RuntimeSettings
from workloads.serving.repository import find_model, find_models

pytestmark = pytest.mark.slow

S = 64


@pytest.fixture(scope="module")
def served(served_repository):
    return find_model(served_repository / "models", "bone-marrow", "int8")


def request_for(batch: np.ndarray) -> InferRequest:
    tensor = InferInput("image", list(batch.shape), "FP32", data=batch)
    return InferRequest("bone-marrow-int8", [tensor])


def test_model_reports_its_tensors_and_settings(served):
    model = OpenVINOModel(served, RuntimeSettings("LATENCY", num_streams=1, inference_threads=1, nireq=3))
    try:
        assert model.load() and model.ready
        assert model.name == "bone-marrow-int8"
        assert model.get_input_types() == [{"name": "image", "datatype": "FP32", "shape": [-1, S, S, 3]}]
        assert model.get_output_types() == [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASS_CODES)]}
        ]
        properties = model.runtime_properties()
        layers = properties.pop("layer_precisions")
        assert properties == {
            "performance_hint": "LATENCY",
            "num_streams": 1,
            "inference_threads": 1,
            "nireq": 3,
            "execution_precision": "f32",  # pinned: this machine's default would be bf16 where it can
        }
        # INT8: quantized layers run in i8/u8, the rest in f32, and none in bf16.
        assert {"f32"} <= set(layers) and set(layers) & {"i8", "u8"} and "bf16" not in layers
    finally:
        model.stop()
    assert not model.ready


def test_concurrent_requests_run_on_nireq_infer_requests(served):
    model = OpenVINOModel(served, RuntimeSettings("THROUGHPUT"))
    model.load()
    # Pinned as the server pins it: OpenVINO's default (bf16 on AVX512_BF16 / AMX) differs by far more.
    reference = ov.Core().compile_model(served.xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    optimal = model.nireq
    assert optimal >= 1
    batches = [np.random.default_rng(i).uniform(0, 255, (2, S, S, 3)).astype(np.float32) for i in range(12)]

    async def run_all():
        return await asyncio.gather(*(model.predict(request_for(b)) for b in batches))

    try:
        responses = asyncio.run(run_all())
        for batch, response in zip(batches, responses, strict=True):
            (output,) = response.outputs
            assert output.name == "probabilities" and output.shape == [2, len(CLASS_CODES)]
            np.testing.assert_allclose(output.as_numpy(), reference(batch)[0], atol=1e-5, rtol=0)
        workers = [t for t in threading.enumerate() if t.name.startswith("infer-int8")]
        assert 1 <= len(workers) <= optimal
    finally:
        model.stop()


def test_every_infer_request_runs_once_in_the_loading_thread_before_the_model_is_ready(served, monkeypatch):
    # pyopenvino's numpy bridge is made on first use; two inference threads making that first use
    # at once deadlocked a fresh server (workloads.openvino_warmup). Load makes it single-threaded.
    from workloads.serving import model as model_module

    warmed: list[tuple[str, bool, tuple[int, ...]]] = []
    original = model_module.warm_up_request

    def spy(request, compiled):
        original(request, compiled)
        shape = tuple(request.get_output_tensor(0).shape)
        warmed.append((threading.current_thread().name, model.ready, shape))

    monkeypatch.setattr(model_module, "warm_up_request", spy)
    model = OpenVINOModel(served, RuntimeSettings("THROUGHPUT", nireq=3))
    try:
        model.load()
        assert warmed == [(threading.current_thread().name, False, (1, len(CLASS_CODES)))] * 3
        response = asyncio.run(model.predict(request_for(np.zeros((2, S, S, 3), np.float32))))
        assert response.outputs[0].shape == [2, len(CLASS_CODES)] and len(warmed) == 3
    finally:
        model.stop()


def test_a_large_batchs_infer_request_is_replaced_and_the_pool_keeps_nireq(served, monkeypatch):
    from workloads.serving import model as model_module

    def requests_held(model: OpenVINOModel) -> list[int]:
        held = [model._requests.get_nowait() for _ in range(model._requests.qsize())]
        for request in held:
            model._requests.put(request)
        return [id(request) for request in held]

    model = OpenVINOModel(served, RuntimeSettings("THROUGHPUT", nireq=2))
    try:
        model.load()
        before = requests_held(model)
        small = np.zeros((1, S, S, 3), np.float32)
        asyncio.run(model.predict(request_for(small)))
        assert sorted(requests_held(model)) == sorted(before)  # a small batch keeps its request
        monkeypatch.setattr(model_module, "TRIM_AFTER_BYTES", small.nbytes * 2)
        asyncio.run(model.predict(request_for(np.zeros((2, S, S, 3), np.float32))))
        after = requests_held(model)
        assert len(after) == 2 and len(set(after) & set(before)) == 1  # one replaced, none lost
        for _ in range(4):  # and every request still answers
            asyncio.run(model.predict(request_for(small)))
    finally:
        model.stop()


def test_wrong_datatype_and_v1_payloads_are_invalid_input(served):
    model = OpenVINOModel(served, RuntimeSettings())
    model.load()
    try:
        ints = InferInput("image", [1, S, S, 3], "INT32", data=np.zeros((1, S, S, 3), np.int32))
        with pytest.raises(InvalidInput, match="must be FP32"):
            asyncio.run(model.predict(InferRequest("bone-marrow-int8", [ints])))
        with pytest.raises(InvalidInput, match="V2 protocol"):
            asyncio.run(model.predict({"instances": [[1.0]]}))
    finally:
        model.stop()


def test_an_unreadable_ir_is_a_serving_error(served, tmp_path):
    broken = tmp_path / "bone-marrow-int8" / "1"
    broken.mkdir(parents=True)
    for name in ("model.bin", "model_card.json"):
        (broken / name).write_bytes((served.directory / name).read_bytes())
    (broken / "model.xml").write_text("<net>")
    model = OpenVINOModel(find_model(tmp_path, "bone-marrow", "int8"), RuntimeSettings())
    with pytest.raises(ServingError, match="OpenVINO cannot load") as error:
        model.load()
    assert "\n" not in str(error.value)


def test_fp32_executes_in_f32_and_bf16_is_the_same_ir_in_bf16(served_repository):
    models = find_models(served_repository / "models", "bone-marrow", ["fp32"])
    fp32 = OpenVINOModel(models[0], RuntimeSettings("LATENCY", num_streams=1, inference_threads=1))
    try:
        fp32.load()
        assert fp32.execution["execution_precision"] == "f32"
        assert set(fp32.execution["layer_precisions"]) == {"f32"}
    finally:
        fp32.stop()
    flags = cpu_info()["flags"]
    if not (flags["avx512_bf16"] or flags["amx_tile"]):
        pytest.skip("this CPU cannot execute bf16 (it is refused: test_bf16_is_refused_without_...)")
    (bf16_version,) = find_models(served_repository / "models", "bone-marrow", ["bf16"])
    assert (bf16_version.name, bf16_version.directory) == ("bone-marrow-bf16", models[0].directory)
    bf16 = OpenVINOModel(bf16_version, RuntimeSettings("LATENCY", num_streams=1, inference_threads=1))
    try:
        bf16.load()
        assert bf16.execution["execution_precision"] == "bf16"
        assert "bf16" in bf16.execution["layer_precisions"]
    finally:
        bf16.stop()


def test_bf16_is_refused_without_avx512_bf16_or_amx(served_repository, monkeypatch):
    flags = {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": False, "amx_tile": False}
    monkeypatch.setattr(serving_repository, "cpu_info", lambda: {"cpu_model": "Cascade Lake", "flags": flags})
    assert find_models(served_repository / "models", "bone-marrow", ["fp32", "int8"])
    with pytest.raises(
        ServingError, match=r"^serving.precisions asks for bf16, but the CPU of this machine"
    ) as e:
        find_models(served_repository / "models", "bone-marrow", ["fp32", "bf16"])
    assert "\n" not in str(e.value)
