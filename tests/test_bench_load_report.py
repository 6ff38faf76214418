"""The report's load-mode sections and throughput–latency curve, from hand-made result documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_bench_report import png_size, result, table_rows, write_results

from workloads.bench.load_report import load_mode_sections
from workloads.bench.report import write_report
from workloads.bench.results import validate_results

WINDOWS = {"window_seconds": 2.0, "stability_percent": 10.0, "stable_windows": 3, "max_windows": 10}


def figures(rps: float, p50: float, p99: float, *, images: int = 1, offered: float | None = None) -> dict:
    values: dict[str, Any] = {
        "seconds": 2.0,
        "requests": int(rps * 2),
        "images": int(rps * 2) * images,
        "requests_per_second": rps,
        "images_per_second": rps * images,
        "mean_ms": p50,
        "p50_ms": p50,
        "p90_ms": (p50 + p99) / 2,
        "p99_ms": p99,
    }
    if offered is not None:
        scheduled = {"scheduled": int(offered * 2), "scheduled_rps": offered}
        values |= {"offered_rps": offered, **scheduled, "delayed": 1, "dropped": 0}
    return values


def point(rps: float, p50: float, p99: float, *, stable: bool = True, **kw: Any) -> dict:
    window = figures(rps, p50, p99, **kw)
    return {"stable": stable, "windows_used": 3, "windows": [window] * (3 if stable else 10), **window}


def load_result(created_at: str = "2025-05-02T10:00:00Z", **scenarios: Any) -> dict:
    document = result(
        "local", "local", "kserve-openvino", "int8", ips=None, latency=None, created_at=created_at
    )
    document["scenarios"] = scenarios
    document["settings"]["windows"] = WINDOWS
    validate_results(document)
    return document


SWEEP = {
    "batch_size": 16,
    "points": [
        {"concurrency": c, **point(rps, p50, p99, images=16)}
        for c, rps, p50, p99 in ((1, 10.0, 90.0, 110.0), (2, 18.0, 105.0, 140.0), (4, 20.0, 190.0, 260.0))
    ],
}
OPEN = {"batch_size": 1, "distribution": "poisson", "max_in_flight": 16, "seed": 0}
RATE = {
    **OPEN,
    "points": [point(9.9, 8.0, 15.0, offered=10.0), point(31.0, 40.0, 400.0, offered=40.0, stable=False)],
}
MAX_RATE = {
    **OPEN,
    "p99_bound_ms": 50.0,
    "min_achieved_fraction": 0.95,
    "max_rps": 20.0,
    "max_images_per_second": 20.0,
    "failed_rps": 40.0,
    "steps": [
        {"sustained": True, **point(10.0, 8.0, 15.0, offered=10.0)},
        {"sustained": True, **point(20.0, 9.0, 30.0, offered=20.0)},
        {"sustained": False, **point(31.0, 40.0, 400.0, offered=40.0)},
    ],
}


def test_each_mode_gets_its_table_with_stability_shown():
    text = load_mode_sections([load_result(sweep=SWEEP, rate=RATE, **{"max-rate": MAX_RATE})])
    assert "## Concurrency sweep (closed loop)" in text
    rows = table_rows(text)
    assert ["local int8 (bs 16)", "4", "320", "20.0", "190", "225", "260", "3 stable"] in rows
    overloaded = ["local int8 (poisson, bs 1)", "40.0", "31.0", "31.0", "40.0", "220", "400", "1", "0"]
    assert rows[8] == [*overloaded, "10 ⚠ not stable"]
    assert ["local int8 (poisson, bs 1)", "50.0", "20.0", "20.0", "40.0", "3"] in rows
    assert "windows of 2 s until 3 agree within ±10 %" in text
    assert "latency runs from the scheduled time" in text


def test_no_load_modes_no_sections_and_none_sustained_is_said():
    assert load_mode_sections([result("local", "local", "kserve-openvino", "int8")]) == ""
    nothing = {**MAX_RATE, "max_rps": None, "max_images_per_second": None, "failed_rps": 10.0}
    rows = table_rows(load_mode_sections([load_result(**{"max-rate": nothing})]))
    assert rows[-1][2:4] == ["none sustained", "—"]


def test_a_newer_sweep_never_hides_the_rows_batch_figures(tmp_path: Path):
    classic = result("local", "local", "kserve-openvino", "int8", created_at="2025-05-01T10:00:00Z")
    paths = write_results(tmp_path / "results", [classic, load_result(sweep=SWEEP)])
    markdown, chart = write_report(paths, tmp_path / "report", {}, progress=lambda line: None)
    text = markdown.read_text()
    assert chart.name == "report.png" and (tmp_path / "report" / "curve.png").is_file()
    main = text.split("## Concurrency sweep")[0]
    assert "100 [95.0–104]" in main  # the batch median of the older result
    assert "![Throughput against latency per row and load mode](curve.png)" in text
    assert png_size(tmp_path / "report" / "curve.png") == (1000, 600)


def test_load_modes_alone_make_a_report_with_the_curve_as_its_chart(tmp_path: Path):
    paths = write_results(tmp_path / "results", [load_result(rate=RATE)])
    markdown, chart = write_report(paths, tmp_path / "report", {}, progress=lambda line: None)
    assert chart == tmp_path / "report" / "curve.png" and chart.is_file()
    assert not (tmp_path / "report" / "report.png").exists()
    assert "## Request rate (open loop)" in markdown.read_text()
