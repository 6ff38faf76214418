"""Uploading the OVMS model repository to S3 (moto server): sha256 metadata, skips, resumption."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from botocore.exceptions import EndpointConnectionError
from moto_aws import REGION, moto_session  # noqa: F401 (fixture)

from contracts.errors import DeployError
from workloads.deploy.model_upload import MiB, upload_directory

BUCKET = "bm-models"
PART = 5 * MiB  # S3's smallest part size


def _bucket(session):
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def _repository(root, big_size: int = 0):
    files = {
        "bone-marrow-fp32/1/model.xml": b"<net fp32/>",
        "bone-marrow-fp32/1/model.bin": os.urandom(3000),
        "bone-marrow-int8/1/model.xml": b"<net int8/>",
    }
    if big_size:
        files["bone-marrow-int8/1/model.bin"] = os.urandom(big_size)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def _upload(s3, root, journal, **kwargs):
    return upload_directory(
        s3, root=root, bucket=BUCKET, prefix="ovms", journal_dir=journal, progress=lambda line: None, **kwargs
    )


def test_files_carry_their_sha256_and_a_second_upload_skips_them(moto_session, tmp_path):  # noqa: F811
    s3 = _bucket(moto_session)
    files = _repository(tmp_path / "models")
    first = _upload(s3, tmp_path / "models", tmp_path / "journal")
    assert sorted(first.uploaded) == sorted(f"ovms/{name}" for name in files) and not first.skipped
    for name, data in files.items():
        head = s3.head_object(Bucket=BUCKET, Key=f"ovms/{name}")
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert s3.get_object(Bucket=BUCKET, Key=f"ovms/{name}")["Body"].read() == data
    second = _upload(s3, tmp_path / "models", tmp_path / "journal")
    assert not second.uploaded and len(second.skipped) == len(files)


def test_a_changed_file_is_uploaded_again_and_a_removed_one_deleted(moto_session, tmp_path):  # noqa: F811
    s3 = _bucket(moto_session)
    root = tmp_path / "models"
    _repository(root)
    _upload(s3, root, tmp_path / "journal")
    (root / "bone-marrow-fp32/1/model.xml").write_bytes(b"<net fp32 v2/>")
    (root / "bone-marrow-int8/1/model.xml").unlink()
    result = _upload(s3, root, tmp_path / "journal")
    assert result.uploaded == ("ovms/bone-marrow-fp32/1/model.xml",)
    assert result.deleted == ("ovms/bone-marrow-int8/1/model.xml",)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="ovms/")["Contents"]]
    assert "ovms/bone-marrow-int8/1/model.xml" not in keys


class FailingAfter:
    """An S3 client whose upload_part fails (like a dropped connection) after ``parts`` calls."""

    def __init__(self, real, parts: int) -> None:
        self.real, self.left, self.calls = real, parts, 0

    def upload_part(self, **kwargs):
        self.calls += 1
        if self.left == 0:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1")
        self.left -= 1
        return self.real.upload_part(**kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_an_interrupted_large_upload_resumes_with_the_missing_parts_only(moto_session, tmp_path):  # noqa: F811
    s3 = _bucket(moto_session)
    root = tmp_path / "models"
    files = _repository(root, big_size=2 * PART + 1234)  # three parts
    journal = tmp_path / "journal"
    with pytest.raises(
        DeployError, match=r"^upload to s3://bm-models/ovms/ interrupted .*run it again to resume$"
    ):
        _upload(FailingAfter(s3, parts=2), root, journal, part_size=PART, multipart_threshold=PART)
    (state_file,) = journal.glob("*.json")
    assert sorted(json.loads(state_file.read_text())["parts"]) == ["1", "2"]

    counting = FailingAfter(s3, parts=99)
    result = _upload(counting, root, journal, part_size=PART, multipart_threshold=PART)
    assert counting.calls == 1  # part 3 only
    assert result.resumed == ("ovms/bone-marrow-int8/1/model.bin",)
    body = s3.get_object(Bucket=BUCKET, Key="ovms/bone-marrow-int8/1/model.bin")["Body"].read()
    assert body == files["bone-marrow-int8/1/model.bin"]
    head = s3.head_object(Bucket=BUCKET, Key="ovms/bone-marrow-int8/1/model.bin")
    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert not list(journal.glob("*.json"))
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_file_changed_since_the_interruption_starts_over_and_the_old_upload_is_aborted(
    moto_session,  # noqa: F811
    tmp_path,
):
    s3 = _bucket(moto_session)
    root = tmp_path / "models"
    _repository(root, big_size=2 * PART + 10)
    journal = tmp_path / "journal"
    with pytest.raises(DeployError):
        _upload(FailingAfter(s3, parts=1), root, journal, part_size=PART, multipart_threshold=PART)
    new = os.urandom(2 * PART + 99)
    (root / "bone-marrow-int8/1/model.bin").write_bytes(new)
    counting = FailingAfter(s3, parts=99)
    result = _upload(counting, root, journal, part_size=PART, multipart_threshold=PART)
    assert counting.calls == 3 and not result.resumed
    assert s3.get_object(Bucket=BUCKET, Key="ovms/bone-marrow-int8/1/model.bin")["Body"].read() == new
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_an_empty_repository_is_one_clear_error(moto_session, tmp_path):  # noqa: F811
    (tmp_path / "models").mkdir()
    with pytest.raises(DeployError, match="nothing to upload"):
        _upload(_bucket(moto_session), tmp_path / "models", tmp_path / "journal")


class DeniedDeletes:
    """S3 answering DeleteObjects as it does when a policy denies s3:DeleteObject: 200, with Errors."""

    def __init__(self, real):
        self.real = real

    def delete_objects(self, *, Bucket, Delete):
        errors = [
            {"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"} for o in Delete["Objects"]
        ]
        return {"Errors": errors}

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_stale_objects_that_cannot_be_removed_are_an_error(moto_session, tmp_path):  # noqa: F811
    s3 = _bucket(moto_session)
    root = tmp_path / "models"
    _repository(root)
    _upload(s3, root, tmp_path / "journal")
    (root / "bone-marrow-int8/1/model.xml").unlink()
    with pytest.raises(DeployError) as info:
        _upload(DeniedDeletes(s3), root, tmp_path / "journal")
    assert str(info.value).startswith(
        f"cannot remove 1 stale object(s) from s3://{BUCKET}/ovms/: ovms/bone-marrow-int8/1/model.xml: "
        "AccessDenied (Access Denied)"
    )
