"""Serving overhead, trust in the tool, and FP32 vs INT8 vs TensorFlow — measured in one run.

    .venv/bin/invoke pipeline              # once: a trained, optimized, published model
    .venv/bin/python benchmarks/serving.py      # starts the local server if needed

Prints three tables (goals from the serving issue):
  1. served (gRPC, local server) vs in-process OpenVINO, same IR and hint:
     batch throughput ratio (goal >= 0.90) and real-time p50 overhead (goal <= 1 ms), with where
     the difference goes: the server's own time per request (its /metrics) beside the client's,
     and the CPU seconds per request of the client and the server processes (/proc/<pid>/stat);
  2. the tool's in-process OpenVINO figure vs OpenVINO's own benchmark_app on the same IR and
     hint, batch 1 with benchmark_app's number of requests in flight (goal: within 5%);
  3. OpenVINO FP32 vs INT8 vs TensorFlow, in process, batch scenario.
Every figure is the median of the toolkit's repetitions (bench.repetitions, min duration).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from contracts.config import load_config, replace
from contracts.errors import ToolkitError
from contracts.model_repository import execution_precision
from workloads.bench.conditions import LoadMonitor
from workloads.bench.run import find_published, run_bench
from workloads.bench.server_metrics import process_cpu_seconds
from workloads.serving.local import start


def quiet(_message: str) -> None:
    pass


@dataclass
class WithServerCpu(LoadMonitor):
    """The bench's load monitor, also reading the server process's CPU seconds around the scenarios."""

    server_pid: int = 0
    server_seconds: float = 0.0
    _server_before: float = 0.0

    def start(self) -> None:
        self._server_before = process_cpu_seconds(self.server_pid)
        super().start()

    def conditions(self) -> dict:
        conditions = super().conditions()
        self.server_seconds = process_cpu_seconds(self.server_pid) - self._server_before
        return conditions


def median(document: dict, scenario: str, key: str) -> float:
    return document["scenarios"][scenario]["summary"][key]["median"]


def benchmark_app_fps(xml: Path, seconds: int, nireq: int, infer_precision: str) -> float:
    command = [
        shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app")),
        "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-b", "1",
        "-nireq", str(nireq), "-t", str(seconds), "-infer_precision", infer_precision,
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
    parser.add_argument(
        "--overrides",
        default="{}",
        help='config sections as JSON, e.g. \'{"serving": {"http_port": 18000, "grpc_port": 18001}}\'',
    )
    args = parser.parse_args()
    tables = {int(t) for t in args.tables.split(",")}
    try:
        overrides = json.loads(args.overrides)
    except ValueError as exc:
        raise ToolkitError(f"--overrides is not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ToolkitError("--overrides must be a JSON object of config sections")

    config = load_config({**overrides, "artifacts_dir": args.artifacts_dir})
    config = replace(config, "bench", precision=args.precision, concurrency=args.concurrency)
    server = start(config, progress=quiet)

    def bench(runtime: str, scenarios=("batch", "realtime"), **bench_changes) -> dict:
        """One bench; ``document["cpu"]``: CPU seconds of this process and of the server during its
        scenarios (warm-ups included, model loading and known-answer checks not)."""
        bench_config = replace(config, "bench", **bench_changes)
        monitors: list[WithServerCpu] = []

        def monitor(server_here: bool) -> WithServerCpu:
            monitors.append(WithServerCpu(server_here, server_pid=server.pid))
            return monitors[-1]

        document, _path = run_bench(
            bench_config,
            target="local",
            runtime=runtime,
            scenarios=scenarios,
            progress=quiet,
            load_monitor=monitor,
        )
        conditions = document["conditions"]
        document["cpu"] = {
            "client": conditions["client_cpu_seconds"],
            "server": monitors[-1].server_seconds,
            "seconds": conditions["seconds"],
        }
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
    # One scenario per bench, so each one's CPU seconds are its own.
    served = {name: bench("server", (name,), protocol="grpc") for name in ("batch", "realtime")}
    local = {name: bench("openvino", (name,)) for name in ("batch", "realtime")}
    served_ips = median(served["batch"], "batch", "images_per_second")
    local_ips = median(local["batch"], "batch", "images_per_second")
    served_p50 = median(served["realtime"], "realtime", "p50_ms")
    local_p50 = median(local["realtime"], "realtime", "p50_ms")
    bs, conc = config.bench.batch_size, config.bench.concurrency
    print(f"| measure ({precision}, batch {bs}x{conc}) | served | in-process | result | goal |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| batch images/s | {served_ips:.1f} | {local_ips:.1f} | ratio {served_ips / local_ips:.3f} "
        "| >= 0.90 |"
    )
    print(
        f"| real-time p50 ms | {served_p50:.2f} | {local_p50:.2f} | +{served_p50 - local_p50:.2f} ms "
        "| <= 1 ms |"
    )
    print()
    print(
        "| where the time goes | client CPU ms/request | server CPU ms/request | client · server cores "
        "| server ms/request (request · inference) | client ms/request |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("batch", "realtime"):
        for label, document in (("served", served[name]), ("in-process", local[name])):
            requests = sum(r["requests"] for r in document["scenarios"][name]["repetitions"])
            cpu = document["cpu"]
            times = (document.get("server_time") or {}).get("scenarios", {}).get(name)
            server_ms = (
                f"{times['mean_request_ms']:.2f} · {times['mean_inference_ms']:.2f}"
                if times and times["mean_request_ms"] is not None and times["mean_inference_ms"] is not None
                else "—"
            )
            if name == "realtime":
                client_ms = median(document, name, "mean_ms")
            else:  # Little's law: requests in flight / requests per second
                client_ms = 1000 * conc * bs / median(document, name, "images_per_second")
            print(
                f"| {name}, {label} | {cpu['client'] / requests * 1000:.2f} "
                f"| {cpu['server'] / requests * 1000:.2f} "
                f"| {cpu['client'] / cpu['seconds']:.2f} · {cpu['server'] / cpu['seconds']:.2f} "
                f"| {server_ms} | {client_ms:.2f} |"
            )
    print(
        "(CPU over each scenario including its warm-up, per request of its repetitions; cores = CPU "
        "seconds per second. In process the client row holds the inference; served, the client "
        "row is the load generator and tritonclient, taken from the same cores the server infers on.)"
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
        references.append(
            benchmark_app_fps(xml, args.benchmark_app_seconds, nireq, execution_precision(args.precision))
        )
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
