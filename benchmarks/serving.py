"""Serving overhead, trust in the tool, and FP32 vs INT8 vs TensorFlow — measured in one run.

    .venv/bin/invoke pipeline              # once: a trained, optimized, published model
    .venv/bin/python benchmarks/serving.py      # starts the local server if needed

Prints two tables (goals from the serving issue):
  1. served (gRPC, local server) vs in-process OpenVINO, same IR and hint:
     batch throughput ratio (goal >= 0.90) and real-time p50 overhead (goal <= 1 ms), with where
     the difference goes: the server's own time per request (its /metrics) beside the client's,
     and the CPU seconds per request of the client and the server processes (/proc/<pid>/stat);
  2. OpenVINO FP32 vs INT8 vs TensorFlow, in process, batch scenario.
The in-process runner against OpenVINO's own benchmark_app (same IR, hint, batch, requests in
flight and input type) is benchmarks/inprocess_vs_benchmark_app.py.
Every figure is the median of the toolkit's repetitions (bench.repetitions, min duration).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from contracts.config import load_config, replace
from contracts.errors import ToolkitError
from workloads.bench.conditions import LoadMonitor
from workloads.bench.run import run_bench
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifacts-dir", default="artifacts")
    parser.add_argument("--precision", default="int8", help="model compared in table 1")
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "rest"], help="table 1: served over")
    parser.add_argument("--tables", default="1,2", help="which tables to measure, e.g. 2 or 1,2")
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
        served_vs_in_process(config, args.precision, args.protocol, bench)
    if 2 in tables:
        runtimes(bs, conc, bench)
    return 0


def served_vs_in_process(config, precision: str, protocol: str, bench) -> None:
    print(
        f"1/2 served vs in-process ({precision}, {protocol}, hint {config.serving.performance_hint}) …",
        flush=True,
    )
    # One scenario per bench, so each one's CPU seconds are its own.
    served = {name: bench("server", (name,), protocol=protocol) for name in ("batch", "realtime")}
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


def runtimes(bs: int, conc: int, bench) -> None:
    print("2/2 OpenVINO FP32 vs INT8 vs TensorFlow, in process …", flush=True)
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
