"""The result document framed between marker lines in a pod log: what the bench Job prints and reads back.

Its own module so the bench image's `--print-result` path imports no Kubernetes client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from contracts.errors import BenchError
from workloads.bench.results import validate_results

RESULT_BEGIN = "--- bmc-result-begin ---"
RESULT_END = "--- bmc-result-end ---"


def framed_result(document: Mapping[str, Any]) -> str:
    """The result document between the marker lines, as the Job prints it (one JSON line)."""
    return f"{RESULT_BEGIN}\n{json.dumps(document, separators=(',', ':'))}\n{RESULT_END}"


def last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def extract_result(log: str) -> dict[str, Any]:
    """The document between the last pair of markers in a pod log, validated; BenchError (one line) if not."""
    lines = log.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == RESULT_BEGIN]
    if not begins:
        raise BenchError(
            f"the bench log holds no result (no {RESULT_BEGIN!r} line); last line: {last_line(log)}"
        )
    start = begins[-1] + 1
    ends = [i for i in range(start, len(lines)) if lines[i].strip() == RESULT_END]
    if not ends:
        raise BenchError(f"the bench log's result is cut off (no {RESULT_END!r} line after the begin marker)")
    text = "\n".join(lines[start : ends[0]])
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BenchError(f"the bench log's result is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BenchError("the bench log's result is not a JSON object")
    validate_results(document)
    return document
