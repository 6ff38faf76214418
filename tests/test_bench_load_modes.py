"""The load modes (sweep, rate, max-rate) end to end against the real local server on loopback.

Tiny windows and bounds keep each run to a few seconds; the contract is what is checked: a
document that follows the schema, one measured point per level, windows bounded by max_windows,
the report's curve and rate tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import free_ports
from test_bench_server import RETRY, artifacts_dir, make_config, start_server

from workloads.bench.report import write_report
from workloads.bench.results import validate_results
from workloads.bench.run import run_bench
from workloads.serving import local

pytestmark = pytest.mark.slow

TINY_WINDOWS = {
    "warmup_seconds": 0.1,
    "window_seconds": 0.2,
    "stability_percent": 50.0,
    "stable_windows": 2,
    "max_windows": 3,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, served_repository):
    artifacts = artifacts_dir(tmp_path_factory.mktemp("load-modes") / "artifacts", served_repository)
    config = make_config(artifacts, free_ports(2))
    start_server(config)
    yield config
    local.stop(config, progress=lambda line: None)


def bench_config(server, **bench):
    ports = [server.serving.http_port, server.serving.grpc_port]
    return make_config(Path(server.artifacts_dir), ports, **{**TINY_WINDOWS, **bench})


def test_sweep_rate_and_max_rate_against_the_local_server(server, tmp_path):
    config = bench_config(
        server,
        protocol="grpc",
        batch_size=2,
        sweep_concurrency=[1, 2],
        request_rates=[10, 20],
        max_in_flight=4,
        p99_bound_ms=500,
        rate_search_start=10,
        rate_search_steps=3,
    )
    lines: list[str] = []
    document, path = run_bench(
        config, target="local", scenarios=("sweep", "rate", "max-rate"), progress=lines.append, retry=RETRY
    )
    validate_results(document)
    assert set(document["scenarios"]) == {"sweep", "rate", "max-rate"}
    assert document["settings"]["windows"] == {
        "window_seconds": 0.2,
        "stability_percent": 50.0,
        "stable_windows": 2,
        "max_windows": 3,
    }

    sweep = document["scenarios"]["sweep"]
    assert sweep["batch_size"] == 2 and [p["concurrency"] for p in sweep["points"]] == [1, 2]
    rate = document["scenarios"]["rate"]
    assert rate["batch_size"] == 1 and rate["distribution"] == "poisson"
    assert [p["offered_rps"] for p in rate["points"]] == [10.0, 20.0]
    for point in sweep["points"] + rate["points"]:
        assert 2 <= len(point["windows"]) <= 3 and point["requests"] > 0
        assert point["stable"] or len(point["windows"]) == 3  # unstable only once max_windows ran
        assert 0 < point["p50_ms"] <= point["p90_ms"] <= point["p99_ms"]
    search = document["scenarios"]["max-rate"]
    assert 1 <= len(search["steps"]) <= 3 and search["p99_bound_ms"] == 500
    assert search["max_rps"] is None or search["max_rps"] >= 10 / 8  # halved at most twice

    assert any(line.startswith("sweep concurrency 2: ") for line in lines)
    assert any(line.startswith("rate 20/s: ") for line in lines)
    assert any(line.startswith("max-rate: ") for line in lines)
    assert document["known_answer"] == {"images": 8, "before": "pass", "after": "pass"}

    markdown, _chart = write_report([path], tmp_path / "report", {}, progress=lambda line: None)
    text = markdown.read_text()
    assert "## Concurrency sweep" in text and "## Request rate" in text and "## Highest rate" in text
    assert (tmp_path / "report" / "curve.png").stat().st_size > 0
