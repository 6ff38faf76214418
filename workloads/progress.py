"""Progress reporting: every long step takes a ``progress`` callable that receives one line."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    """The default ``progress``: print and flush, so lines show up promptly under Invoke and in CI logs."""
    print(line, flush=True)
