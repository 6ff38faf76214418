"""Which precision OpenVINO executes a compiled model in, and whether a CPU can execute a variant.

OpenVINO's CPU plugin defaults INFERENCE_PRECISION_HINT to bf16 where the CPU has AVX512_BF16 or
AMX, so an "FP32" IR may run in bf16. What ran is read back from the compiled model: its hint and
the precision each executed layer of its runtime graph ran in (``rt_info["runtimePrecision"]``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from contracts.model_repository import execution_precision

# Runtime-graph nodes that move or hold data rather than compute: not counted in the layer mix.
_NOT_COMPUTING = frozenset({"Input", "Output", "Const"})
# /proc/cpuinfo flags (workloads.bench.cpuinfo.FLAGS) with which OpenVINO executes bf16 natively.
BF16_FLAGS = ("avx512_bf16", "amx_tile")


def execution_facts(compiled: Any) -> dict[str, Any]:
    """``{"execution_precision": "f32", "layer_precisions": {"f32": 52, "i8": 30}}`` of an
    ``ov.CompiledModel``, as OpenVINO reports them."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "runtimePrecision" not in info or str(info["layerType"].astype(str)) in _NOT_COMPUTING:
            continue
        counts[str(info["runtimePrecision"].astype(str))] += 1
    return {
        "execution_precision": hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint),
        "layer_precisions": dict(sorted(counts.items())),
    }


def cpu_refusal(precision: str, flags: Mapping[str, bool], where: str, key: str) -> str | None:
    """One line refusing ``precision`` when the CPU (``flags`` of workloads.bench.cpuinfo) cannot
    execute its INFERENCE_PRECISION_HINT natively; None when it can. ``key``: the setting to change."""
    if execution_precision(precision) != "bf16" or any(flags.get(f) for f in BF16_FLAGS):
        return None
    return (
        f"{key} asks for {precision}, but the CPU {where} has neither AVX512_BF16 nor AMX, so OpenVINO "
        "cannot execute bf16 there; use fp32 or int8, or run on a Sapphire Rapids (or newer) CPU"
    )
