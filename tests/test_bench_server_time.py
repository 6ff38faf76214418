"""Server-side time beside client time: Prometheus histogram deltas from OVMS and the local server."""

from __future__ import annotations

import pytest

from workloads.bench.server_metrics import (
    LOCAL_METRICS,
    OVMS_METRICS,
    ServerTimer,
    histogram_totals,
    http_scrape,
    in_process_timer,
    metrics_url,
    server_time,
)

MODEL = "bone-marrow-fp32"


def ovms_text(grpc: tuple[int, int], rest: tuple[int, int], inference: tuple[int, int]) -> str:
    """/metrics as OVMS prints it (docs/metrics_output.out of openvinotoolkit/model_server, trimmed):
    (count, sum µs) per series; another model and the other histograms alongside."""

    def series(name: str, labels: str, count: int, total: int) -> str:
        buckets = "".join(
            f'{name}_bucket{{{labels},le="{le}"}} {count if le == "+Inf" else 0}\n'
            for le in ("10", "18", "1101", "121439", "+Inf")
        )
        return f"{name}_count{{{labels}}} {count}\n{name}_sum{{{labels}}} {total}\n{buckets}"

    return (
        "# HELP ovms_requests_success Number of successful requests to a model or a DAG.\n"
        "# TYPE ovms_requests_success counter\n"
        'ovms_requests_success{api="KServe",interface="gRPC",method="ModelInfer",'
        f'name="{MODEL}",version="1"}} {grpc[0]}\n'
        "# HELP ovms_request_time_us Processing time of requests to a model or a DAG.\n"
        "# TYPE ovms_request_time_us histogram\n"
        + series("ovms_request_time_us", f'interface="gRPC",name="{MODEL}",version="1"', *grpc)
        + series("ovms_request_time_us", f'interface="REST",name="{MODEL}",version="1"', *rest)
        + series("ovms_request_time_us", 'interface="gRPC",name="resnet",version="1"', 500, 9_000_000)
        + "# HELP ovms_inference_time_us Inference execution time in the OpenVINO backend.\n"
        "# TYPE ovms_inference_time_us histogram\n"
        + series("ovms_inference_time_us", f'name="{MODEL}",version="1"', *inference)
        + series("ovms_inference_time_us", 'name="resnet",version="1"', 500, 8_000_000)
        + "# HELP ovms_streams Number of OpenVINO execution streams.\n"
        "# TYPE ovms_streams gauge\n"
        f'ovms_streams{{name="{MODEL}",version="1"}} 2\n'
    )


def test_ovms_histograms_sum_every_interface_of_the_model_only():
    totals = histogram_totals(
        ovms_text((4, 400_000), (1, 50_000), (5, 300_000)), "ovms_request_time_us", "name", MODEL
    )
    assert totals is not None and (totals.count, totals.total) == (5, 450_000)
    assert histogram_totals(ovms_text((0, 0), (0, 0), (0, 0)), "ovms_nothing", "name", MODEL) is None


def test_the_delta_of_two_ovms_scrapes_is_the_scenarios_mean_time_per_request():
    before = ovms_text((4, 400_000), (0, 0), (4, 320_000))
    after = ovms_text((104, 5_400_000), (0, 0), (104, 4_320_000))  # 100 requests of 50 ms, inference 40 ms
    figures = server_time(before, after, OVMS_METRICS, MODEL)
    assert figures.requests == 100 and figures.mean_request_ms == pytest.approx(50.0)
    assert figures.inferences == 100 and figures.mean_inference_ms == pytest.approx(40.0)


def test_a_restarted_server_gives_no_figure_rather_than_a_negative_one():
    before = ovms_text((104, 5_400_000), (0, 0), (104, 4_320_000))
    figures = server_time(before, ovms_text((3, 90_000), (0, 0), (3, 60_000)), OVMS_METRICS, MODEL)
    assert figures.requests == 0 and figures.mean_request_ms is None and figures.mean_inference_ms is None


def local_text(requests: tuple[int, float], predictions: tuple[int, float]) -> str:
    """The local server's page: prometheus_client's own exposition (seconds, model_name label)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    for name, (count, total) in (
        ("kserve_openvino_request_seconds", requests),
        ("request_predict_seconds", predictions),
    ):
        histogram = Histogram(name, "time", ["model_name"], registry=registry)
        for _ in range(count):
            histogram.labels(model_name=MODEL).observe(total / count)
    return generate_latest(registry).decode()


def test_the_local_servers_histograms_in_seconds():
    figures = server_time(
        local_text((2, 0.02), (2, 0.016)), local_text((12, 0.12), (12, 0.096)), LOCAL_METRICS, MODEL
    )
    assert figures.requests == 10 and figures.mean_request_ms == pytest.approx(10.0)
    assert figures.mean_inference_ms == pytest.approx(8.0)


class Pages:
    """An injected scrape: the pages in turn, recording the URLs asked for."""

    def __init__(self, *pages: str | Exception):
        self.pages, self.urls = list(pages), []

    def __call__(self, url: str) -> str:
        self.urls.append(url)
        page = self.pages.pop(0)
        if isinstance(page, Exception):
            raise page
        return page


def test_the_timer_reads_before_and_after_each_scenario():
    pages = Pages(
        ovms_text((0, 0), (0, 0), (0, 0)),
        ovms_text((10, 200_000), (0, 0), (10, 150_000)),
        ovms_text((10, 200_000), (0, 0), (10, 150_000)),
        ovms_text((30, 300_000), (0, 0), (30, 190_000)),
    )
    timer = ServerTimer("http://127.0.0.1:9/metrics", OVMS_METRICS, MODEL, scrape=pages)
    for scenario in ("batch", "realtime"):
        with timer.measure(scenario):
            pass
    assert pages.urls == ["http://127.0.0.1:9/metrics"] * 4
    document = timer.as_dict()
    assert document["source"] == "http://127.0.0.1:9/metrics" and "reason" not in document
    assert document["scenarios"]["batch"] == {
        "requests": 10, "mean_request_ms": pytest.approx(20.0), "inferences": 10,
        "mean_inference_ms": pytest.approx(15.0),
    }  # fmt: skip
    assert document["scenarios"]["realtime"]["mean_request_ms"] == pytest.approx(5.0)


def test_a_server_that_cannot_be_read_leaves_the_figures_out_with_the_reason():
    timer = ServerTimer(
        "http://127.0.0.1:9/metrics", OVMS_METRICS, MODEL, scrape=Pages(ConnectionRefusedError("refused"))
    )
    with timer.measure("batch"):
        pass
    with timer.measure("realtime"):  # not asked again once it failed
        pass
    assert timer.as_dict() == {
        "source": "http://127.0.0.1:9/metrics",
        "scenarios": {},
        "reason": "cannot read http://127.0.0.1:9/metrics: refused",
    }


def test_a_server_with_metrics_off_says_so():
    page = "# HELP up x\n# TYPE up gauge\nup 1\n"
    timer = ServerTimer("http://127.0.0.1:9/metrics", OVMS_METRICS, MODEL, scrape=Pages(page))
    with timer.measure("batch"):
        pass
    assert "has no ovms_request_time_us histogram for bone-marrow-fp32" in timer.as_dict()["reason"]


def test_no_metrics_page_no_histograms_and_in_process_are_reasons_not_errors():
    assert "no REST endpoint" in ServerTimer(None, OVMS_METRICS, MODEL).as_dict()["reason"]
    assert "no known" in ServerTimer("http://127.0.0.1:9/metrics", None, MODEL).as_dict()["reason"]
    assert in_process_timer().as_dict() == {
        "source": None,
        "scenarios": {},
        "reason": "in process: no server",
    }


def test_the_metrics_page_is_on_the_rest_port():
    assert metrics_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("127.0.0.1:8000") == "http://127.0.0.1:8000/metrics"


# --- the real local server ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_local_server_reports_its_time_beside_the_clients(tmp_path, served_repository, protocol):
    from loopback import free_ports
    from test_bench_server import artifacts_dir, make_config

    from workloads.bench.results import validate_results
    from workloads.bench.run import run_bench
    from workloads.serving import local

    artifacts = artifacts_dir(tmp_path / "artifacts", served_repository)
    config = make_config(artifacts, free_ports(2), protocol=protocol, known_answer_images=0)
    info = local.start(config, progress=lambda line: None)
    try:
        page = http_scrape(metrics_url(info.http_url))
        assert "kserve_openvino_request_seconds" in page
        document, _ = run_bench(config, target="local", progress=lambda line: None)
    finally:
        local.stop(config, progress=lambda line: None)
    validate_results(document)
    server = document["server_time"]
    assert server["source"] == metrics_url(info.http_url) and "reason" not in server
    realtime = server["scenarios"]["realtime"]
    client = document["scenarios"]["realtime"]
    sent = sum(r["requests"] for r in client["repetitions"])
    assert realtime["requests"] >= sent  # the repetitions' requests and the warm-up's
    assert 0 < realtime["mean_inference_ms"] <= realtime["mean_request_ms"]
    assert realtime["mean_request_ms"] < max(r["mean_ms"] for r in client["repetitions"]) * 2
    batch = server["scenarios"]["batch"]
    assert batch["requests"] >= sum(r["requests"] for r in document["scenarios"]["batch"]["repetitions"])


def test_process_cpu_seconds_counts_what_a_process_spent(tmp_path):
    import os
    import time

    from workloads.bench.server_metrics import process_cpu_seconds

    before = process_cpu_seconds(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:  # burn 0.2 s of CPU
        pass
    assert process_cpu_seconds(os.getpid()) - before == pytest.approx(0.2, abs=0.05)
    # a command name with spaces and parentheses does not shift the fields
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "42").mkdir()
    stat = f"42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 {3 * ticks} {ticks} 0 0 20 0 1 0 5 0 0"
    (tmp_path / "42" / "stat").write_text(stat)
    assert process_cpu_seconds(42, proc=tmp_path) == pytest.approx(4.0)


def test_a_histogram_without_the_models_series_yet_counts_from_zero():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    histogram = Histogram("kserve_openvino_request_seconds", "time", ["model_name"], registry=registry)
    fresh = generate_latest(registry).decode()  # a server that has answered nothing yet
    totals = histogram_totals(fresh, "kserve_openvino_request_seconds", "model_name", MODEL)
    assert totals is not None and (totals.count, totals.total) == (0, 0)
    for _ in range(4):
        histogram.labels(model_name=MODEL).observe(0.01)
    figures = server_time(fresh, generate_latest(registry).decode(), LOCAL_METRICS, MODEL)
    assert figures.requests == 4 and figures.mean_request_ms == pytest.approx(10.0)
    assert figures.inferences == 0 and figures.mean_inference_ms is None  # no predict histogram here


def test_the_summary_shows_the_servers_time_or_why_there_is_none():
    from workloads.bench.run import server_time_lines

    figures = {"requests": 40, "mean_request_ms": 12.5, "inferences": 40, "mean_inference_ms": 11.0}
    assert server_time_lines(
        {"source": "http://127.0.0.1:8000/metrics", "scenarios": {"realtime": figures}}
    ) == [
        "server time (realtime, from its metrics): 40 requests · mean request 12.50 ms · "
        "mean inference 11.00 ms"
    ]
    unread = {"source": "http://127.0.0.1:8000/metrics", "scenarios": {}, "reason": "cannot read it"}
    assert server_time_lines(unread) == ["server time: none — cannot read it"]
    assert server_time_lines(in_process_timer().as_dict()) == []  # in process: nothing to say
