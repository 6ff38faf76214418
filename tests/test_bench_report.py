"""`invoke bench.report`: loading, merging, the Markdown table, the chart and the report files."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from contracts.config import load_config
from contracts.errors import BenchError
from workloads.bench import report
from workloads.bench.pricing import Price, configured_report_prices
from workloads.bench.report import (
    bar_chart,
    batch_bar_label,
    cost_per_million,
    load_results,
    markdown_table,
    short_cpu_name,
    write_report,
)
from workloads.bench.results import validate_results

XEON_ICX = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"  # AVX-512 VNNI
XEON_SKX = "Intel(R) Xeon(R) Platinum 8124M CPU @ 3.00GHz"  # AVX-512, no VNNI
LAPTOP = "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"


def machine(cpu: str = XEON_ICX, *, avx512: bool = True, vnni: bool = True, amx: bool = False) -> dict:
    return {
        "cpu_model": cpu,
        "logical_cpus": 8,
        "flags": {
            "avx2": True,
            "avx512f": avx512,
            "avx512_vnni": vnni,
            "avx512_bf16": amx,
            "amx_tile": amx,
        },
    }


def result(
    target: str,
    pool: str | None,
    runtime: str,
    precision: str,
    *,
    protocol: str = "grpc",
    ips: tuple[float, float, float] | None = (100.0, 95.0, 104.0),
    latency: tuple[float, float, float, float] | None = (4.0, 3.9, 5.0, 6.5),  # paper avg, p50, p90, p99
    created_at: str = "2025-05-01T10:00:00Z",
    client: dict | None = None,
    server: dict | None = None,
    batch_size: int = 16,
    concurrency: int = 2,
    version: int | None = 3,
    sha256: str | None = "0123456789abcdef" * 4,
) -> dict[str, Any]:
    """A schema_version 1 result; ips = batch median/min/max, None = scenario not run."""
    scenarios: dict[str, Any] = {}
    if ips is not None:
        median, low, high = ips
        scenarios["batch"] = {
            "repetitions": [
                {"requests": 60, "images": 960, "errors": 0, "seconds": 960 / v, "images_per_second": v}
                for v in (low, median, high)
            ],
            "summary": {"images_per_second": {"median": median, "min": low, "max": high}},
        }
    if latency is not None:
        paper, p50, p90, p99 = latency

        def stats(v: float) -> dict[str, float]:
            return {"median": v, "min": v * 0.9, "max": v * 1.2}

        scenarios["realtime"] = {
            "repetitions": [
                {
                    "requests": 50,
                    "errors": 0,
                    "seconds": 1.0,
                    "mean_ms": p50,
                    "p50_ms": p50,
                    "p90_ms": p90,
                    "p99_ms": p99,
                    "paper_avg_ms": paper,
                }
            ]
            * 3,
            "summary": {
                "mean_ms": stats(p50),
                "p50_ms": stats(p50),
                "p90_ms": stats(p90),
                "p99_ms": stats(p99),
                "paper_avg_ms": stats(paper),
            },
        }
    return {
        "schema_version": 1,
        "created_at": created_at,
        "target": target,
        "pool": pool,
        "endpoint": None if target == "in-process" else "http://example:8000",
        "protocol": "in-process" if target == "in-process" else protocol,
        "runtime": runtime,
        "model": {
            "name": "bone-marrow",
            "version": version,
            "precision": precision,
            "image_size": 224,
            "sha256": sha256,
        },
        "versions": {"toolkit": "0.1.0", "openvino": "2026.4.1", "server": None},
        "client": client or machine(),
        "server": server,
        "settings": {
            "batch_size": batch_size,
            "concurrency": concurrency,
            "input_format": "tensor",
            "warmup_seconds": 2.0,
            "min_duration_seconds": 5.0,
            "min_requests": 50,
            "repetitions": 3,
            "paper_images": 10,
            "performance_hint": "THROUGHPUT",
        },
        "scenarios": scenarios,
        "known_answer": {"images": 8, "before": "pass", "after": "pass"},
    }


def fleet() -> list[dict[str, Any]]:
    """One result per row kind, deliberately out of report order."""
    return [
        result("in-process", None, "tensorflow", "fp32", ips=(40.0, 38.0, 41.5), latency=None),
        result("vsphere", "icelake", "kserve-openvino", "int8", ips=(310.0, 300.0, 322.0)),
        result("aws", "c6i", "ovms", "int8", ips=(412.3, 398.1, 420.7), latency=(3.21, 3.1, 3.9, 5.55)),
        result("local", "local", "kserve-openvino", "int8", ips=(220.0, 210.0, 230.0)),
        result(
            "aws",
            "c5",
            "ovms",
            "int8",
            ips=(180.0, 170.0, 185.0),
            server=machine(XEON_SKX, vnni=False),
        ),
        result("in-process", None, "openvino", "fp32", ips=(150.0, 140.0, 160.0), latency=None),
        result("local", "local", "kserve-openvino", "fp32", ips=None),
    ]


def write_results(directory: Path, results: list[dict[str, Any]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(results):
        path = directory / f"{index:02d}-{data['target']}-{data['model']['precision']}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(path)
    return paths


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_table_columns_and_row_order():
    rows = table_rows(markdown_table(fleet(), {}))
    header, separator, body = rows[0], rows[1], rows[2:]
    assert header == [
        "Target",
        "Pool",
        "Runtime",
        "Precision",
        "Batch (bs×conc) images/s median [min–max]",
        "Real-time avg of 10 images ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "Client CPU",
    ]
    assert len(separator) == len(header)
    assert [row[:4] for row in body] == [
        ["local", "local", "kserve-openvino (grpc)", "fp32"],
        ["local", "local", "kserve-openvino (grpc)", "int8"],
        ["aws", "c5", "ovms (grpc)", "int8"],
        ["aws", "c6i", "ovms (grpc)", "int8"],
        ["vsphere", "icelake", "kserve-openvino (grpc)", "int8"],
        ["in-process", "—", "openvino", "fp32"],
        ["in-process", "—", "tensorflow", "fp32"],
    ]
    assert all(len(row) == len(header) for row in body)


def test_cells_show_median_range_percentiles_and_missing_scenarios():
    body = table_rows(markdown_table(fleet(), {}))[2:]
    local_fp32, _, _, c6i, _, openvino, _ = body
    assert c6i[4] == "412 [398–421] (16×2)"
    assert c6i[5] == "3.21 [2.89–3.85]"
    assert c6i[6:9] == ["3.10", "3.90", "5.55"]
    assert local_fp32[4] == "—"  # batch not run
    assert local_fp32[5] != "—"
    assert openvino[4] == "150 [140–160] (16×2)"
    assert openvino[5:9] == ["—"] * 4  # real-time not run


def test_client_cpu_is_short_with_vnni_and_amx_badges():
    results = [
        result("aws", "c6i", "ovms", "int8", client=machine(XEON_ICX)),
        result("aws", "c7i", "ovms", "int8", client=machine("Intel(R) Xeon(R) Platinum 8488C", amx=True)),
        result("local", "local", "ovms", "int8", client=machine(LAPTOP, avx512=True, vnni=False)),
    ]
    cpus = [row[9] for row in table_rows(markdown_table(results, {}))[2:]]
    assert cpus == ["Core i7-1185G7", "Xeon Platinum 8375C `VNNI`", "Xeon Platinum 8488C `VNNI` `AMX`"]
    assert short_cpu_name("AMD EPYC 7R13 Processor") == "EPYC 7R13"
    assert short_cpu_name(None) == "unknown CPU"


def test_newest_result_wins_and_a_footnote_says_so(tmp_path: Path):
    old = result("aws", "c5", "ovms", "int8", ips=(50.0, 40.0, 60.0), created_at="2025-05-01T10:00:00Z")
    new = result("aws", "c5", "ovms", "int8", ips=(90.0, 80.0, 99.0), created_at="2025-05-02T10:00:00+00:00")
    other_batch = result("aws", "c5", "ovms", "int8", batch_size=32, created_at="2025-04-01T00:00:00Z")
    # Written newest first, so winning is by created_at, not by file order.
    paths = write_results(tmp_path, [new, old, other_batch])

    markdown = markdown_table(load_results([tmp_path]), {})
    body = table_rows(markdown)[2:]
    assert [row[4] for row in body] == ["90.0 [80.0–99.0] (16×2)", "100 [95.0–104] (32×2)"]
    (note,) = [line for line in markdown.splitlines() if "kept the newest" in line]
    assert "aws/c5 int8 16×2: 2 results for this row" in note
    assert f"2025-05-02T10:00:00+00:00, {paths[0].name}" in note
    assert f"dropped 2025-05-01T10:00:00Z, {paths[1].name}" in note


def test_cost_column_only_when_priced_and_computed_per_million_images():
    results = [
        result("aws", "c5", "ovms", "int8", ips=(100.0, 95.0, 104.0)),
        result("vsphere", "icelake", "ovms", "int8"),
        result("aws", "c6i", "ovms", "int8", ips=None),
    ]
    assert "$/M images" not in markdown_table(results, {})
    assert "$/M images" not in markdown_table(results, {"aws/gpu-pool": Price(1.0, "x")})

    # The default config: c5/c6i/c7i priced by instance type from the dated bench.prices table.
    markdown = markdown_table(results, configured_report_prices(load_config()))
    header, _, c5, c6i, icelake = table_rows(markdown)
    assert header[-1] == "$/M images"
    assert c5[-1] == "$0.236"  # 0.085 $/h / (100 img/s × 3600 s/h) × 1e6
    assert c6i[-1] == "—"  # priced, but no batch figure
    assert icelake[-1] == "—"  # no price (a vsphere-vm has no instance price)
    (note,) = [line for line in markdown.splitlines() if line.startswith("- $/M images")]
    assert "c5.large $0.085/h (bench.prices, us-east-1 on-demand, 2026-12-01) for aws/c5" in note
    # The user's target-wide price applies when the pool has none, and says where it came from.
    own = configured_report_prices(load_config({"bench": {"usd_per_hour": {"vsphere": 0.5}}}))
    priced = markdown_table(results, own)
    (_, _, _, _, icelake_priced) = table_rows(priced)
    assert icelake_priced[-1] == "$1.39"  # 0.5 / (100 × 3600) × 1e6
    assert "$0.5/h (bench.usd_per_hour) for vsphere/icelake" in priced
    assert cost_per_million(0.085, 100.0) == pytest.approx(0.2361, abs=1e-4)
    assert cost_per_million(0.085, None) is None


def test_the_sapphire_rapids_pool_is_priced_per_precision_row_and_its_chart_label_shows_the_cost():
    results = [
        result("aws", "c7i", "ovms", "int8", ips=(510.0, 500.0, 520.0), server=machine(amx=True)),
        result("aws", "c7i", "ovms", "fp32", ips=(255.0, 250.0, 260.0), server=machine(amx=True)),
    ]
    prices = configured_report_prices(load_config())
    assert prices["aws/c7i"] == Price(0.08925, "bench.prices, us-east-1 on-demand", "2026-12-01", "c7i.large")
    rows = {row[3]: row for row in table_rows(markdown_table(results, prices))[2:]}
    # 0.08925 $/h / (510 img/s × 3600 s/h) × 1e6 = $0.0486; at 255 img/s twice that.
    assert rows["int8"][-1] == "$0.0486" and rows["fp32"][-1] == "$0.0972"
    assert batch_bar_label(results[0], prices) == "  510 · $0.0486/M images"
    assert batch_bar_label(results[0], {}) == "  510"


def test_footnotes_name_model_known_answer_and_settings():
    results = [
        result("aws", "c6i", "ovms", "int8"),
        result("aws", "c5", "ovms", "fp32", version=None, sha256=None),
        result("local", "local", "ovms", "int8"),
    ]
    results[2]["known_answer"] = {"images": 8, "before": "pass", "after": "fail"}
    markdown = markdown_table(results, {})
    assert "Model bone-marrow v3 int8, 224px, sha256 0123456789ab: local int8, aws/c6i int8." in markdown
    assert "Model bone-marrow version unknown fp32, 224px, sha256 unknown: aws/c5 fp32." in markdown
    assert "local int8: before pass, after fail" in markdown
    assert "3 repetitions per scenario, each at least 5.0 s and 50 requests" in markdown

    results[2]["known_answer"]["after"] = "pass"
    assert "passed for every row" in markdown_table(results, {})


def test_vnni_caveat_for_an_inference_cpu_without_vnni_and_for_differing_clients():
    fast = [result("local", "local", "ovms", "int8"), result("in-process", None, "openvino", "int8")]
    assert "Caveat" not in markdown_table(fast, {})

    markdown = markdown_table(fleet(), {})
    caveats = [line for line in markdown.splitlines() if "understate INT8 gains" in line]
    assert len(caveats) == 1
    assert "lacks AVX-512 VNNI for aws/c5 int8 (Xeon Platinum 8124M);" in caveats[0]

    mixed = [
        result("local", "local", "ovms", "int8", client=machine(LAPTOP, avx512=False, vnni=False)),
        result("aws", "c6i", "ovms", "int8"),
    ]
    markdown = markdown_table(mixed, {})
    assert "client CPUs differ between rows (Core i7-1185G7; Xeon Platinum 8375C)" in markdown
    assert "lacks AVX-512 VNNI for local int8 (Core i7-1185G7, no AVX-512 at all);" in markdown
    # A remote row with an unknown server CPU says nothing about VNNI.
    assert "aws/c6i int8 (" not in markdown


def test_labels_disambiguate_rows_that_share_target_pool_and_precision():
    results = [
        result("in-process", None, "openvino", "fp32"),
        result("in-process", None, "tensorflow", "fp32"),
        result("aws", "c5", "ovms", "int8", protocol="rest"),
        result("aws", "c5", "ovms", "int8", protocol="grpc"),
    ]
    rows, _ = report.merge_results(results)
    assert report.row_labels(rows) == [
        "aws/c5 int8 [grpc]",
        "aws/c5 int8 [rest]",
        "in-process fp32 (openvino)",
        "in-process fp32 (tensorflow)",
    ]


def test_directory_and_file_inputs_are_loaded_in_name_order(tmp_path: Path):
    paths = write_results(tmp_path / "bench", fleet())
    (tmp_path / "bench" / "notes.txt").write_text("not a result")
    loaded = load_results([tmp_path / "bench"])
    assert [r[report.SOURCE_KEY] for r in loaded] == [str(p) for p in paths]
    assert len(load_results([paths[0], paths[3]])) == 2


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "at (top level): [1, 2] is not of type 'object'"),
        (
            json.dumps({**result("aws", "c5", "ovms", "int8"), "schema_version": 2}),
            "at schema_version: 1 was",
        ),
        (
            json.dumps({**result("aws", "c5", "ovms", "int8"), "target": "mars"}),
            "at target: 'mars' is not one of",
        ),
        (json.dumps({**result("aws", "c5", "ovms", "int8"), "model": {}}), "at model: 'name' is a required"),
        (
            json.dumps({k: v for k, v in result("aws", "c5", "ovms", "int8").items() if k != "scenarios"}),
            "at (top level): 'scenarios' is a required property",
        ),
        (
            json.dumps(
                {**result("aws", "c5", "ovms", "int8"), "scenarios": {"batch": {"summary": {}}}},
            ),
            "at scenarios/batch: 'repetitions' is a required property",
        ),
        (json.dumps({**result("aws", "c5", "ovms", "int8"), "created_at": "yesterday"}), "at created_at:"),
    ],
)
def test_a_bad_file_is_a_one_line_error_naming_it(tmp_path: Path, content: str, problem: str):
    write_results(tmp_path, [result("local", "local", "ovms", "int8")])
    bad = tmp_path / "99-bad.json"
    bad.write_text(content)
    with pytest.raises(BenchError) as excinfo:
        load_results([tmp_path])
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(bad) in message
    assert problem in message


def test_the_report_rejects_what_the_engine_would_not_write(tmp_path: Path):
    """One validation: loading a file fails with the engine's own schema error, naming the file."""
    document = {**result("aws", "c5", "ovms", "int8"), "pool": 7}
    path = write_results(tmp_path, [document])[0]
    with pytest.raises(BenchError) as engine:
        validate_results(document)
    with pytest.raises(BenchError) as loading:
        load_results([path])
    assert str(loading.value) == str(engine.value).replace("benchmark result", f"benchmark result {path}", 1)


def test_no_results_is_a_one_line_error(tmp_path: Path):
    for paths in ([tmp_path], [], [tmp_path / "missing.json"]):
        with pytest.raises(BenchError, match="run `invoke bench` first") as excinfo:
            load_results(paths)
        assert "\n" not in str(excinfo.value)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_bar_chart_writes_a_1200x500_png_atomically(tmp_path: Path):
    path = bar_chart(fleet(), tmp_path / "chart.png")
    assert png_size(path) == (1200, 500)
    assert path.stat().st_size > 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]


def test_write_report_writes_markdown_and_png(tmp_path: Path):
    write_results(tmp_path / "bench", fleet())
    lines: list[str] = []
    md_path, png_path = write_report(
        [tmp_path / "bench"], tmp_path / "out", {"aws/c5": Price(0.085, "test")}, progress=lines.append
    )
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown.startswith("# ")
    assert "Generated " in markdown
    assert "| Target | Pool | Runtime | Precision |" in markdown
    assert "$/M images" in markdown
    assert "](report.png)" in markdown
    assert png_size(png_path)[0] == 1200
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md", "report.png"]
    assert lines[0] == "bench report: 7 result(s) → 7 row(s)"
    assert lines[-1] == f"bench report: wrote {md_path} and {png_path}"


def test_a_chart_failure_leaves_no_report_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_results(tmp_path / "bench", fleet())
    out = tmp_path / "out"

    def broken_chart(results, path, prices):
        path.write_bytes(b"half a png")
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(report, "bar_chart", broken_chart)
    with pytest.raises(RuntimeError, match="exploded"):
        write_report([tmp_path / "bench"], out, {}, progress=lambda line: None)
    assert list(out.iterdir()) == []


def test_a_failed_rerun_keeps_the_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_results(tmp_path / "bench", fleet()[:2])
    out = tmp_path / "out"
    md_path, png_path = write_report([tmp_path / "bench"], out, {}, progress=lambda line: None)
    before = (md_path.read_bytes(), png_path.read_bytes())

    def broken_write(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(report, "atomic_write_text", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_report([tmp_path / "bench"], out, {"aws/c5": Price(1.0, "test")}, progress=lambda line: None)
    assert (md_path.read_bytes(), png_path.read_bytes()) == before
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report.png"]


def test_a_busy_machine_is_marked_in_the_table_and_explained(tmp_path: Path):
    busy = result("local", "local", "kserve-openvino", "int8")
    busy["conditions"] = {
        "machine": "busy",
        "reasons": ["1-minute load before the scenarios 9.00 > 4 (1 per CPU × 4 CPUs)"],
        "cpus": 4,
        "load_before": 9.0,
        "load_after": 9.5,
        "seconds": 30.0,
        "client_cpu_seconds": 15.0,
        "client_load": 0.5,
        "server_on_this_machine": True,
    }
    quiet = result("aws", "c6i", "ovms", "int8")
    quiet["conditions"] = {**busy["conditions"], "machine": "quiet", "reasons": [], "load_before": 0.2}
    old = result("aws", "c5", "ovms", "int8")
    write_results(tmp_path, [busy, quiet, old])
    markdown = markdown_table(load_results([tmp_path]), {})
    body = table_rows(markdown)[2:]
    assert [row[0] for row in body] == ["local ⚠ busy", "aws", "aws"]
    (caveat,) = [line for line in markdown.splitlines() if "busy with other work" in line]
    assert "local int8 (⚠ busy)" in caveat and "9.00 > 4" in caveat
    assert "- Machine load not recorded for aws/c5 int8 (results from an older toolkit)." in markdown


def timed(
    row: dict[str, Any], realtime: float | None = None, batch: float | None = None, reason: str | None = None
) -> dict[str, Any]:
    """``row`` with a server_time section: the server's mean request ms per scenario, or a reason."""

    def figures(ms: float) -> dict[str, Any]:
        return {"requests": 100, "mean_request_ms": ms, "inferences": 100, "mean_inference_ms": ms * 0.9}

    measured = {
        name: figures(ms) for name, ms in (("realtime", realtime), ("batch", batch)) if ms is not None
    }
    section: dict[str, Any] = {"source": "http://127.0.0.1:8000/metrics", "scenarios": measured}
    if reason:
        section["reason"] = reason
    row["server_time"] = section
    validate_results(row)
    return row


SERVER_COLUMN = "Server ms real-time (overhead) · batch"


def test_the_server_column_shows_server_time_beside_the_client_and_says_why_when_missing():
    unread = "http://10.0.0.5:8000/metrics has no ovms_request_time_us histogram for bone-marrow"
    in_process = result("in-process", None, "openvino", "fp32")
    in_process["server_time"] = {"source": None, "scenarios": {}, "reason": "in process: no server"}
    results = [
        # Client real-time mean (the helper's p50 median): 3.9 ms, 3.1 ms on c6i.
        timed(result("local", "local", "kserve-openvino", "int8"), realtime=2.5, batch=60.0),
        timed(result("aws", "c6i", "ovms", "int8", latency=(3.21, 3.1, 3.9, 5.55)), realtime=3.4, batch=40.0),
        timed(result("aws", "c5", "ovms", "int8"), reason=unread),
        timed(result("vsphere", "icelake", "ovms", "int8", latency=None), batch=120.0),
        result("aws", "c7i", "ovms", "int8"),  # an older result: no server_time at all
        in_process,
    ]
    markdown = markdown_table(results, {})
    header, separator, *body = table_rows(markdown)
    column = header.index(SERVER_COLUMN)
    assert column == 9 and header[column + 1] == "Client CPU" and separator[column] == "---:"
    cells = {row[1]: row[column] for row in body}
    assert cells == {
        "local": "2.50 (+1.40) · 60.0",
        "c6i": "3.40 (−0.30) · 40.0",  # the server's mean above the client's: said, not hidden
        "c5": "—",
        "icelake": "— · 120",
        "c7i": "—",
        "—": "—",  # in process
    }
    notes = [line for line in markdown.splitlines() if line.startswith("- ")]
    assert f"- No server time for aws/c5 int8: {unread}." in notes
    assert "- Server time not recorded for aws/c7i int8 (no server_time in the result)." in notes
    assert any(line.startswith("- Server ms = the server's own mean time per request") for line in notes)
    # In process there is no server: its — needs no footnote; rows with every figure get none either.
    assert "in process: no server" not in markdown
    assert not any(
        label in line
        for line in notes
        if "server time" in line.lower()
        for label in ("local int8", "c6i", "icelake")
    )


def test_the_server_column_appears_only_when_a_served_row_recorded_server_time():
    plain = [result("aws", "c6i", "ovms", "int8"), result("in-process", None, "openvino", "fp32")]
    assert "Server ms" not in markdown_table(plain, {})
    plain[1]["server_time"] = {"source": None, "scenarios": {}, "reason": "in process: no server"}
    assert "Server ms" not in markdown_table(plain, {})  # in process alone: no server to show
    timed(plain[0], reason="cannot read http://10.0.0.5:8000/metrics: timed out")
    markdown = markdown_table(plain, {})
    assert SERVER_COLUMN in table_rows(markdown)[0]
    assert (
        "- No server time for aws/c6i int8: cannot read http://10.0.0.5:8000/metrics: timed out." in markdown
    )
    # Figures missing without a reason (a restarted server's counters) still get a footnote.
    timed(plain[0])
    assert "- No server time for aws/c6i int8: its metrics counted no requests over the scenario." in (
        markdown_table(plain, {})
    )
