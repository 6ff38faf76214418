"""Results JSON (schema_version 1) validated by its JSON Schema, atomic files, CSV lines, CPU info."""

import copy
import csv
import json
import multiprocessing
import os
import re
import threading
from pathlib import Path

import pytest

from contracts.errors import BenchError
from workloads.bench.cpuinfo import cpu_info, parse_cpuinfo
from workloads.bench.results import (
    CSV_COLUMNS,
    RESULTS_SCHEMA,
    SOURCE_KEY,
    load_results,
    result_file_name,
    validate_results,
    write_results,
)
from workloads.bench.scenarios import BatchRepetition, BatchResult, RealtimeRepetition, RealtimeResult

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile
"""


def test_cpuinfo_parses_model_count_and_flags():
    info = parse_cpuinfo(CPUINFO)
    assert info == {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
        "logical_cpus": 2,
        "flags": {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": False, "amx_tile": True},
    }


def test_cpuinfo_of_this_machine_and_of_a_machine_without_procfs(tmp_path):
    here = cpu_info()
    assert here["logical_cpus"] >= 1 and here["cpu_model"]
    elsewhere = cpu_info(tmp_path / "missing")
    assert elsewhere["flags"] == dict.fromkeys(
        ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"), False
    )


def document() -> dict:
    batch = BatchResult(tuple(BatchRepetition(60, 960, 0, 960 / v, v) for v in (101.0, 99.0, 104.0)))
    realtime = RealtimeResult(
        tuple(RealtimeRepetition(50, 0, 1.0, m, m, m + 1, m + 2, m + 0.5) for m in (4.0, 4.2, 3.9))
    )
    machine = parse_cpuinfo(CPUINFO)
    return {
        "schema_version": 1,
        "created_at": "2025-05-01T10:00:07Z",
        "target": "local",
        "pool": "local",
        "endpoint": "127.0.0.1:8001",
        "protocol": "grpc",
        "runtime": "kserve-openvino",
        "model": {
            "name": "bone-marrow-int8",
            "version": 3,
            "precision": "int8",
            "image_size": 224,
            "sha256": "ab" * 32,
        },
        "versions": {"toolkit": "0.1.0", "openvino": "2026.4.1", "server": "kserve 0.21.0"},
        "client": machine,
        "server": copy.deepcopy(machine),
        "settings": {
            "batch_size": 16,
            "concurrency": 2,
            "input_format": "tensor",
            "warmup_seconds": 2.0,
            "min_duration_seconds": 5.0,
            "min_requests": 50,
            "repetitions": 3,
            "paper_images": 10,
            "performance_hint": "THROUGHPUT",
        },
        "scenarios": {"batch": batch.as_dict(), "realtime": realtime.as_dict()},
        "known_answer": {"images": 8, "before": "pass", "after": "pass"},
    }


def test_a_complete_document_follows_the_schema():
    doc = document()
    validate_results(doc)
    assert doc["scenarios"]["batch"]["summary"]["images_per_second"] == {
        "median": 101.0,
        "min": 99.0,
        "max": 104.0,
    }
    assert doc["scenarios"]["realtime"]["summary"]["paper_avg_ms"] == {"median": 4.5, "min": 4.4, "max": 4.7}
    # A scenario not run is absent; in-process runs have no server, endpoint or server version.
    del doc["scenarios"]["realtime"]
    doc.update(
        target="in-process", pool=None, endpoint=None, protocol="in-process", runtime="openvino", server=None
    )
    doc["versions"].update(server=None, tensorflow="2.21.0")
    validate_results(doc)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda d: d["scenarios"]["batch"]["repetitions"][1].update(errors=2),
            "scenarios/batch/repetitions/1/errors",
        ),
        (lambda d: d.update(runtime="triton"), "runtime"),
        (lambda d: d["model"].update(sha256="not-a-digest"), "model/sha256"),
        (lambda d: d.pop("known_answer"), "(top level)"),
        (lambda d: d.update(scenarios={}), "scenarios"),
        (lambda d: d["settings"].update(repetitions=2), "settings/repetitions"),
        (lambda d: d["client"]["flags"].pop("amx_tile"), "client/flags"),
        (lambda d: d["scenarios"]["realtime"]["summary"].pop("p99_ms"), "scenarios/realtime/summary"),
        (lambda d: d.update(extra=1), "(top level)"),
    ],
)
def test_schema_violations_are_one_line_bench_errors_naming_where(mutate, where):
    doc = document()
    mutate(doc)
    with pytest.raises(BenchError) as err:
        validate_results(doc)
    assert f"schema_version 1 at {where}:" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_schema_is_itself_valid_json_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(RESULTS_SCHEMA)


def test_results_are_written_atomically_and_appended_to_the_csv(tmp_path):
    doc = document()
    assert result_file_name(doc, "0a1b2c3d") == "20250501T100007Z-local-kserve-openvino-int8-0a1b2c3d.json"
    first = write_results(doc, tmp_path / "bench")
    second = write_results(doc, tmp_path / "bench")  # same second: kept beside the first
    other = copy.deepcopy(doc)
    del other["scenarios"]["batch"]
    third = write_results(other, tmp_path / "bench")

    for path in (first, second):
        assert re.fullmatch(r"20250501T100007Z-local-kserve-openvino-int8-[0-9a-f]{8}\.json", path.name)
    assert first != second
    assert json.loads(first.read_text()) == json.loads(second.read_text()) == doc
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == sorted(
        [first.name, second.name, third.name, "results.csv"]
    )  # no temporary files left behind
    lines = (tmp_path / "bench" / "results.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(lines))
    assert len(rows) == 3
    assert rows[0]["batch_images_per_second"] == "101.000"
    assert rows[0]["paper_avg_ms"] == "4.500"
    assert rows[0]["realtime_p99_ms"] == "6.000"
    assert rows[0]["model"] == "bone-marrow-int8" and rows[0]["precision"] == "int8"
    assert rows[2]["batch_images_per_second"] == ""


def test_an_invalid_document_writes_nothing(tmp_path):
    doc = document()
    doc["scenarios"]["batch"]["repetitions"][0]["errors"] = 1
    with pytest.raises(BenchError):
        write_results(doc, tmp_path / "bench")
    assert not (tmp_path / "bench").exists() or not any((tmp_path / "bench").iterdir())


def test_what_is_written_loads_back_with_its_source(tmp_path):
    doc = document()
    path = write_results(doc, tmp_path / "bench")
    (loaded,) = load_results([tmp_path / "bench"])  # results.csv is not a result
    assert loaded == {**doc, SOURCE_KEY: str(path)}


# --- concurrent writers: nothing lost, one header ------------------------------------------------

WRITERS = 6


def _write_at_once(directory: str, barrier, index: int) -> str:
    """One writer: wait until all are ready, then write (same created_at second for all)."""
    doc = document()
    doc["settings"]["concurrency"] = index + 1  # tells the rows apart
    barrier.wait(timeout=120)
    return str(write_results(doc, Path(directory)))


def _check_all_kept(directory, paths) -> None:
    assert len(set(paths)) == WRITERS
    json_files = sorted(p for p in directory.iterdir() if p.suffix == ".json")
    assert len(json_files) == WRITERS
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporaries left
    assert sorted(json.loads(p.read_text())["settings"]["concurrency"] for p in json_files) == list(
        range(1, WRITERS + 1)
    )
    lines = (directory / "results.csv").read_text().splitlines()
    assert lines.count(",".join(CSV_COLUMNS)) == 1 and lines[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(lines))
    assert len(rows) == WRITERS
    assert all(list(row) == list(CSV_COLUMNS) and None not in row.values() for row in rows)
    assert sorted(int(row["concurrency"]) for row in rows) == list(range(1, WRITERS + 1))
    assert {row["batch_images_per_second"] for row in rows} == {"101.000"}


def test_six_threads_writing_in_the_same_second_keep_all_results(tmp_path):
    directory = tmp_path / "bench"
    barrier = threading.Barrier(WRITERS)
    paths: list[str] = []
    threads = [
        threading.Thread(target=lambda i=i: paths.append(_write_at_once(str(directory), barrier, i)))
        for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    _check_all_kept(directory, paths)


def test_six_processes_writing_at_the_same_moment_keep_all_results(tmp_path):
    directory = tmp_path / "bench"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(WRITERS)
        with context.Pool(WRITERS) as pool:
            pending = pool.starmap_async(
                _write_at_once, [(str(directory), barrier, i) for i in range(WRITERS)]
            )
            paths = pending.get(timeout=300)
    _check_all_kept(directory, paths)


# The header before the server-time columns: same leading and trailing names, fewer in between.
OLD_HEADER = (
    "target,pool,runtime,protocol,model,precision,execution_precision,batch_size,concurrency,"
    "batch_images_per_second,realtime_mean_ms,realtime_p50_ms,realtime_p90_ms,realtime_p99_ms,"
    "paper_avg_ms,created_at,machine"
)


@pytest.mark.parametrize("old_header", ["target,pool,runtime", OLD_HEADER])
def test_the_csv_header_is_written_once_and_an_older_header_is_moved_aside(tmp_path, old_header):
    directory = tmp_path / "bench"
    directory.mkdir()
    old = f"{old_header}\n{','.join(['x'] * len(old_header.split(',')))}\n"
    (directory / "results.csv").write_text(old)
    doc = document()
    doc["server_time"] = {"source": "http://127.0.0.1:8000/metrics", "scenarios": {"realtime": SERVER_RT}}
    lines_said: list[str] = []
    write_results(doc, directory, lines_said.append)
    write_results(doc, directory, lines_said.append)
    (aside,) = directory.glob("results.*.csv")
    assert aside.read_text() == old  # kept, not extended with rows it has no columns for
    assert lines_said == [f"bench: results.csv had an older toolkit's columns; moved it to {aside}"]
    lines = (directory / "results.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 3
    for row in csv.DictReader(lines):  # every value under its own column
        assert None not in row and None not in row.values()
        assert row["server_realtime_request_ms"] == "3.000" and row["created_at"] == doc["created_at"]


def test_a_line_left_unfinished_by_a_killed_writer_is_ended_first(tmp_path):
    directory = tmp_path / "bench"
    write_results(document(), directory)
    with open(directory / "results.csv", "a") as handle:
        handle.write("local,local,kserve-open")  # killed mid-line
    write_results(document(), directory)
    lines = (directory / "results.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[2] == "local,local,kserve-open"
    assert list(csv.DictReader(lines))[-1]["batch_images_per_second"] == "101.000"


def test_the_conditions_field_and_the_csv_machine_column(tmp_path):
    doc = document()
    validate_results(doc)  # optional: results written before it existed still load
    doc["conditions"] = {
        "machine": "busy",
        "reasons": ["1-minute load before the scenarios 9.00 > 2 (1 per CPU × 2 CPUs)"],
        "cpus": 2,
        "load_before": 9.0,
        "load_after": 8.5,
        "seconds": 12.0,
        "client_cpu_seconds": 6.0,
        "client_load": 0.5,
        "server_on_this_machine": True,
    }
    validate_results(doc)
    write_results(doc, tmp_path)
    (row,) = csv.DictReader((tmp_path / "results.csv").open())
    assert row["machine"] == "busy"
    doc["conditions"]["machine"] = "contaminated"
    with pytest.raises(BenchError, match="at conditions/machine:"):
        validate_results(doc)
    assert os.path.exists(tmp_path / "results.csv")


SERVER_RT = {"requests": 160, "mean_request_ms": 3.0, "inferences": 160, "mean_inference_ms": 2.5}
SERVER_BATCH = {"requests": 190, "mean_request_ms": 150.25, "inferences": 190, "mean_inference_ms": 140.0}
SERVER_COLUMNS = ("server_batch_request_ms", "server_realtime_request_ms", "realtime_overhead_ms")


def server_row(
    tmp_path: Path, server_time: dict | None, *, scenarios: tuple[str, ...] = ("batch", "realtime")
) -> tuple[str, ...]:
    """The server-time columns of the CSV line written for ``document()`` with ``server_time``."""
    doc = document()
    doc["scenarios"] = {name: doc["scenarios"][name] for name in scenarios}
    if server_time is not None:
        doc["server_time"] = server_time
    write_results(doc, tmp_path)
    (row,) = csv.DictReader((tmp_path / "results.csv").open())
    return tuple(row[column] for column in SERVER_COLUMNS)


def test_the_csv_server_time_columns_and_the_realtime_overhead(tmp_path):
    source = "http://127.0.0.1:8000/metrics"
    both = {"source": source, "scenarios": {"batch": SERVER_BATCH, "realtime": SERVER_RT}}
    # Client real-time mean: median of 4.0, 4.2, 3.9 = 4.0 ms; the server's 3.0 ms → 1.0 ms overhead.
    assert server_row(tmp_path / "both", both) == ("150.250", "3.000", "1.000")
    slower = {"source": source, "scenarios": {"realtime": {**SERVER_RT, "mean_request_ms": 4.5}}}
    assert server_row(tmp_path / "slower", slower) == ("", "4.500", "-0.500")
    batch_only = {"source": source, "scenarios": {"batch": SERVER_BATCH}}
    assert server_row(tmp_path / "batch", batch_only, scenarios=("batch",)) == ("150.250", "", "")


@pytest.mark.parametrize(
    "server_time",
    [
        None,  # written before server_time existed
        {"source": None, "scenarios": {}, "reason": "in process: no server"},
        {"source": "http://127.0.0.1:8000/metrics", "scenarios": {}, "reason": "cannot read it"},
        {  # a restarted server: no requests counted between the scrapes
            "source": "http://127.0.0.1:8000/metrics",
            "scenarios": {"realtime": {**SERVER_RT, "requests": 0, "mean_request_ms": None}},
        },
    ],
)
def test_the_csv_server_time_columns_are_empty_without_figures(tmp_path, server_time):
    assert server_row(tmp_path, server_time) == ("", "", "")
