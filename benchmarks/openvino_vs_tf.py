"""In-process inference throughput: OpenVINO FP32 IR vs TensorFlow, same model, same images.

    .venv/bin/python benchmarks/openvino_vs_tf.py [--backbone mobilenet_v3_large --image-size 224]
    .venv/bin/python benchmarks/openvino_vs_tf.py --run artifacts/runs/<id>   # a trained run (adds INT8)

Without --run it builds the default model with random weights (throughput does not depend on
the weight values), exports the SavedModel exactly as training does and converts it as
`invoke optimize` does. Each variant is warmed up, then timed for --seconds, --repeats times;
the median and range are printed, and the ratio to TensorFlow's best figure. Goal: OpenVINO
FP32 ≥ 2.5x TensorFlow.

  tf-batchN    the SavedModel's serving signature on batches of N (TensorFlow's best case)
  ov-sync-bN   OpenVINO, one synchronous request of batch N, LATENCY hint
  ov-async-b1  OpenVINO, THROUGHPUT hint, asynchronous queue of batch-1 requests (OVMS-like)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from contracts.config import TrainConfig
from contracts.run_directory import RunDirectory
from workloads.classes import NUM_CLASSES
from workloads.telemetry import opt_out_of_openvino_telemetry


def timed(step, images_per_call: int, seconds: float, repeats: int) -> list[float]:
    for _ in range(3):
        step()
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            step()
            calls += 1
        rates.append(calls * images_per_call / elapsed)
    return rates


def openvino_async(compiled, images: np.ndarray, seconds: float, repeats: int) -> list[float]:
    """benchmark_app's loop (workloads.bench.inprocess): batch-1 requests on OpenVINO's optimal number
    of infer requests, each restarted as soon as it completes."""
    from workloads.bench.inprocess import AsyncRunner

    runner = AsyncRunner(compiled)
    singles = [images[i : i + 1] for i in range(len(images))]
    runner.run(singles, min_seconds=1.0, min_requests=runner.nireq)  # warm-up
    return [
        runner.run(singles, min_seconds=seconds, min_requests=runner.nireq).images_per_second
        for _ in range(repeats)
    ]


def prepare_models(args, workdir: Path) -> tuple[Path, dict[str, Path], int]:
    """SavedModel, IR paths by precision, image size."""
    if args.run:
        run = RunDirectory(args.run)
        card = json.loads(run.model_card.read_text())
        irs = {p: run.ir(p) for p in ("fp32", "int8")}
        return run.saved_model, {p: x for p, x in irs.items() if x.exists()}, card["image_size"]
    from workloads.optimize.convert import convert_saved_model, save_ir
    from workloads.training.keras_compat import import_tf_and_keras
    from workloads.training.model import build_model
    from workloads.training.train import export_saved_model

    tf, keras = import_tf_and_keras()
    train_cfg = TrainConfig(backbone=args.backbone, image_size=args.image_size, weights="none")
    model = build_model(
        keras, backbone=args.backbone, image_size=args.image_size, num_classes=NUM_CLASSES, weights="none"
    ).model
    saved_model = workdir / "saved_model"
    export_saved_model(tf, keras, model, train_cfg, saved_model)
    fp32 = save_ir(
        convert_saved_model(saved_model, args.image_size, NUM_CLASSES),
        workdir / "fp32",
        compress_to_fp16=False,
    )
    return saved_model, {"fp32": fp32}, args.image_size


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a trained run directory (default: build the default model)")
    parser.add_argument("--backbone", default=TrainConfig.backbone)
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per repetition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--infer-precision",
        default="f32",
        choices=["f32", "bf16"],
        help="OpenVINO's INFERENCE_PRECISION_HINT (its CPU default is bf16 on AVX512_BF16/AMX CPUs)",
    )
    args = parser.parse_args()
    opt_out_of_openvino_telemetry()

    with tempfile.TemporaryDirectory() as tmp:
        saved_model, irs, size = prepare_models(args, Path(tmp))
        from workloads.training.keras_compat import import_tf_and_keras

        tf, _ = import_tf_and_keras()
        import openvino as ov
        import openvino.properties.hint as hints

        images = np.random.default_rng(0).uniform(0, 255, (args.batch_size, size, size, 3)).astype(np.float32)
        results: dict[str, list[float]] = {}
        serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
        batch = tf.constant(images)
        results[f"tf-batch{args.batch_size}"] = timed(
            lambda: serve(image=batch), len(images), args.seconds, args.repeats
        )
        core = ov.Core()
        for precision, xml in irs.items():
            pinned = {hints.inference_precision: args.infer_precision}
            latency = core.compile_model(
                str(xml), "CPU", {hints.performance_mode: hints.PerformanceMode.LATENCY, **pinned}
            )
            results[f"ov-{precision}-sync-b{args.batch_size}"] = timed(
                lambda c=latency: c({0: images}), len(images), args.seconds, args.repeats
            )
            throughput = core.compile_model(
                str(xml), "CPU", {hints.performance_mode: hints.PerformanceMode.THROUGHPUT, **pinned}
            )
            results[f"ov-{precision}-async-b1"] = openvino_async(
                throughput, images, args.seconds, args.repeats
            )

    model = args.run.name if args.run else f"{args.backbone} @ {size}px (random weights)"
    print(
        f"model: {model} · TensorFlow {tf.__version__} · OpenVINO {ov.get_version()} · {os.cpu_count()} CPUs"
        f" · OpenVINO inference precision {args.infer_precision}"
    )
    tf_best = max(np.median(r) for name, r in results.items() if name.startswith("tf-"))
    for name, rates in results.items():
        median = float(np.median(rates))
        print(
            f"{name:22s} {median:8.1f} img/s  (range {min(rates):.1f}–{max(rates):.1f})  "
            f"{median / tf_best:5.2f}x TensorFlow"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
