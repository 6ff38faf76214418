"""The toolkit's in-process OpenVINO figure vs OpenVINO's own ``benchmark_app``, same IR and settings.

    .venv/bin/python benchmarks/inprocess_vs_benchmark_app.py --xml path/to/model.xml
    .venv/bin/python benchmarks/inprocess_vs_benchmark_app.py --default-model   # random weights
    .venv/bin/python benchmarks/inprocess_vs_benchmark_app.py --artifacts-dir artifacts --precision int8

Same hint, batch, infer requests (benchmark_app's -nireq; default OpenVINO's optimal number),
inference precision (-infer_precision, default f32: on AVX512_BF16 / AMX CPUs OpenVINO otherwise
runs bf16) and input element type (-ip f32: the IR's FP32 tensor, which benchmark_app would feed
as u8 for an image input). Rounds are interleaved — benchmark_app, then each toolkit variant — so a drifting
machine hits all alike; the medians of the rounds are compared (goal: within 5 %). Each toolkit
runner measures in a fresh process of its own with its one compiled model, as benchmark_app does.

  benchmark_app          -b: the IR reshaped to a static batch
  benchmark_app-dynamic  -shape image[-1,S,S,3] -data_shape image[B,S,S,3] -inference_only True:
                         the IR's dynamic batch, inputs set once as for a static model
  async-static    workloads.bench.inprocess.AsyncRunner, batch made static (vs benchmark_app)
  async-dynamic   the same loop on the IR's dynamic batch, as the local server and OVMS compile it
                  (vs benchmark_app-dynamic)
  bench-client    the bench's in-process client (AsyncOpenVinoClient) under the bench's closed loop
                  (workloads.bench.scenarios.run_load) with --concurrency requests in flight
                  (vs benchmark_app-dynamic)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from contracts.config import load_config
from contracts.errors import ToolkitError
from workloads.bench.inprocess import AsyncOpenVinoClient, AsyncRunner, compile_ir, optimal_nireq
from workloads.bench.scenarios import prepare_requests, run_load
from workloads.telemetry import opt_out_of_openvino_telemetry

PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


def benchmark_app(xml: Path, args: argparse.Namespace, nireq: int, dynamic: tuple[int, ...] = ()) -> float:
    """benchmark_app's throughput (FPS = images/s) for the settings; with ``dynamic`` (the static
    input shape) the batch dimension stays dynamic and the data has that shape."""
    if dynamic:
        size = ",".join(str(d) for d in dynamic[1:])
        shape = ["-shape", f"image[-1,{size}]", "-data_shape", f"image[{args.batch},{size}]"]
        # On a dynamic model benchmark_app refills the inputs inside its loop unless told; the
        # toolkit's loop sets each request's tensor once, as benchmark_app does for static models.
        shape += ["-inference_only", "True"]
    else:
        shape = ["-b", str(args.batch)]  # benchmark_app reshapes the IR to this static batch
    command = [
        shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app")),
        "-m", str(xml), "-d", "CPU", "-hint", args.hint.lower(), *shape,
        "-nireq", str(nireq), "-t", str(args.seconds), "-infer_precision", args.infer_precision,
        # benchmark_app feeds an image-like input as u8 unless told (its -ip default for images):
        # a u8→f32 conversion it adds in the graph, on a quarter of the bytes. The server and the
        # toolkit's runners take the IR's own FP32 tensor, so benchmark_app must too.
        "-ip", "f32",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", result.stdout)
    if result.returncode != 0 or not match:
        tail = (result.stdout + result.stderr)[-500:]
        raise ToolkitError(f"benchmark_app failed (exit {result.returncode}):\n{tail}")
    return float(match.group(1))


def compile_properties(args: argparse.Namespace) -> dict:
    return {"PERFORMANCE_HINT": args.hint, "INFERENCE_PRECISION_HINT": PRECISIONS[args.infer_precision]}


def default_model_ir(workdir: Path) -> Path:
    """The default model (backbone and image size of TrainConfig) with random weights, exported and
    converted as training and `invoke optimize` do: speed does not depend on the weights' values."""
    from contracts.config import TrainConfig
    from workloads.classes import NUM_CLASSES
    from workloads.optimize.convert import convert_saved_model, save_ir
    from workloads.training.keras_compat import import_tf_and_keras
    from workloads.training.model import build_model
    from workloads.training.train import export_saved_model

    tf, keras = import_tf_and_keras()
    train = TrainConfig(weights="none")
    model = build_model(
        keras, backbone=train.backbone, image_size=train.image_size, num_classes=NUM_CLASSES, weights="none"
    ).model
    export_saved_model(tf, keras, model, train, workdir / "saved_model")
    converted = convert_saved_model(workdir / "saved_model", train.image_size, NUM_CLASSES)
    return save_ir(converted, workdir / "fp32", compress_to_fp16=False)


def find_xml(args: argparse.Namespace, workdir: Path) -> Path:
    if args.default_model:
        # Built in a child process: TensorFlow loaded in the measuring process slows OpenVINO there
        # (about 12 % in one quiet run here), and benchmark_app's process has none.
        command = [sys.executable, __file__, "--build-default-model-into", str(workdir)]
        if subprocess.run(command, check=False).returncode != 0:
            raise ToolkitError("building the default model failed (see above)")
        return workdir / "fp32" / "model.xml"
    if args.xml:
        return Path(args.xml)
    from workloads.bench.run import find_published

    config = load_config({"artifacts_dir": args.artifacts_dir})
    return find_published(config.paths.model_repository, config.optimize.model_name, args.precision).xml


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--xml", help="the IR (default: the latest published --precision model)")
    parser.add_argument(
        "--default-model", action="store_true", help="build the default model with random weights instead"
    )
    parser.add_argument("--artifacts-dir", default="artifacts", help="where the published models are")
    parser.add_argument("--precision", default="fp32", help="published model to use without --xml")
    parser.add_argument("--hint", default="THROUGHPUT", choices=["THROUGHPUT", "LATENCY"])
    parser.add_argument("--batch", type=int, default=16, help="images per request (benchmark_app -b)")
    parser.add_argument("--nireq", type=int, default=0, help="infer requests (0: OpenVINO's optimal)")
    parser.add_argument("--infer-precision", default="f32", choices=sorted(PRECISIONS))
    parser.add_argument("--seconds", type=int, default=15, help="each measurement (benchmark_app -t)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="bench-client: requests in flight (bench.concurrency)"
    )
    parser.add_argument("--build-default-model-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=TOOLKIT_RUNNERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_default_model_into:
        default_model_ir(args.build_default_model_into)
        return 0
    if min(args.batch, args.seconds, args.rounds, args.concurrency) < 1 or args.nireq < 0:
        raise ToolkitError("--batch, --seconds, --rounds and --concurrency must be >= 1, --nireq >= 0")
    opt_out_of_openvino_telemetry()
    if args.measure:
        print(f"images/s {measure(args, Path(args.xml), args.measure):.3f}", flush=True)
        # The figure is out; skip tearing OpenVINO down. Destroying a compiled model right after its
        # AsyncInferQueue's callbacks once hung (its stream thread waiting for the GIL the destructor
        # held) and, at interpreter exit, once aborted ("terminate called without an active exception").
        os._exit(0)
    workdir = Path(tempfile.mkdtemp(prefix="inprocess-vs-benchmark-app-"))
    try:
        return compare(args, find_xml(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


TOOLKIT_RUNNERS = ("async-static", "async-dynamic", "bench-client")
# Each toolkit figure and the benchmark_app figure it is compared with (same static/dynamic batch).
REFERENCES = {
    "async-static": "benchmark_app",
    "async-dynamic": "benchmark_app-dynamic",
    "bench-client": "benchmark_app-dynamic",
}


def measure(args: argparse.Namespace, xml: Path, runner: str) -> float:
    """One toolkit runner's images/s, in this (fresh) process: its model compiled alone, as
    benchmark_app's is, one warm-up second, then ``--seconds``."""
    properties = compile_properties(args)
    static = compile_ir(xml, properties, batch_size=args.batch)
    nireq = args.nireq or optimal_nireq(static)
    shape = tuple(d.get_length() for d in static.input(0).get_partial_shape())
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 255, shape).astype(np.float32) for _ in range(max(nireq, args.concurrency))]
    if runner == "bench-client":
        del static
        client = AsyncOpenVinoClient(
            xml, model=xml.stem, image_size=0, compile_config=properties, nireq=nireq
        )
        prepared = prepare_requests(client, batches)
        run_load(client, prepared, concurrency=args.concurrency, min_seconds=1.0, min_requests=nireq)
        window = run_load(
            client, prepared, concurrency=args.concurrency, min_seconds=args.seconds, min_requests=nireq
        )
        client.close()
        if window.errors:
            raise ToolkitError(f"bench-client: {window.errors} requests failed: {window.first_error}")
        return sum(window.images) / window.seconds
    compiled = static if runner == "async-static" else compile_ir(xml, properties)
    if runner != "async-static":
        del static
    loop = AsyncRunner(compiled, nireq=nireq)
    loop.run(batches, min_seconds=1.0, min_requests=nireq)  # warm-up, as benchmark_app's first inference
    return loop.run(batches, min_seconds=args.seconds, min_requests=nireq).images_per_second


def measured_in_child(args: argparse.Namespace, xml: Path, runner: str) -> float:
    """``measure`` in a child process: no other compiled model (and no TensorFlow) beside it."""
    command = [
        sys.executable, __file__, "--xml", str(xml), "--measure", runner,
        "--hint", args.hint, "--batch", str(args.batch), "--nireq", str(args.nireq),
        "--infer-precision", args.infer_precision, "--seconds", str(args.seconds),
        "--concurrency", str(args.concurrency),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"^images/s ([\d.]+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or not match:
        tail = (result.stdout + result.stderr)[-500:]
        raise ToolkitError(f"{runner} failed (exit {result.returncode}):\n{tail}")
    return float(match.group(1))


def compare(args: argparse.Namespace, xml: Path) -> int:
    if not xml.is_file():
        raise ToolkitError(f"{xml} does not exist")
    static = compile_ir(xml, compile_properties(args), batch_size=args.batch)
    nireq = args.nireq or optimal_nireq(static)
    shape = tuple(d.get_length() for d in static.input(0).get_partial_shape())
    print(
        f"{xml} · {args.hint} · batch {args.batch} · nireq {nireq} · infer_precision {args.infer_precision} "
        f"· {args.rounds} rounds of {args.seconds} s, each runner in a process of its own (executed "
        f"precision: {static.get_property('INFERENCE_PRECISION_HINT')})",
        flush=True,
    )
    del static
    figures: dict[str, list[float]] = {
        "benchmark_app": [],
        "benchmark_app-dynamic": [],
        **{name: [] for name in TOOLKIT_RUNNERS},
    }
    for number in range(1, args.rounds + 1):
        figures["benchmark_app"].append(benchmark_app(xml, args, nireq))
        figures["benchmark_app-dynamic"].append(benchmark_app(xml, args, nireq, dynamic=shape))
        for name in TOOLKIT_RUNNERS:
            figures[name].append(measured_in_child(args, xml, name))
        print(f"round {number}: " + " · ".join(f"{k} {v[-1]:.1f}" for k, v in figures.items()), flush=True)
    print("| runner | images/s (median) | rounds | ratio to | ratio | goal |")
    print("|---|---:|---|---|---:|---|")
    for name, values in figures.items():
        value = statistics.median(values)
        rounds = ", ".join(f"{v:.1f}" for v in values)
        if name in REFERENCES:
            ratio = value / statistics.median(figures[REFERENCES[name]])
            print(f"| {name} | {value:.1f} | {rounds} | {REFERENCES[name]} | {ratio:.3f} | within 5 % |")
        else:
            print(f"| {name} | {value:.1f} | {rounds} | — | — | — |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
