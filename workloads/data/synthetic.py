"""Offline synthetic stand-in for the Matek et al. (2021) bone-marrow dataset.

:func:`generate_dataset` writes the same layout as the Kaggle / TCIA download::

    ROOT/
      abbreviations.csv                    code;meaning, with a header line
      bone_marrow_cell_dataset/
        NGS/0001-1000/NGS_00001.jpg        (nested chunk folders; flat with nested=False)
      .synthetic.json                      the generation parameters (the stamp)

Each image is drawn by :func:`draw_cell` from a generator seeded with (seed, class index,
image index), so a given image never depends on how many others are generated or in which
process. Generation happens in a temporary sibling directory that is renamed into place.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.errors import DatasetError
from contracts.files import replace_directory, temporary_sibling
from workloads.classes import CLASS_CODES, CLASS_MEANINGS
from workloads.data.cells import draw_cell
from workloads.data.layout import ABBREVIATIONS_FILENAME, DATASET_DIRNAME
from workloads.progress import Progress, print_progress

__all__ = ["STAMP_FILENAME", "draw_cell", "generate_dataset", "image_relpath"]

STAMP_FILENAME = ".synthetic.json"
# Bump when the drawings change, so that existing synthetic datasets are regenerated.
GENERATOR_VERSION = 1
JPEG_QUALITY = 90
# Below this many images, starting worker processes costs more than it saves.
_PARALLEL_THRESHOLD = 200
_TASK_SIZE = 50


@dataclass(frozen=True)
class _Task:
    code: str
    start: int  # 1-based image index, inclusive
    stop: int  # exclusive
    image_size: int
    seed: int
    nested: bool
    chunk_size: int
    dataset_dir: str


def image_relpath(code: str, index: int, *, nested: bool = True, chunk_size: int = 1000) -> str:
    """Where image ``index`` (1-based) of ``code`` lives under bone_marrow_cell_dataset/."""
    name = f"{code}_{index:05d}.jpg"
    if not nested:
        return f"{code}/{name}"
    low = (index - 1) // chunk_size * chunk_size + 1
    return f"{code}/{low:04d}-{low + chunk_size - 1:04d}/{name}"


def image_rng(seed: int, code: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``code``: independent of every other image."""
    return np.random.default_rng([seed % 2**63, CLASS_CODES.index(code), index])


def generate_dataset(
    root: str | os.PathLike[str],
    *,
    images_per_class: int | Mapping[str, int],
    image_size: int = 250,
    seed: int = 0,
    nested: bool = True,
    chunk_size: int = 1000,
    progress: Progress = print_progress,
    workers: int | None = None,
) -> Path:
    """Write a synthetic dataset at ``root`` and return ``root``.

    ``images_per_class`` is one count for all 21 classes or a mapping code -> count (classes left
    out get no folder; a count of 0 gives an empty folder). When ``root`` already holds a
    synthetic dataset generated with the same parameters nothing is written; with other
    parameters it is replaced atomically. A non-empty ``root`` without the stamp is refused
    rather than deleted. Up to ``workers`` processes draw in parallel (never more than the CPU
    count or 8).
    """
    root = Path(root)
    counts = _counts(images_per_class)
    if image_size < 16:
        raise DatasetError(f"synthetic image size must be at least 16 pixels, got {image_size}")
    if chunk_size < 1:
        raise DatasetError(f"synthetic chunk size must be at least 1, got {chunk_size}")
    stamp = {
        "generator_version": GENERATOR_VERSION,
        "images_per_class": counts,
        "image_size": image_size,
        "seed": seed,
        "nested": nested,
        "chunk_size": chunk_size,
    }
    total = sum(counts.values())
    if _read_stamp(root) == stamp:
        progress(
            f"synthetic dataset at {root} is up to date ({total} images, seed {seed}); skipping generation"
        )
        return root
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} exists and is not a directory; remove it or choose another path")
    if root.is_dir() and any(root.iterdir()) and not (root / STAMP_FILENAME).is_file():
        raise DatasetError(
            f"{root} exists and is not a generated synthetic dataset (no {STAMP_FILENAME}); "
            "remove it or choose another path"
        )

    action = "regenerating" if root.exists() else "generating"
    progress(
        f"{action} synthetic dataset at {root}: {total} images ({image_size}x{image_size}) "
        f"in {sum(1 for n in counts.values() if n)} classes, seed {seed}"
    )
    root.parent.mkdir(parents=True, exist_ok=True)
    build = temporary_sibling(root, "tmp")
    try:
        dataset_dir = build / DATASET_DIRNAME
        for code in counts:
            (dataset_dir / code).mkdir(parents=True)
        _draw_all(counts, image_size, seed, nested, chunk_size, dataset_dir, progress, workers)
        _write_abbreviations(build / ABBREVIATIONS_FILENAME)
        (build / STAMP_FILENAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        replace_directory(build, root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    progress(f"synthetic dataset ready at {root}")
    return root


def _counts(images_per_class: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(images_per_class, Mapping):
        unknown = sorted(set(images_per_class) - set(CLASS_CODES))
        if unknown:
            raise DatasetError(f"unknown class code(s) for the synthetic dataset: {', '.join(unknown)}")
        counts = {code: int(images_per_class[code]) for code in CLASS_CODES if code in images_per_class}
    else:
        counts = dict.fromkeys(CLASS_CODES, int(images_per_class))
    if any(n < 0 for n in counts.values()) or not any(counts.values()):
        raise DatasetError(f"synthetic images per class must be >= 0 and not all 0, got {images_per_class}")
    return counts


def _read_stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / STAMP_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _draw_all(
    counts: dict[str, int],
    image_size: int,
    seed: int,
    nested: bool,
    chunk_size: int,
    dataset_dir: Path,
    progress: Progress,
    workers: int | None,
) -> None:
    tasks = [
        _Task(
            code,
            start,
            min(start + _TASK_SIZE, n + 1),
            image_size,
            seed,
            nested,
            chunk_size,
            str(dataset_dir),
        )
        for code, n in counts.items()
        for start in range(1, n + 1, _TASK_SIZE)
    ]
    workers = min(workers or 8, os.cpu_count() or 1, 8)
    if workers > 1 and sum(counts.values()) >= _PARALLEL_THRESHOLD:
        # "spawn": forking a process that may already run TensorFlow threads is not safe.
        context = multiprocessing.get_context("spawn")
        try:
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
        except OSError as err:  # e.g. no /dev/shm for semaphores in a sandbox
            progress(f"  worker processes unavailable ({err}); drawing in this process")
        else:
            progress(f"  drawing with {workers} processes")
            with pool:
                _report(counts, zip(tasks, pool.map(_run_task, tasks), strict=True), progress)
            return
    _report(counts, ((task, _run_task(task)) for task in tasks), progress)


def _report(counts: dict[str, int], results: Iterable[tuple[_Task, int]], progress: Progress) -> None:
    done = dict.fromkeys(counts, 0)
    for code, n in counts.items():
        if n == 0:
            progress(f"  {code}: 0 images (empty folder)")
    for task, written in results:
        done[task.code] += written
        if done[task.code] == counts[task.code]:
            progress(f"  {task.code}: {counts[task.code]} images")


def _run_task(task: _Task) -> int:
    dataset_dir = Path(task.dataset_dir)
    for index in range(task.start, task.stop):
        target = dataset_dir / image_relpath(task.code, index, nested=task.nested, chunk_size=task.chunk_size)
        target.parent.mkdir(parents=True, exist_ok=True)
        image = draw_cell(task.code, image_rng(task.seed, task.code, index), task.image_size)
        image.save(target, "JPEG", quality=JPEG_QUALITY)
    return task.stop - task.start


def _write_abbreviations(path: Path) -> None:
    lines = ["Abbreviation;Meaning", *(f"{code};{CLASS_MEANINGS[code]}" for code in CLASS_CODES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
