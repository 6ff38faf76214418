"""Upload a folder (the OVMS model repository) to S3: sha256 in metadata, unchanged files skipped,
large files in parts that resume after an interruption, files gone locally removed remotely.

Resumption keeps a small journal per file (upload id, digest, part ETags) under ``journal_dir``;
S3's own list of parts decides what is really there.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts.errors import DeployError

MiB = 1024 * 1024
PART_SIZE = 16 * MiB
MULTIPART_THRESHOLD = 32 * MiB
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256: the hex digest of the whole file


@dataclass(frozen=True)
class UploadSummary:
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    resumed: tuple[str, ...]
    deleted: tuple[str, ...]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_directory(
    s3: Any,
    *,
    root: Path,
    bucket: str,
    prefix: str,
    journal_dir: Path,
    part_size: int = PART_SIZE,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    progress: Callable[[str], None] = print,
) -> UploadSummary:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise DeployError(f"nothing to upload: {root} is empty or missing")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    uploaded, skipped, resumed = [], [], []
    local_keys = set()
    try:
        for path in files:
            key = prefix + path.relative_to(root).as_posix()
            local_keys.add(key)
            digest = file_sha256(path)
            if _remote_sha256(s3, bucket, key) == digest:
                skipped.append(key)
                continue
            if path.stat().st_size <= multipart_threshold:
                with path.open("rb") as body:
                    s3.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=body,
                        Metadata={SHA256_METADATA: digest},
                        ChecksumSHA256=_b64(bytes.fromhex(digest)),
                    )
            elif _multipart(
                s3,
                path=path,
                bucket=bucket,
                key=key,
                digest=digest,
                part_size=part_size,
                journal=journal_dir / f"{hashlib.sha256(f'{bucket}/{key}'.encode()).hexdigest()[:24]}.json",
            ):
                resumed.append(key)
            uploaded.append(key)
            progress(f"uploaded s3://{bucket}/{key}")
        deleted = _delete_others(s3, bucket=bucket, prefix=prefix, keep=local_keys)
    except (BotoCoreError, ClientError, OSError) as exc:
        raise DeployError(
            f"upload to s3://{bucket}/{prefix} interrupted ({type(exc).__name__}): run it again to resume"
        ) from None
    return UploadSummary(tuple(uploaded), tuple(skipped), tuple(resumed), tuple(deleted))


def _remote_sha256(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get(SHA256_METADATA)


def _multipart(
    s3: Any, *, path: Path, bucket: str, key: str, digest: str, part_size: int, journal: Path
) -> bool:
    """Upload ``path`` in parts, continuing a journalled upload of the same content; True if resumed."""
    state = _read_journal(journal)
    done: dict[int, dict[str, str]] | None = None
    if state is not None:
        same = (state["bucket"], state["key"], state["sha256"], state["part_size"]) == (
            bucket,
            key,
            digest,
            part_size,
        )
        if same:
            done = _parts_still_there(s3, bucket=bucket, key=key, upload_id=state["upload_id"], journal=state)
        if done is None:
            _abort_quietly(s3, bucket=state["bucket"], key=state["key"], upload_id=state["upload_id"])
    resumed = state is not None and done is not None
    if state is None or done is None:
        upload_id = s3.create_multipart_upload(
            Bucket=bucket, Key=key, Metadata={SHA256_METADATA: digest}, ChecksumAlgorithm="SHA256"
        )["UploadId"]
        state = {
            "bucket": bucket,
            "key": key,
            "sha256": digest,
            "part_size": part_size,
            "upload_id": upload_id,
        }
        done = {}
    state["parts"] = {str(n): part for n, part in done.items()}
    _write_journal(journal, state)
    parts_total = max(1, -(-path.stat().st_size // part_size))
    with path.open("rb") as handle:
        for number in range(1, parts_total + 1):
            if number in done:
                continue
            handle.seek((number - 1) * part_size)
            chunk = handle.read(part_size)
            checksum = _b64(hashlib.sha256(chunk).digest())
            response = s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=state["upload_id"],
                PartNumber=number,
                Body=chunk,
                ChecksumSHA256=checksum,
            )
            done[number] = {"ETag": response["ETag"], "ChecksumSHA256": checksum}
            state["parts"][str(number)] = done[number]
            _write_journal(journal, state)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=state["upload_id"],
        MultipartUpload={"Parts": [{"PartNumber": n, **done[n]} for n in sorted(done)]},
    )
    journal.unlink(missing_ok=True)
    return resumed


def _parts_still_there(
    s3: Any, *, bucket: str, key: str, upload_id: str, journal: dict[str, Any]
) -> dict[int, dict[str, str]] | None:
    """Parts S3 holds for the upload whose ETag matches the journal; None if the upload is gone."""
    try:
        listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
            return None
        raise
    recorded = journal.get("parts", {})
    return {
        part["PartNumber"]: recorded[str(part["PartNumber"])]
        for part in listed
        if recorded.get(str(part["PartNumber"]), {}).get("ETag") == part["ETag"]
    }


def _abort_quietly(s3: Any, *, bucket: str, key: str, upload_id: str) -> None:
    # Already gone is fine; the bucket's lifecycle rule aborts leftovers anyway.
    with contextlib.suppress(ClientError):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _delete_others(s3: Any, *, bucket: str, prefix: str, keep: set[str]) -> list[str]:
    """Remove objects under ``prefix`` that no longer exist locally (versioning keeps them recoverable)."""
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        stale += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in keep]
    for start in range(0, len(stale), 1000):
        batch = [{"Key": key} for key in stale[start : start + 1000]]
        # DeleteObjects answers 200 even when keys fail; with Quiet only the failures are listed.
        errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
        if errors:
            first = errors[0]
            raise DeployError(
                f"cannot remove {len(errors)} stale object(s) from s3://{bucket}/{prefix}: "
                f"{first.get('Key')}: {first.get('Code')} ({first.get('Message', '')}); OVMS would still "
                "load them: allow s3:DeleteObject there and run `invoke up` again"
            )
    return stale


def _read_journal(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "upload_id" in state else None


def _write_journal(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, path)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
