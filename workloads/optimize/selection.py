"""What the optimizer needs from the split manifest, and deterministic class-balanced subsets.

Only ``entries(split)`` is used, returning items with ``.path`` and ``.label`` (an index into
``CLASS_CODES``), so any manifest-like object works, including test fakes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar


class LabelledImage(Protocol):
    @property
    def path(self) -> Path: ...

    @property
    def label(self) -> int: ...


class SplitEntries(Protocol):
    def entries(self, split: str) -> Sequence[LabelledImage]: ...


Entry = TypeVar("Entry", bound=LabelledImage)


def class_balanced_sample(entries: Iterable[Entry], size: int) -> list[Entry]:
    """Up to ``size`` entries taken round-robin over classes, each class in path order.

    Deterministic (no RNG, independent of the input order) and every class is represented
    before any class gets a second image, so rare classes still shape calibration ranges.
    """
    by_class: dict[int, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_class[int(entry.label)].append(entry)
    queues = [sorted(by_class[label], key=lambda e: str(e.path)) for label in sorted(by_class)]
    chosen: list[Entry] = []
    depth = 0
    while len(chosen) < size and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < size:
                chosen.append(queue[depth])
        depth += 1
    return chosen
