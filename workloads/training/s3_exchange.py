"""Datasets and run directories through S3, for training away from this machine (DL1).

The split manifest names absolute paths; the copy uploaded next to the images names the path
the remote side mounts them at, so the remote training reads exactly the same files.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from contracts.aws_names import DATASETS_PREFIX
from contracts.errors import TrainingError
from contracts.files import replace_directory, temporary_sibling
from contracts.run_directory import RunDirectory
from workloads.data.manifest import SplitManifest, relative_posix
from workloads.progress import Progress, print_progress

MANIFEST_KEY = "split.json"
FILES_DIR = "dataset"


def relocate(manifest: SplitManifest, root: Path) -> SplitManifest:
    """The same split with every file under ``root`` (where the remote side sees the dataset)."""
    files = tuple(
        dataclasses.replace(e, path=root / relative_posix(manifest.dataset_root, e.path))
        for e in manifest.files
    )
    return dataclasses.replace(manifest, dataset_root=root, files=files)


def dataset_prefix(manifest: SplitManifest) -> str:
    """Content-addressed: the same split uploads to the same place, and re-uploads skip what is there."""
    return f"{DATASETS_PREFIX}/{manifest.sha256()[:16]}"


def upload_dataset(
    s3: Any,
    manifest: SplitManifest,
    *,
    bucket: str,
    prefix: str,
    remote_root: Path,
    progress: Progress = print_progress,
) -> str:
    """Upload the manifest's images (skipping objects already there with the same sha256) and the
    relocated manifest, last. Returns the manifest's key."""
    existing = _existing_sha256(s3, bucket, f"{prefix}/{FILES_DIR}/")
    uploaded = 0
    for entry in manifest.files:
        key = f"{prefix}/{FILES_DIR}/{relative_posix(manifest.dataset_root, entry.path)}"
        if existing.get(key) == entry.sha256:
            continue
        s3.upload_file(str(entry.path), bucket, key, ExtraArgs={"Metadata": {"sha256": entry.sha256}})
        uploaded += 1
    relocated = relocate(manifest, remote_root / FILES_DIR)
    key = f"{prefix}/{MANIFEST_KEY}"
    s3.put_object(Bucket=bucket, Key=key, Body=relocated.to_json().encode("utf-8"))
    progress(f"dataset: {uploaded} of {len(manifest.files)} images uploaded to s3://{bucket}/{prefix}/")
    return key


def _existing_sha256(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            head = s3.head_object(Bucket=bucket, Key=item["Key"])
            found[item["Key"]] = head.get("Metadata", {}).get("sha256", "")
    return found


def download_run(
    s3: Any, *, bucket: str, prefix: str, target: Path, progress: Progress = print_progress
) -> Path:
    """Download a run directory written remotely; it appears at ``target`` complete or not at all."""
    staging = temporary_sibling(target, "download")
    count = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 :]
                if not relative or relative.endswith("/") or ".." in relative.split("/"):
                    continue
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(path))
                count += 1
        if not RunDirectory(staging).model_card.is_file():
            raise TrainingError(
                f"s3://{bucket}/{prefix}/ holds no complete run (no model_card.json); resume it with --resume"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"run: {count} files downloaded to {target}")
    return target
