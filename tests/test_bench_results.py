"""Results JSON (schema_version 1) validated by its JSON Schema, atomic files, CSV lines, CPU info."""

import copy
import csv
import json

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
    assert result_file_name(doc) == "20250501T100007Z-local-kserve-openvino-int8.json"
    first = write_results(doc, tmp_path / "bench")
    second = write_results(doc, tmp_path / "bench")  # same second: kept beside the first
    other = copy.deepcopy(doc)
    del other["scenarios"]["batch"]
    third = write_results(other, tmp_path / "bench")

    assert first.name == "20250501T100007Z-local-kserve-openvino-int8.json"
    assert second.name == "20250501T100007Z-local-kserve-openvino-int8-2.json"
    assert json.loads(first.read_text()) == doc
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
