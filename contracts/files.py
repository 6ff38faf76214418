"""File helpers every stage uses: atomic writes (temporary sibling, then rename) and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any


def temporary_sibling(path: Path, tag: str) -> Path:
    """A unique hidden path next to ``path`` (same filesystem, so a rename is atomic)."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one, never half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target, "tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def replace_directory(built: Path, target: Path) -> None:
    """Move the finished directory ``built`` to ``target``, replacing what is there.

    The old directory is first renamed aside, so ``target`` is always either the complete old
    tree or the complete new one; the old tree is deleted afterwards.
    """
    if target.exists():
        old = temporary_sibling(target, "old")
        target.rename(old)
        try:
            built.rename(target)
        except BaseException:
            old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        built.rename(target)


def write_json_atomic(path: Path, payload: Any, *, default: Any = None) -> Path:
    """Write ``payload`` as indented JSON, atomically (see :func:`atomic_write_text`)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=default) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
