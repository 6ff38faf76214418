"""Benchmark results: the JSON document (schema_version 1), its JSON Schema, and the summary CSV.

One JSON file per run, ``<bench_results>/<UTC timestamp>-<target>-<runtime>-<precision>.json``
(written atomically), and one line per run appended to ``<bench_results>/results.csv``.
This module alone knows the schema: the engine writes through :func:`write_results`, the
report (workloads.bench.report) reads through :func:`load_results`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema

from contracts.errors import BenchError
from contracts.files import atomic_write_text

SCHEMA_VERSION = 1
CSV_FILE = "results.csv"
SOURCE_KEY = "_source"  # added by load_results: the file a result came from
TARGETS = ("local", "aws", "vsphere", "endpoint", "in-process")
RUNTIMES = ("kserve-openvino", "ovms", "kserve-v2", "openvino", "tensorflow")
PROTOCOLS = ("rest", "grpc", "in-process")
CSV_COLUMNS = (
    "target",
    "pool",
    "runtime",
    "protocol",
    "model",
    "precision",
    "batch_size",
    "concurrency",
    "batch_images_per_second",
    "realtime_mean_ms",
    "realtime_p50_ms",
    "realtime_p90_ms",
    "realtime_p99_ms",
    "paper_avg_ms",
    "created_at",
)

_NUMBER = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_RANGE = {
    "type": "object",
    "required": ["median", "min", "max"],
    "additionalProperties": False,
    "properties": {"median": _NUMBER, "min": _NUMBER, "max": _NUMBER},
}
_CPU = {
    "type": "object",
    "required": ["cpu_model", "logical_cpus", "flags"],
    "additionalProperties": False,
    "properties": {
        "cpu_model": {"type": "string"},
        "logical_cpus": {"type": "integer", "minimum": 1},
        "flags": {
            "type": "object",
            "required": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"],
            "additionalProperties": False,
            "properties": {
                name: {"type": "boolean"}
                for name in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
            },
        },
    },
}
_LATENCIES = ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "paper_avg_ms")


def _scenario(repetition_props: dict[str, Any], summary_props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["repetitions", "summary"],
        "additionalProperties": False,
        "properties": {
            "repetitions": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": sorted(repetition_props),
                    "additionalProperties": False,
                    "properties": repetition_props,
                },
            },
            "summary": {
                "type": "object",
                "required": sorted(summary_props),
                "additionalProperties": False,
                "properties": summary_props,
            },
        },
    }


RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "bone-marrow-toolkit benchmark result",
    "type": "object",
    "required": [
        "schema_version",
        "created_at",
        "target",
        "pool",
        "endpoint",
        "protocol",
        "runtime",
        "model",
        "versions",
        "client",
        "server",
        "settings",
        "scenarios",
        "known_answer",
    ],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "created_at": {"type": "string", "format": "date-time"},
        "target": {"enum": list(TARGETS)},
        "pool": {"type": ["string", "null"]},
        "endpoint": {"type": ["string", "null"]},
        "protocol": {"enum": list(PROTOCOLS)},
        "runtime": {"enum": list(RUNTIMES)},
        "model": {
            "type": "object",
            "required": ["name", "version", "precision", "image_size", "sha256"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "version": {"type": ["integer", "null"]},
                "run_id": {"type": "string"},
                "precision": {"enum": ["fp32", "fp16", "int8"]},
                "image_size": {"type": "integer", "minimum": 1},
                "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            },
        },
        "versions": {
            "type": "object",
            "required": ["toolkit", "openvino", "server"],
            "additionalProperties": False,
            "properties": {
                "toolkit": {"type": "string"},
                "openvino": {"type": "string"},
                "tensorflow": {"type": "string"},
                "server": {"type": ["string", "null"]},
            },
        },
        "client": _CPU,
        "server": {"oneOf": [_CPU, {"type": "null"}]},
        "settings": {
            "type": "object",
            "required": [
                "batch_size",
                "concurrency",
                "input_format",
                "warmup_seconds",
                "min_duration_seconds",
                "min_requests",
                "repetitions",
                "paper_images",
                "performance_hint",
            ],
            "additionalProperties": False,
            "properties": {
                "batch_size": {"type": "integer", "minimum": 1},
                "concurrency": {"type": "integer", "minimum": 1},
                "input_format": {"enum": ["tensor", "jpeg"]},
                "warmup_seconds": _NUMBER,
                "min_duration_seconds": _NUMBER,
                "min_requests": {"type": "integer", "minimum": 1},
                "repetitions": {"type": "integer", "minimum": 3},
                "paper_images": {"type": "integer", "minimum": 1},
                "performance_hint": {"type": ["string", "null"]},
            },
        },
        "scenarios": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "batch": _scenario(
                    {
                        "requests": _COUNT,
                        "images": _COUNT,
                        "errors": {"const": 0},
                        "seconds": _NUMBER,
                        "images_per_second": _NUMBER,
                    },
                    {"images_per_second": _RANGE},
                ),
                "realtime": _scenario(
                    {"requests": _COUNT, "errors": {"const": 0}, "seconds": _NUMBER}
                    | {key: _NUMBER for key in _LATENCIES},
                    {key: _RANGE for key in _LATENCIES},
                ),
            },
        },
        "known_answer": {
            "type": "object",
            "required": ["images", "before", "after"],
            "additionalProperties": False,
            "properties": {
                "images": _COUNT,
                "before": {"enum": ["pass", "skipped"]},
                "after": {"enum": ["pass", "skipped"]},
            },
        },
    },
}


def validate_results(document: Any, *, source: Path | None = None) -> None:
    """Raise BenchError (one line: which file, where and what) unless ``document`` follows RESULTS_SCHEMA."""
    validator = jsonschema.Draft202012Validator(RESULTS_SCHEMA, format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        result = f"benchmark result {source}" if source is not None else "benchmark result"
        raise BenchError(
            f"{result} does not follow schema_version {SCHEMA_VERSION} at {where}: {error.message}"
        )


def load_result(path: Path) -> dict[str, Any]:
    """One result file, validated; the dict carries ``_source`` (its path)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read benchmark result {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BenchError(f"benchmark result {path} is not valid JSON: {exc}") from exc
    validate_results(document, source=path)
    return {**document, SOURCE_KEY: str(path)}


def load_results(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read result files; a directory contributes its ``*.json`` files in name order.

    The first unusable file raises a one-line BenchError naming it.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.json") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            raise BenchError(f"benchmark results {path} do not exist; run `invoke bench` first")
    if not files:
        where = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise BenchError(f"no benchmark results (*.json) in {where}; run `invoke bench` first")
    return [load_result(file) for file in files]


def result_file_name(document: Mapping[str, Any]) -> str:
    created = datetime.fromisoformat(document["created_at"])
    stamp = created.strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{document['target']}-{document['runtime']}-{document['model']['precision']}.json"


def write_results(document: Mapping[str, Any], directory: Path) -> Path:
    """Validate, then write the JSON atomically and append its CSV line; returns the JSON path."""
    validate_results(document)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / result_file_name(document)
    suffix = 2
    while path.exists():  # two runs in one second: keep both
        path = directory / result_file_name(document).replace(".json", f"-{suffix}.json")
        suffix += 1
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    append_csv(document, directory / CSV_FILE)
    return path


def csv_row(document: Mapping[str, Any]) -> dict[str, Any]:
    scenarios = document["scenarios"]
    batch = scenarios.get("batch", {}).get("summary", {})
    realtime = scenarios.get("realtime", {}).get("summary", {})

    def median(section: Mapping[str, Any], key: str) -> str:
        return f"{section[key]['median']:.3f}" if key in section else ""

    return {
        "target": document["target"],
        "pool": document["pool"] or "",
        "runtime": document["runtime"],
        "protocol": document["protocol"],
        "model": document["model"]["name"],
        "precision": document["model"]["precision"],
        "batch_size": document["settings"]["batch_size"],
        "concurrency": document["settings"]["concurrency"],
        "batch_images_per_second": median(batch, "images_per_second"),
        "realtime_mean_ms": median(realtime, "mean_ms"),
        "realtime_p50_ms": median(realtime, "p50_ms"),
        "realtime_p90_ms": median(realtime, "p90_ms"),
        "realtime_p99_ms": median(realtime, "p99_ms"),
        "paper_avg_ms": median(realtime, "paper_avg_ms"),
        "created_at": document["created_at"],
    }


def append_csv(document: Mapping[str, Any], path: Path) -> None:
    """One line per result; the header first when the file is new or empty. One write per line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerow(csv_row(document))
    # O_APPEND makes the single write land at the end even when two runs finish together.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, buffer.getvalue().encode("utf-8"))
    finally:
        os.close(fd)


def model_version_label(model: Mapping[str, Any]) -> str:
    """``v3`` for a published version, ``SavedModel of run <id>`` for the TensorFlow baseline."""
    if model.get("version") is not None:
        return f"v{model['version']}"
    if model.get("run_id"):
        return f"SavedModel of run {model['run_id']}"
    return "version unknown"
