"""Benchmark results: the JSON document (schema_version 1), its JSON Schema, and the summary CSV.

One JSON file per run, ``<bench_results>/<UTC timestamp>-<target>-<runtime>-<precision>-<random>.json``
(written completely under a hidden name, then linked to a name no other run holds), and one line
per run appended to ``<bench_results>/results.csv`` under an advisory lock (header exactly once),
so benches finishing at the same moment lose nothing.
This module alone knows the schema: the engine writes through :func:`write_results`, the
report (workloads.bench.report) reads through :func:`load_results`.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema

from contracts.errors import BenchError
from contracts.files import temporary_sibling
from workloads.progress import Progress, print_progress

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
    "execution_precision",
    "batch_size",
    "concurrency",
    "batch_images_per_second",
    "realtime_mean_ms",
    "realtime_p50_ms",
    "realtime_p90_ms",
    "realtime_p99_ms",
    "paper_avg_ms",
    "server_batch_request_ms",
    "server_realtime_request_ms",
    "realtime_overhead_ms",
    "created_at",
    "machine",
)
MACHINE_STATES = ("quiet", "busy")
# Who said which precision executed: OpenVINO in this process, the local server (what it compiled),
# the plugin_config the deploy rendered for OVMS, or nobody (an endpoint that does not say).
EXECUTION_REPORTERS = ("compiled model", "server", "plugin_config", "unknown")
_NAME_ATTEMPTS = 16

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


_FIGURES = {
    "seconds": _NUMBER,
    "requests": _COUNT,
    "images": _COUNT,
    "requests_per_second": _NUMBER,
    "images_per_second": _NUMBER,
    "mean_ms": _NUMBER,
    "p50_ms": _NUMBER,
    "p90_ms": _NUMBER,
    "p99_ms": _NUMBER,
}
# Open-loop windows: the rate offered, requests scheduled (and their rate: a Poisson draw holds
# more or fewer), sent late (all in-flight slots busy) and never sent (waiting when it ended).
_OPEN_LOOP = {
    "offered_rps": _NUMBER,
    "scheduled": _COUNT,
    "scheduled_rps": _NUMBER,
    "delayed": _COUNT,
    "dropped": _COUNT,
}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def _measurement(figures: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One load point (workloads.bench.loadgen.Measurement): its windows, whether they became
    stable, and the figures pooled over the last ``windows_used``."""
    return _closed(
        {
            "stable": {"type": "boolean"},
            "windows_used": {"type": "integer", "minimum": 1},
            "windows": {"type": "array", "minItems": 1, "items": _closed(figures)},
            **figures,
            **(extra or {}),
        }
    )


_OPEN_LOOP_SETTINGS = {
    "batch_size": {"type": "integer", "minimum": 1},
    "distribution": {"enum": ["poisson", "constant"]},
    "max_in_flight": {"type": "integer", "minimum": 1},
    "seed": {"type": "integer"},
}
_LOAD_MODES = {
    "sweep": _closed(
        {
            "batch_size": {"type": "integer", "minimum": 1},
            "points": {
                "type": "array",
                "minItems": 1,
                "items": _measurement(_FIGURES, {"concurrency": {"type": "integer", "minimum": 1}}),
            },
        }
    ),
    "rate": _closed(
        _OPEN_LOOP_SETTINGS
        | {"points": {"type": "array", "minItems": 1, "items": _measurement(_FIGURES | _OPEN_LOOP)}}
    ),
    "max-rate": _closed(
        _OPEN_LOOP_SETTINGS
        | {
            "p99_bound_ms": _NUMBER,
            "min_achieved_fraction": _NUMBER,
            "max_rps": {"type": ["number", "null"], "minimum": 0},
            "max_images_per_second": {"type": ["number", "null"], "minimum": 0},
            "failed_rps": {"type": ["number", "null"], "minimum": 0},
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": _measurement(_FIGURES | _OPEN_LOOP, {"sustained": {"type": "boolean"}}),
            },
        }
    ),
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
                "precision": {"enum": ["fp32", "fp16", "int8", "bf16"]},
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
                # The load modes' stability rule (only in results that ran one).
                "windows": _closed(
                    {
                        "window_seconds": _NUMBER,
                        "stability_percent": _NUMBER,
                        "stable_windows": {"type": "integer", "minimum": 1},
                        "max_windows": {"type": "integer", "minimum": 1},
                    }
                ),
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
                **_LOAD_MODES,
            },
        },
        # What executed (optional so older results still load; `invoke bench` always writes them):
        # the compiled model's INFERENCE_PRECISION_HINT as OpenVINO reports it ("f32", "bf16"; null
        # when the server does not say), who reported it, and the precisions its executed layers ran
        # in, counted (null unless the model was compiled in a process that could read them).
        "execution_precision": {"type": ["string", "null"]},
        "execution_reported_by": {"enum": list(EXECUTION_REPORTERS)},
        "layer_precisions": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        # Optional so results written before it existed still load; `invoke bench` always writes it.
        "conditions": {
            "type": "object",
            "required": [
                "machine",
                "reasons",
                "cpus",
                "load_before",
                "load_after",
                "seconds",
                "client_cpu_seconds",
                "client_load",
                "server_on_this_machine",
            ],
            "additionalProperties": False,
            "properties": {
                "machine": {"enum": list(MACHINE_STATES)},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "cpus": {"type": "integer", "minimum": 1},
                "load_before": _NUMBER,
                "load_after": _NUMBER,
                "seconds": _NUMBER,
                "client_cpu_seconds": _NUMBER,
                "client_load": _NUMBER,
                "server_on_this_machine": {"type": "boolean"},
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
        # Optional (older results have none): the server's own time per scenario, from its metrics
        # before and after (workloads.bench.server_metrics); "reason" says why figures are missing.
        "server_time": {
            "type": "object",
            "required": ["source", "scenarios"],
            "additionalProperties": False,
            "properties": {
                "source": {"type": ["string", "null"]},
                "reason": {"type": "string"},
                "scenarios": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["requests", "mean_request_ms", "inferences", "mean_inference_ms"],
                        "additionalProperties": False,
                        "properties": {
                            "requests": _COUNT,
                            "mean_request_ms": {"type": ["number", "null"], "minimum": 0},
                            "inferences": _COUNT,
                            "mean_inference_ms": {"type": ["number", "null"], "minimum": 0},
                        },
                    },
                },
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


def result_file_name(document: Mapping[str, Any], token: str | None = None) -> str:
    """``<UTC stamp>-<target>-<runtime>-<precision>-<token>.json``; ``token`` defaults to 8 random hex
    digits, so runs finishing in the same second (or on other machines) get different names."""
    created = datetime.fromisoformat(document["created_at"])
    stamp = created.strftime("%Y%m%dT%H%M%SZ")
    token = token or secrets.token_hex(4)
    return f"{stamp}-{document['target']}-{document['runtime']}-{document['model']['precision']}-{token}.json"


def write_results(document: Mapping[str, Any], directory: Path, progress: Progress = print_progress) -> Path:
    """Validate, then write the JSON and append its CSV line; returns the JSON path.

    The JSON is written and fsynced under a hidden temporary name, then hard-linked to its final
    name, which fails rather than replaces when that name exists (a fresh random token is tried
    then): a reader sees the whole file or none, and no run overwrites another's.
    """
    validate_results(document)
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    tmp = temporary_sibling(directory / "result.json", "tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        path = _publish_exclusively(tmp, directory, document)
    finally:
        tmp.unlink(missing_ok=True)
    append_csv(document, directory / CSV_FILE, progress)
    return path


def _publish_exclusively(tmp: Path, directory: Path, document: Mapping[str, Any]) -> Path:
    for _ in range(_NAME_ATTEMPTS):
        path = directory / result_file_name(document)
        try:
            os.link(tmp, path)  # atomic, and never replaces an existing file
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        # A filesystem without hard links: reserve the name with O_EXCL, then rename over it.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        os.replace(tmp, path)
        return path
    raise BenchError(f"no free result file name in {directory} after {_NAME_ATTEMPTS} attempts")


def server_request_ms(document: Mapping[str, Any], scenario: str) -> float | None:
    """The server's own mean request time (ms) over ``scenario``, from its metrics; None when the
    result has none (older results, in process, metrics unreadable, scenario not run)."""
    figures = ((document.get("server_time") or {}).get("scenarios") or {}).get(scenario) or {}
    value = figures.get("mean_request_ms")
    return float(value) if value is not None else None


def realtime_overhead_ms(document: Mapping[str, Any]) -> float | None:
    """Client real-time mean latency (median over repetitions) minus the server's mean request time
    over the scenario: what the network, the protocol's serialization and the client took. None
    unless both are known."""
    server = server_request_ms(document, "realtime")
    realtime = document["scenarios"].get("realtime")
    if server is None or not realtime:
        return None
    return float(realtime["summary"]["mean_ms"]["median"]) - server


def csv_row(document: Mapping[str, Any]) -> dict[str, Any]:
    scenarios = document["scenarios"]
    batch = scenarios.get("batch", {}).get("summary", {})
    realtime = scenarios.get("realtime", {}).get("summary", {})

    def median(section: Mapping[str, Any], key: str) -> str:
        return f"{section[key]['median']:.3f}" if key in section else ""

    def figure(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else ""

    return {
        "target": document["target"],
        "pool": document["pool"] or "",
        "runtime": document["runtime"],
        "protocol": document["protocol"],
        "model": document["model"]["name"],
        "precision": document["model"]["precision"],
        "execution_precision": document.get("execution_precision") or "",
        "batch_size": document["settings"]["batch_size"],
        "concurrency": document["settings"]["concurrency"],
        "batch_images_per_second": median(batch, "images_per_second"),
        "realtime_mean_ms": median(realtime, "mean_ms"),
        "realtime_p50_ms": median(realtime, "p50_ms"),
        "realtime_p90_ms": median(realtime, "p90_ms"),
        "realtime_p99_ms": median(realtime, "p99_ms"),
        "paper_avg_ms": median(realtime, "paper_avg_ms"),
        "server_batch_request_ms": figure(server_request_ms(document, "batch")),
        "server_realtime_request_ms": figure(server_request_ms(document, "realtime")),
        "realtime_overhead_ms": figure(realtime_overhead_ms(document)),
        "created_at": document["created_at"],
        "machine": (document.get("conditions") or {}).get("machine", ""),
    }


def _csv_text(rows: Sequence[Mapping[str, Any]], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def append_csv(document: Mapping[str, Any], path: Path, progress: Progress = print_progress) -> None:
    """Append the result's line under an exclusive ``flock`` of the CSV, with the header exactly once.

    Under the lock: the header is written when the file is empty; a file whose header is not the
    current :data:`CSV_COLUMNS` (an older toolkit's) is moved aside to ``results.<random>.csv``
    rather than extended with lines it has no columns for (``progress`` says where); a last line
    left without its newline (a writer killed mid-line) is ended first. The lock is re-taken when
    the path was replaced while waiting for it (bounded).
    """
    expected = _csv_text([], header=True).encode("utf-8")
    for _ in range(_NAME_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if not _same_file(fd, path):
                continue  # moved aside by another writer while this one waited
            if size and os.pread(fd, len(expected), 0) != expected:
                aside = path.with_name(f"{path.stem}.{secrets.token_hex(4)}{path.suffix}")
                os.replace(path, aside)
                progress(f"bench: {path.name} had an older toolkit's columns; moved it to {aside}")
                continue
            data = _csv_text([csv_row(document)], header=size == 0).encode("utf-8")
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
            return
        finally:
            os.close(fd)  # drops the lock
    raise BenchError(f"cannot append to {path}: it kept being replaced while waiting for its lock")


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def model_version_label(model: Mapping[str, Any]) -> str:
    """``v3`` for a published version, ``SavedModel of run <id>`` for the TensorFlow baseline."""
    if model.get("version") is not None:
        return f"v{model['version']}"
    if model.get("run_id"):
        return f"SavedModel of run {model['run_id']}"
    return "version unknown"
