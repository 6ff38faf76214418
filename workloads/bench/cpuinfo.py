"""The CPU a benchmark ran on: model name, logical CPUs and the ISA flags that change inference speed.

avx2 → avx512f (AVX-512) → avx512_vnni (INT8 dot products, "DL Boost") → avx512_bf16 →
amx_tile (AMX): each step can move OpenVINO's figures a lot, INT8 ones most.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
PROC_CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """``{"cpu_model", "logical_cpus", "flags": {flag: bool}}`` from /proc/cpuinfo text (x86 Linux)."""
    model = ""
    flags: set[str] = set()
    processors = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            processors += 1
        elif key == "model name" and not model:
            model = " ".join(value.split())
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {
        "cpu_model": model or platform.processor() or platform.machine() or "unknown",
        "logical_cpus": processors or os.cpu_count() or 1,
        "flags": {flag: flag in flags for flag in FLAGS},
    }


def cpu_info(path: Path = PROC_CPUINFO) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""  # not Linux: the model from platform, every flag unknown (False)
    return parse_cpuinfo(text)
