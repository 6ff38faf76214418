"""Serving overhead, trust in the tool, and FP32 vs INT8 vs TensorFlow — measured in one run.

    .venv/bin/invoke pipeline              # once: a trained, optimized, published model
    .venv/bin/python benchmarks/serving.py      # starts the local server if needed

Prints three tables (goals from the serving issue):
  1. served (gRPC, local server) vs in-process OpenVINO, same IR and hint:
     batch throughput ratio (goal >= 0.90) and real-time p50 overhead (goal <= 1 ms);
  2. the tool's in-process OpenVINO figure vs OpenVINO's own benchmark_app on the same IR and
     hint, batch 1 with benchmark_app's number of requests in flight (goal: within 5%);
  3. OpenVINO FP32 vs INT8 vs TensorFlow, in process, batch scenario.
Every figure is the median of the toolkit's repetitions (bench.repetitions, min duration).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from contracts.config import load_config, replace
from contracts.errors import ToolkitError
from workloads.bench.run import find_published, run_bench
from workloads.serving.local import start


def quiet(_message: str) -> None:
    pass


def median(document: dict, scenario: str, key: str) -> float:
    return document["scenarios"][scenario]["summary"][key]["median"]


def benchmark_app_fps(xml: Path, seconds: int, nireq: int) -> float:
    command = [
        shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app")),
        "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-b", "1",
        "-nireq", str(nireq), "-t", str(seconds),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", output)
    if not match:
        raise ToolkitError(f"benchmark_app printed no throughput:\n{output[-500:]}")
    return float(match.group(1))


def optimal_requests(xml: Path) -> int:
    import openvino as ov
    import openvino.properties.hint as hints

    compiled = ov.Core().compile_model(
        str(xml), "CPU", {hints.performance_mode: hints.PerformanceMode.THROUGHPUT}
    )
    return int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifacts-dir", default="artifacts")
    parser.add_argument("--precision", default="int8", help="model compared in tables 1 and 2")
    parser.add_argument("--benchmark-app-seconds", type=int, default=15)
    parser.add_argument(
        "--rounds", type=int, default=3, help="table 2: interleaved rounds (tool, then benchmark_app)"
    )
    parser.add_argument("--tables", default="1,2,3", help="which tables to measure, e.g. 2 or 1,3")
    parser.add_argument(
        "--concurrency", type=int, help="batch scenario: requests in flight (default: bench.concurrency)"
    )
    args = parser.parse_args()
    tables = {int(t) for t in args.tables.split(",")}

    config = load_config({"artifacts_dir": args.artifacts_dir})
    config = replace(config, "bench", precision=args.precision, concurrency=args.concurrency)
    start(config, progress=quiet)

    def bench(runtime: str, scenarios=("batch", "realtime"), **bench_changes) -> dict:
        bench_config = replace(config, "bench", **bench_changes)
        document, _path = run_bench(
            bench_config, target="local", runtime=runtime, scenarios=scenarios, progress=quiet
        )
        return document

    bs, conc = config.bench.batch_size, config.bench.concurrency
    if 1 in tables:
        served_vs_in_process(config, args.precision, bench)
    if 2 in tables:
        tool_vs_benchmark_app(config, args, bench)
    if 3 in tables:
        runtimes(bs, conc, bench)
    return 0


def served_vs_in_process(config, precision: str, bench) -> None:
    print(
        f"1/3 served vs in-process ({precision}, gRPC, hint {config.serving.performance_hint}) …", flush=True
    )
    served = bench("server", protocol="grpc")
    local = bench("openvino")
    ratio = median(served, "batch", "images_per_second") / median(local, "batch", "images_per_second")
    overhead = median(served, "realtime", "p50_ms") - median(local, "realtime", "p50_ms")
    bs, conc = config.bench.batch_size, config.bench.concurrency
    print(f"| measure ({precision}, batch {bs}x{conc}) | served | in-process | result | goal |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| batch images/s | {median(served, 'batch', 'images_per_second'):.1f} "
        f"| {median(local, 'batch', 'images_per_second'):.1f} | ratio {ratio:.3f} | >= 0.90 |"
    )
    print(
        f"| real-time p50 ms | {median(served, 'realtime', 'p50_ms'):.2f} "
        f"| {median(local, 'realtime', 'p50_ms'):.2f} | +{overhead:.2f} ms | <= 1 ms |"
    )


def tool_vs_benchmark_app(config, args, bench) -> None:
    xml = find_published(config.paths.model_repository, config.optimize.model_name, args.precision).xml
    nireq = optimal_requests(xml)
    print(
        f"2/3 tool vs benchmark_app ({args.precision}, THROUGHPUT, batch 1, {nireq} requests in flight, "
        f"{args.rounds} interleaved rounds) …",
        flush=True,
    )
    tools, references = [], []
    for _round in range(args.rounds):  # interleaved, so the VM's drift hits both alike
        document = bench("openvino", ("batch",), batch_size=1, concurrency=nireq)
        tools.append(median(document, "batch", "images_per_second"))
        references.append(benchmark_app_fps(xml, args.benchmark_app_seconds, nireq))
    tool, reference = statistics.median(tools), statistics.median(references)
    print("| tool in-process images/s (rounds) | benchmark_app FPS (rounds) | difference of medians | goal |")
    print("|---:|---:|---:|---|")
    print(
        f"| {tool:.1f} ({', '.join(f'{t:.0f}' for t in tools)}) "
        f"| {reference:.1f} ({', '.join(f'{r:.0f}' for r in references)}) "
        f"| {tool / reference - 1:+.1%} | within 5% |"
    )


def runtimes(bs: int, conc: int, bench) -> None:
    print("3/3 OpenVINO FP32 vs INT8 vs TensorFlow, in process …", flush=True)
    rows = [
        ("OpenVINO INT8", bench("openvino", ("batch",), precision="int8")),
        ("OpenVINO FP32", bench("openvino", ("batch",), precision="fp32")),
        ("TensorFlow FP32", bench("tensorflow", ("batch",), precision="fp32")),
    ]
    baseline = median(rows[-1][1], "batch", "images_per_second")
    print(f"| runtime (batch {bs}x{conc}) | images/s | range | vs TensorFlow |")
    print("|---|---:|---:|---:|")
    for name, document in rows:
        summary = document["scenarios"]["batch"]["summary"]["images_per_second"]
        print(
            f"| {name} | {summary['median']:.1f} | {summary['min']:.1f}–{summary['max']:.1f} "
            f"| {summary['median'] / baseline:.2f}x |"
        )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
