"""Hostile-input limits of the local model server (``serving.max_*`` and ``serving.*_timeout_seconds``).

* :class:`RequestLimits` carries the settings from :class:`contracts.config.ServingConfig` to the
  server process (command-line flags) and to the checks in ``inputs.py`` / ``binary.py``.
* ``http_guard.py`` enforces the REST body size and the timeouts in uvicorn's HTTP protocol.
* :func:`release_memory_soon` hands freed heap back to the OS after a large request (glibc keeps
  it otherwise, so RSS never went down after a big batch).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import dataclasses
import logging
import time
from dataclasses import dataclass, fields
from typing import Any

from contracts.config import ServingConfig

log = logging.getLogger("workloads.serving")

# Requests at least this large are followed by a malloc_trim.
TRIM_AFTER_BYTES = 16 * 1024 * 1024
TRIM_DELAY_SECONDS = 0.5


@dataclass(frozen=True)
class RequestLimits:
    """The limit fields of :class:`ServingConfig`, which owns their defaults."""

    max_request_bytes: int
    max_batch_size: int
    max_image_pixels: int
    max_request_pixels: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    keep_alive_seconds: float

    @classmethod
    def from_config(cls, serving: ServingConfig) -> RequestLimits:
        """The limits of a ``ServingConfig`` (same field names)."""
        return cls(**{f.name: getattr(serving, f.name) for f in fields(cls)})

    @classmethod
    def defaults(cls) -> RequestLimits:
        return cls.from_config(ServingConfig())

    def replace(self, **changes: Any) -> RequestLimits:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def arguments(self) -> list[str]:
        """The server command line's flags for these limits."""
        args = []
        for name, value in self.as_dict().items():
            args += [_flag(name), str(value)]
        return args

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        for f in fields(RequestLimits):
            kind = float if f.name.endswith("_seconds") else int
            default = getattr(RequestLimits.defaults(), f.name)
            parser.add_argument(_flag(f.name), type=_positive(kind), default=default)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RequestLimits:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


_libc: Any = None
_trim_pending = False
_last_trim = 0.0


def release_memory_soon() -> None:
    """Once the current request's buffers are gone, give free heap pages back (glibc malloc_trim)."""
    global _trim_pending
    if _trim_pending:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        release_memory()
        return
    _trim_pending = True
    loop.call_later(TRIM_DELAY_SECONDS, _trim_now)


def _trim_now() -> None:
    global _trim_pending
    _trim_pending = False
    release_memory()


def release_memory() -> bool:
    """malloc_trim(0) where glibc has it; False elsewhere."""
    global _libc, _last_trim
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if not _libc or not hasattr(_libc, "malloc_trim"):
        return False
    _last_trim = time.monotonic()
    _libc.malloc_trim(0)
    return True
