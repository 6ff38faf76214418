"""Which Intel generation a host runs and whether it has AVX-512 VNNI (what the INT8 comparison is about).

The CPUID registers vSphere reports (HostHardwareInfo.cpuFeature) are authoritative: family/model
from leaf 1, the VNNI bit from leaf 7. Without them, the Xeon model number is read instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Family 6 display models (Intel SDM vol. 4) of the server parts that matter here.
_MODELS = {
    0x2D: "sandybridge",
    0x3E: "ivybridge",
    0x3F: "haswell",
    0x4F: "broadwell",
    0x6A: "icelake",
    0x6C: "icelake",
    0x8F: "sapphirerapids",
    0xCF: "emeraldrapids",
}
# Xeon Scalable numbers: tier digit, then generation digit (8375C → 3 → Ice Lake; 8275CL → Cascade Lake).
_SCALABLE = {"1": "skylake", "2": "cascadelake", "3": "icelake", "4": "sapphirerapids", "5": "emeraldrapids"}
_VNNI_GENERATIONS = {"cascadelake", "cooperlake", "icelake", "sapphirerapids", "emeraldrapids"}


@dataclass(frozen=True)
class CpuInfo:
    generation: str | None  # None when neither CPUID nor the model name tells
    avx512_vnni: bool | None  # None = unknown

    @property
    def is_icelake(self) -> bool:
        return self.generation == "icelake"


def _register(value: str | None) -> int:
    return int((value or "0").replace(":", ""), 2)


def from_cpuid(leaves: Sequence[Any]) -> CpuInfo:
    """From HostCpuIdInfo entries (level, eax, ebx, ecx, edx as '0000:…' bit strings)."""
    by_level = {leaf.level: leaf for leaf in leaves or [] if leaf.level is not None}
    generation = None
    if 1 in by_level:
        eax = _register(by_level[1].eax)
        family = (eax >> 8) & 0xF
        model = ((eax >> 4) & 0xF) | (((eax >> 16) & 0xF) << 4)
        stepping = eax & 0xF
        if family == 6 and model == 0x55:  # Skylake-SP, Cascade Lake and Cooper Lake share a model
            generation = "skylake" if stepping < 5 else "cascadelake" if stepping < 10 else "cooperlake"
        elif family == 6:
            generation = _MODELS.get(model)
    vnni = None
    if 7 in by_level:
        vnni = bool(_register(by_level[7].ecx) >> 11 & 1)
    elif 0 in by_level:
        max_leaf = _register(by_level[0].eax)
        vnni = False if max_leaf < 7 else None
    return CpuInfo(generation=generation, avx512_vnni=vnni)


def from_model_name(model: str) -> CpuInfo:
    """From the brand string, e.g. 'Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz'."""
    match = re.search(r"Xeon\(R\)\s+(?:Platinum|Gold|Silver|Bronze)\s+(\d)(\d)(\d\d)([A-Z]*)", model or "")
    if match:
        generation = _SCALABLE.get(match.group(2))
        if generation == "icelake" and "H" in match.group(4):
            generation = "cooperlake"  # 83xxH / 63xxH are Cooper Lake, not Ice Lake
        return CpuInfo(
            generation=generation, avx512_vnni=generation in _VNNI_GENERATIONS if generation else None
        )
    return CpuInfo(generation=None, avx512_vnni=None)


def describe(*, model: str, cpuid: Sequence[Any]) -> CpuInfo:
    """CPUID first; the model name fills in what CPUID does not say."""
    measured, named = from_cpuid(cpuid), from_model_name(model)
    generation = measured.generation or named.generation
    vnni = measured.avx512_vnni
    if vnni is None:
        vnni = generation in _VNNI_GENERATIONS if generation else named.avx512_vnni
    return CpuInfo(generation=generation, avx512_vnni=vnni)
