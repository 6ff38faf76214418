"""`invoke optimize` measures what it publishes: each IR's speed on the build machine.

Every IR is compiled as the local server compiles it (``serving.*``, INFERENCE_PRECISION_HINT
pinned to the variant's: f32), then kept busy with OpenVINO's optimal number of infer requests,
one thread each (``infer`` releases the GIL), for ``optimize.speed_seconds`` after a short
warm-up. The figures are a sanity check of the build machine, not a benchmark (``invoke bench``
is): they say whether INT8 is faster at all, and what each variant executed in.

Not ``workloads.bench.inprocess.AsyncRunner``: an AsyncInferQueue whose Python callbacks are
still being released when the queue is destroyed can deadlock on the GIL; this check runs inside
``invoke optimize`` and must never hang it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workloads.bench.cpuinfo import cpu_info
from workloads.bench.inprocess import compile_ir, optimal_nireq
from workloads.execution_precision import execution_facts
from workloads.progress import Progress

WARMUP_REQUESTS_PER_INFER_REQUEST = 2
MIN_REQUESTS = 8


@dataclass(frozen=True)
class _Run:
    requests: int
    seconds: float
    latencies_ms: tuple[float, ...]


def _bounded_run(compiled: Any, batch: np.ndarray, nireq: int, seconds: float, min_requests: int) -> _Run:
    """``nireq`` threads, each with its own infer request, inferring ``batch`` until ``seconds``
    passed and ``min_requests`` were made (together); the clock stops when the last one ends."""
    requests = [compiled.create_infer_request() for _ in range(nireq)]
    for request in requests:
        request.set_input_tensor(0, _tensor(batch))
    latencies: list[float] = []
    lock = threading.Lock()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds

    def loop(request: Any) -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= min_requests and time.perf_counter() >= deadline:
                    return
                issued += 1
            began = time.perf_counter()
            request.infer()
            with lock:
                latencies.append((time.perf_counter() - began) * 1000.0)

    threads = [threading.Thread(target=loop, args=(r,), name=f"speed-{i}") for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _Run(len(latencies), time.perf_counter() - start, tuple(latencies))


def _tensor(batch: np.ndarray) -> Any:
    import openvino as ov

    return ov.Tensor(np.ascontiguousarray(batch, dtype=np.float32))


@dataclass(frozen=True)
class VariantSpeed:
    precision: str
    images_per_second: float
    mean_latency_ms: float
    requests: int
    seconds: float
    nireq: int
    execution_precision: str
    layer_precisions: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "images_per_second": round(self.images_per_second, 2),
            "mean_latency_ms": round(self.mean_latency_ms, 3),
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "nireq": self.nireq,
            "execution_precision": self.execution_precision,
            "layer_precisions": self.layer_precisions,
        }


@dataclass(frozen=True)
class SpeedReport:
    batch_size: int
    seconds_per_variant: float
    properties: dict[str, dict[str, Any]]  # precision → the compile properties used
    variants: dict[str, VariantSpeed]

    @property
    def int8_speedup(self) -> float | None:
        """INT8 images/s over FP32 images/s (both f32 where not quantized); None without both."""
        fp32, int8 = self.variants.get("fp32"), self.variants.get("int8")
        if fp32 is None or int8 is None or fp32.images_per_second <= 0:
            return None
        return int8.images_per_second / fp32.images_per_second

    @property
    def warning(self) -> str | None:
        speedup = self.int8_speedup
        if speedup is None or speedup > 1.0:
            return None
        return (
            f"INT8 is not faster than FP32 on this machine ({speedup:.2f}× its images/s, both executing "
            f"f32 where not quantized, batch {self.batch_size}); check the CPU's INT8 support (VNNI/AMX) "
            "before serving INT8 for speed"
        )

    def as_dict(self) -> dict[str, Any]:
        cpu = cpu_info()
        speedup = self.int8_speedup
        return {
            "what": "in-process OpenVINO on the build machine, the local server's settings, "
            "benchmark_app's async loop",
            "cpu": {"cpu_model": cpu["cpu_model"], "flags": cpu["flags"]},
            "batch_size": self.batch_size,
            "seconds_per_variant": self.seconds_per_variant,
            "properties": self.properties,
            "variants": {p: v.as_dict() for p, v in self.variants.items()},
            "int8_speedup": None if speedup is None else round(speedup, 3),
            "warning": self.warning,
        }

    def progress_lines(self) -> list[str]:
        lines = [
            f"speed: {p} {v.images_per_second:.1f} images/s (batch {self.batch_size}, {v.nireq} in flight, "
            f"{v.seconds:.1f} s) · executes {v.execution_precision} · layers {v.layer_precisions}"
            for p, v in self.variants.items()
        ]
        if self.int8_speedup is not None:
            lines.append(f"speed: INT8 {self.int8_speedup:.2f}× FP32 images/s on this machine")
        if self.warning:
            lines.append(f"warning: {self.warning}")
        return lines


def measure_speed(
    irs: Mapping[str, Path],
    batch: np.ndarray,
    *,
    seconds: float,
    properties_for: Callable[[str], dict[str, Any]],
    progress: Progress,
) -> SpeedReport:
    """Each IR's images/s on ``batch`` (one batch of test images) for ``seconds``, in turn."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    variants: dict[str, VariantSpeed] = {}
    properties: dict[str, dict[str, Any]] = {}
    for precision, xml in irs.items():
        properties[precision] = properties_for(precision)
        compiled = compile_ir(xml, properties[precision])
        nireq = optimal_nireq(compiled)
        _bounded_run(compiled, batch, nireq, 0.0, WARMUP_REQUESTS_PER_INFER_REQUEST * nireq)
        run = _bounded_run(compiled, batch, nireq, seconds, MIN_REQUESTS)
        facts = execution_facts(compiled)
        variants[precision] = VariantSpeed(
            precision=precision,
            images_per_second=run.requests * len(batch) / run.seconds if run.seconds > 0 else 0.0,
            mean_latency_ms=float(np.mean(run.latencies_ms)) if run.latencies_ms else 0.0,
            requests=run.requests,
            seconds=run.seconds,
            nireq=nireq,
            execution_precision=facts["execution_precision"],
            layer_precisions=facts["layer_precisions"],
        )
    report = SpeedReport(len(batch), seconds, properties, variants)
    for line in report.progress_lines():
        progress(line)
    return report
