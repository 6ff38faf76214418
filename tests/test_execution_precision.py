"""fp32 executes in f32 everywhere, bf16 is the FP32 IR executed in bf16, and results say what ran."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from test_bench_results import document
from test_bench_server import FAST_BENCH
from test_k8s_render import POD_IDENTITY, SECRET

from contracts.config import load_config
from contracts.errors import BenchError, ConfigError, DeployError
from workloads.bench import run as bench_run
from workloads.bench.cpuinfo import cpu_info
from workloads.bench.results import csv_row, validate_results
from workloads.execution_precision import cpu_refusal
from workloads.k8s.ovms import plugin_config, server_config
from workloads.k8s.render import render_serving

SOURCE = POD_IDENTITY
CASCADE_LAKE = {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": False, "amx_tile": False}
BF16_HERE = cpu_info()["flags"]["avx512_bf16"] or cpu_info()["flags"]["amx_tile"]


def test_ovms_plugin_config_pins_the_execution_precision_of_each_variant(tmp_path: Path) -> None:
    config = load_config(
        {
            "artifacts_dir": str(tmp_path),
            "serving": {"precisions": ["fp32", "int8", "bf16"]},
            "aws": {"pools": {"c7i": {"instance_type": "c7i.large", "cpu_generation": "sapphirerapids"}}},
        }
    )
    tuning = config.ovms.tuning()
    assert plugin_config(tuning, 2)["INFERENCE_PRECISION_HINT"] == "f32"
    assert plugin_config(tuning, 2, "int8")["INFERENCE_PRECISION_HINT"] == "f32"
    assert plugin_config(tuning, 2, "bf16")["INFERENCE_PRECISION_HINT"] == "bf16"

    served = server_config(config, config.serving.precisions)["model_config_list"]
    models = {m["config"]["name"]: m["config"] for m in served}
    assert {n: m["plugin_config"]["INFERENCE_PRECISION_HINT"] for n, m in models.items()} == {
        "bone-marrow-fp32": "f32",
        "bone-marrow-int8": "f32",
        "bone-marrow-bf16": "bf16",
    }
    # bf16 serves the fp32 IR's files under its own name: nothing is converted for it.
    assert models["bone-marrow-bf16"]["base_path"] == models["bone-marrow-fp32"]["base_path"]
    assert models["bone-marrow-bf16"]["base_path"] == "/models/bone-marrow-fp32"

    paths = render_serving(config, target="aws", model_source=SOURCE, out_dir=tmp_path / "out")
    assert [p.name for p in paths] == ["00-namespace.yaml", "10-ovms-c7i.yaml"]


def test_the_bf16_variant_pins_the_fp32_irs_committed_version(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for name in ("bone-marrow-fp32", "bone-marrow-int8"):
        (models / name / "4").mkdir(parents=True)
    (models / "version_set.json").write_text(
        json.dumps({"models": {"bone-marrow": {"versions": {"fp32": 4, "int8": 4}}}})
    )
    config = load_config({"artifacts_dir": str(tmp_path), "serving": {"precisions": ["bf16"]}})
    (entry,) = server_config(config, config.serving.precisions)["model_config_list"]
    assert entry["config"]["model_version_policy"] == {"specific": {"versions": [4]}}


def _pool_files(paths: list[Path]) -> dict[str, list[dict]]:
    """Each rendered pool file (``10-ovms-<pool>.yaml``) → its documents, parsed back."""
    return {
        path.stem.removeprefix("10-ovms-"): [d for d in yaml.safe_load_all(path.read_text()) if d]
        for path in paths
        if path.name.startswith("10-ovms-")
    }


def _mounted_server_config(documents: list[dict]) -> dict:
    """The config.json the pool's Deployment mounts: its configMap volume, found in the same file."""
    kinds = [d["kind"] for d in documents]
    assert kinds.index("ConfigMap") < kinds.index("Deployment"), "applied before the Deployment mounts it"
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    config_maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
    text = config_maps[volume["configMap"]["name"]]["data"]["config.json"]
    digest = deployment["spec"]["template"]["metadata"]["annotations"]["bone-marrow.ml/ovms-config-sha256"]
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    return json.loads(text)


def _ready_paths(documents: list[dict]) -> list[str]:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (ovms,) = deployment["spec"]["template"]["spec"]["containers"]
    return ovms["readinessProbe"]["exec"]["command"][4:]


def test_bf16_is_served_only_on_the_pools_that_execute_it(tmp_path: Path) -> None:
    config = load_config(
        {"artifacts_dir": str(tmp_path), "serving": {"precisions": ["fp32", "int8", "bf16"]}}
    )
    paths = render_serving(config, target="aws", model_source=SOURCE, out_dir=tmp_path / "out")
    files = _pool_files(paths)
    assert sorted(files) == ["c5", "c6i", "c7i"]
    hints = {
        pool: {
            m["config"]["name"]: m["config"]["plugin_config"]["INFERENCE_PRECISION_HINT"]
            for m in _mounted_server_config(documents)["model_config_list"]
        }
        for pool, documents in files.items()
    }
    without_bf16 = {"bone-marrow-fp32": "f32", "bone-marrow-int8": "f32"}
    assert hints == {
        "c5": without_bf16,
        "c6i": without_bf16,
        "c7i": {**without_bf16, "bone-marrow-bf16": "bf16"},
    }
    assert list(hints["c7i"]) == ["bone-marrow-fp32", "bone-marrow-int8", "bone-marrow-bf16"]
    assert "/v2/models/bone-marrow-bf16/ready" in _ready_paths(files["c7i"])
    assert _ready_paths(files["c5"]) == [
        "/v2/models/bone-marrow-fp32/ready",
        "/v2/models/bone-marrow-int8/ready",
    ]
    # The model sync verifies what its own pool serves.
    (c5_sync,) = next(d for d in files["c5"] if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert "bone-marrow-bf16" not in json.dumps(c5_sync)
    # No namespace-wide config.json: each pool mounts its own.
    namespace = yaml.safe_load_all((tmp_path / "out" / "00-namespace.yaml").read_text())
    assert "ConfigMap" not in {d["kind"] for d in namespace if d}


@pytest.mark.parametrize(
    ("target", "overrides"),
    [
        ("vsphere", {}),
        (
            "aws",
            {
                "pools": {
                    "c5": {"instance_type": "c5.large", "cpu_generation": "cascadelake"},
                    "c6i": {"instance_type": "c6i.large", "cpu_generation": "icelake"},
                    "c7i": None,
                }
            },
        ),
    ],
)
def test_bf16_on_a_target_without_a_bf16_pool_is_one_line(
    tmp_path: Path, target: str, overrides: dict
) -> None:
    config = load_config(
        {"artifacts_dir": str(tmp_path), "serving": {"precisions": ["fp32", "bf16"]}, target: overrides}
    )
    source = SOURCE if target == "aws" else SECRET
    with pytest.raises(DeployError) as error:
        render_serving(config, target=target, model_source=source, out_dir=tmp_path / "out")
    message = str(error.value)
    assert message.startswith(
        f"serving.precisions (fp32, bf16) lists bf16, a variant executed in bf16, but no pool of {target}"
    )
    assert "sapphirerapids" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_a_pool_left_with_nothing_to_serve_is_one_line(tmp_path: Path) -> None:
    config = load_config({"artifacts_dir": str(tmp_path), "serving": {"precisions": ["bf16"]}})
    with pytest.raises(DeployError, match=r"^serving.precisions \(bf16\) leaves pool c5 nothing to serve"):
        render_serving(config, target="aws", model_source=SOURCE, out_dir=tmp_path / "out")


def test_bf16_is_a_served_variant_never_an_ir_of_its_own() -> None:
    with pytest.raises(ConfigError, match=r"^optimize.precisions cannot list bf16: it is the fp32 IR"):
        load_config({"optimize": {"precisions": ["fp32", "bf16"]}})
    assert load_config({"bench": {"precision": "bf16"}}).bench.precision == "bf16"


def test_the_cpu_refusal_reads_the_bf16_flags() -> None:
    assert cpu_refusal("fp32", CASCADE_LAKE, "here", "bench.precision") is None
    line = cpu_refusal("bf16", CASCADE_LAKE, "of this machine", "bench.precision")
    assert line and line.startswith("bench.precision asks for bf16, but the CPU of this machine has neither")
    assert cpu_refusal("bf16", {**CASCADE_LAKE, "amx_tile": True}, "here", "k") is None
    assert cpu_refusal("bf16", {**CASCADE_LAKE, "avx512_bf16": True}, "here", "k") is None


# --- in process, end to end on the served repository --------------------------------------------


def _config(tmp_path: Path, served_repository: Path, precision: str):
    root = tmp_path / "artifacts"
    root.mkdir()
    for name in ("data", "runs", "models"):
        (root / name).symlink_to(served_repository / name)
    return load_config({"artifacts_dir": str(root), "bench": {**FAST_BENCH, "precision": precision}})


@pytest.mark.slow
def test_in_process_fp32_executes_f32_and_the_result_says_so(tmp_path, served_repository):
    config = _config(tmp_path, served_repository, "fp32")
    lines: list[str] = []
    document, _ = bench_run.run_bench(
        config, target="in-process", runtime="openvino", scenarios=["batch"], progress=lines.append
    )
    validate_results(document)
    # This machine (AVX512_BF16 / AMX) would run it in bf16 without the pin.
    assert document["execution_precision"] == "f32"
    assert document["execution_reported_by"] == "compiled model"
    assert set(document["layer_precisions"]) == {"f32"} and sum(document["layer_precisions"].values()) > 3
    assert csv_row(document)["execution_precision"] == "f32"
    assert any("executes f32" in line for line in lines if line.startswith("batch:"))


@pytest.mark.slow
@pytest.mark.skipif(not BF16_HERE, reason="this CPU has neither AVX512_BF16 nor AMX")
def test_in_process_bf16_runs_the_fp32_ir_in_bf16(tmp_path, served_repository):
    config = _config(tmp_path, served_repository, "bf16")
    document, _ = bench_run.run_bench(
        config, target="in-process", runtime="openvino", scenarios=["batch"], progress=lambda line: None
    )
    assert (document["model"]["name"], document["model"]["precision"]) == ("bone-marrow-bf16", "bf16")
    (fp32,) = (served_repository / "models" / "bone-marrow-fp32").glob("[0-9]*")
    assert document["model"]["version"] == int(fp32.name)
    assert document["execution_precision"] == "bf16" and "bf16" in document["layer_precisions"]
    assert document["known_answer"]["before"] == "pass"  # the fp32 IR's stored answers, bf16's tolerance


def test_in_process_bf16_is_refused_on_a_cpu_without_it(tmp_path, monkeypatch):
    config = load_config({"artifacts_dir": str(tmp_path), "bench": {"precision": "bf16"}})
    monkeypatch.setattr(bench_run, "cpu_info", lambda: {"cpu_model": "Cascade Lake", "flags": CASCADE_LAKE})
    with pytest.raises(BenchError, match=r"^bench.precision asks for bf16, but the CPU of this machine"):
        bench_run.run_bench(config, target="in-process", runtime="openvino", progress=lambda line: None)


def test_old_results_without_execution_fields_still_validate() -> None:
    old = document()
    for key in ("execution_precision", "execution_reported_by", "layer_precisions"):
        old.pop(key, None)
    validate_results(old)
    validate_results({**old, "execution_precision": None, "execution_reported_by": "unknown"})
    with pytest.raises(BenchError, match="layer_precisions"):
        validate_results({**old, "layer_precisions": {"f32": -1}})


def test_report_rows_are_labelled_with_what_ran() -> None:
    from workloads.bench.report import markdown_table, precision_label

    old = document()
    assert precision_label(old) == "int8"  # a result that does not say
    ran = {**old, "execution_precision": "f32", "layer_precisions": {"f32": 40, "u8": 52}}
    assert precision_label(ran) == "int8 (ran u8+f32)"
    ovms = {**old, "execution_precision": "bf16", "execution_reported_by": "plugin_config"}
    assert precision_label({**ovms, "model": {**old["model"], "precision": "bf16"}}) == "bf16 (pinned bf16)"
    assert "| int8 (ran u8+f32) |" in markdown_table([ran], {})
    # A server reports only the hint: an INT8 model's quantized layers do not run in f32.
    served = {**old, "execution_precision": "f32", "execution_reported_by": "server"}
    assert precision_label(served) == "int8 (hint f32)"
