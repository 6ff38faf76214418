"""Integrity end to end: SHA256SUMS written at publish and checked by `up --target local` and by the
cluster's model-sync init container (its rendered command, run by a local shell), and the bench's
known-answer check against the reference stored at publish (never recomputed from the served file).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from loopback import free_ports
from test_bench_clients import tiny_ir

from contracts.config import load_config
from contracts.errors import BenchError, ModelRepositoryError, OptimizationError, ServingError
from contracts.known_answer import (
    CHECKSUM_FILE,
    KNOWN_ANSWER_FILE,
    ReferenceImage,
    StoredKnownAnswer,
    checksum_text,
    read_checksums,
    verify_version,
)
from contracts.model_repository import ModelRepository
from workloads.k8s.model_source import S3ModelSource
from workloads.k8s.render import render_serving
from workloads.k8s.s3sync import VERIFY_DIR_ENV
from workloads.optimize import repository
from workloads.optimize.repository import publish
from workloads.serving import local

REQUIRED = ("model.xml", "model.bin", "model_card.json")


def reseal(version_dir: Path) -> None:
    """Rewrite a version's SHA256SUMS for its current files: a replacement the checksums cannot see."""
    names = read_checksums(version_dir)
    digests = {name: hashlib.sha256((version_dir / name).read_bytes()).hexdigest() for name in names}
    (version_dir / CHECKSUM_FILE).write_text(checksum_text(digests))


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Bit rot: one byte changed, same size."""
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def _answer(precision: str) -> StoredKnownAnswer:
    return StoredKnownAnswer(
        model=f"bone-marrow-{precision}",
        precision=precision,
        image_size=32,
        images=(ReferenceImage("0" * 64, "data/x.jpg", 1),),
        classes=("A", "B"),
        probabilities=((0.25, 0.75),),
        computed_by="test",
        created_at="2026-01-01T00:00:00+00:00",
        cpu={},
    )


@pytest.fixture
def published(tmp_path):
    """A repository (fp32 + int8 of a fake IR) published as `invoke optimize` does, with known answers."""
    card = tmp_path / "run" / "model_card.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"run_id": "r1", "image_size": 32}))
    irs = {}
    for precision in ("fp32", "int8"):
        folder = tmp_path / "run" / "openvino" / precision
        folder.mkdir(parents=True)
        (folder / "model.xml").write_text(f"<net name='{precision}'/>")
        (folder / "model.bin").write_bytes(precision.encode() * 100)
        irs[precision] = folder
    answers = {p: _answer(p) for p in irs}
    models = publish(
        tmp_path / "models", "bone-marrow", irs, card, progress=lambda _: None, known_answers=answers
    )
    return tmp_path / "models", list(models)


# --- SHA256SUMS and the stored known answer, as publish writes them ----------------------------------


def test_publish_records_the_sha256_of_every_file_and_the_known_answer(published):
    _, models = published
    for model in models:
        listed = read_checksums(model.directory)
        assert sorted(listed) == sorted([*REQUIRED, KNOWN_ANSWER_FILE])
        for name, digest in listed.items():
            assert hashlib.sha256((model.directory / name).read_bytes()).hexdigest() == digest
        verify_version(model.directory, REQUIRED)
        stored = StoredKnownAnswer.load(model.directory / KNOWN_ANSWER_FILE)
        assert stored == _answer(model.precision) and stored.top1 == ["B"]


def test_sha256sum_reads_what_publish_writes(published):
    _, models = published
    for model in models:
        done = subprocess.run(
            ["sha256sum", "--check", "--strict", CHECKSUM_FILE],
            cwd=model.directory,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_flipped_byte_is_named_by_verify(published):
    _, models = published
    flip_byte(models[0].bin)
    with pytest.raises(ModelRepositoryError) as error:
        verify_version(models[0].directory, REQUIRED)
    message = str(error.value)
    assert "\n" not in message and f"{models[0].bin} does not match the sha256 recorded at publish" in message


def test_missing_or_unlisted_checksums_are_refused(published):
    _, models = published
    lines = (models[0].directory / CHECKSUM_FILE).read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.endswith("  model.bin\n")]
    (models[0].directory / CHECKSUM_FILE).write_text("".join(kept))  # model.bin's line dropped
    with pytest.raises(ModelRepositoryError, match=r"does not list model\.bin"):
        verify_version(models[0].directory, REQUIRED)
    (models[0].directory / CHECKSUM_FILE).unlink()
    with pytest.raises(ModelRepositoryError, match=f"has no {CHECKSUM_FILE}"):
        verify_version(models[0].directory, REQUIRED)


def test_a_copy_that_differs_from_its_source_is_never_published(tmp_path, monkeypatch):
    card = tmp_path / "model_card.json"
    card.write_text(json.dumps({"image_size": 32}))
    folder = tmp_path / "fp32"
    folder.mkdir()
    (folder / "model.xml").write_text("<net/>")
    (folder / "model.bin").write_bytes(b"weights" * 10)
    copy = shutil.copyfile

    def rotting_copy(source, target):
        copy(source, target)
        if Path(target).name == "model.bin":
            flip_byte(Path(target))

    monkeypatch.setattr(repository.shutil, "copyfile", rotting_copy)
    with pytest.raises(OptimizationError, match=r"staged copy does not match its source: .*model\.bin"):
        publish(tmp_path / "models", "bone-marrow", {"fp32": folder}, card, progress=lambda _: None)
    assert ModelRepository(tmp_path / "models").versions("bone-marrow", "fp32") == []


# --- the cluster: the rendered model-sync container, run as the pod runs it --------------------------


def _model_sync_container(tmp_path: Path, artifacts: Path | None = None) -> dict:
    # Rendering reads the local repository's committed version set, when there is one, to pin OVMS.
    config = load_config({"artifacts_dir": str(artifacts or tmp_path / "no-artifacts")})
    source = S3ModelSource(bucket="bm-models", prefix="ovms", region="us-east-1", service_account="ovms-s3")
    paths = render_serving(config, target="aws", model_source=source, out_dir=tmp_path / "manifests")
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] == "Deployment":
                (sync,) = document["spec"]["template"]["spec"]["initContainers"]
                return sync
    raise AssertionError("no Deployment rendered")


def _run_sync(
    tmp_path: Path, s3: Path, *, shell: str | None = None, aws_exit: int = 0, artifacts: Path | None = None
):
    """The container's command + args as rendered; `aws` is a local stand-in copying ``s3`` into the
    synced folder (``$BMC_MODEL_DIR``, /models in the pod). The verify part runs exactly as rendered."""
    sync = _model_sync_container(tmp_path, artifacts)
    target = tmp_path / "pod-models"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    aws = bin_dir / "aws"
    aws.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$AWS_ARGS_LOG"\n'
        f'[ {aws_exit} -eq 0 ] || exit {aws_exit}\ncp -R "$FAKE_S3"/. "$BMC_MODEL_DIR"/\n'
    )
    aws.chmod(0o755)
    env = {e["name"]: e["value"] for e in sync["env"] if "value" in e}
    assert env[VERIFY_DIR_ENV] == "/models"
    env.update(
        {
            VERIFY_DIR_ENV: str(target),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_S3": str(s3),
            "AWS_ARGS_LOG": str(tmp_path / "aws-args"),
            "HOME": str(tmp_path),
        }
    )
    command = list(sync["command"])
    if shell:
        command[0] = shutil.which(shell) or pytest.skip(f"no {shell}")
    done = subprocess.run(command + sync["args"], env=env, capture_output=True, text=True, timeout=60)
    return sync, done


def test_the_sync_container_verifies_after_the_sync_and_passes_on_intact_files(tmp_path, published):
    repo, _ = published
    sync, done = _run_sync(tmp_path, repo)
    assert sync["command"][:2] == ["/bin/sh", "-c"]
    assert done.returncode == 0, done.stderr
    assert "model-sync: bone-marrow-fp32 version 1 verified" in done.stdout
    assert "model-sync: bone-marrow-int8 version 1 verified" in done.stdout
    # The CLI got exactly the container's args.
    assert (tmp_path / "aws-args").read_text().splitlines() == sync["args"]
    assert sync["args"][:4] == ["s3", "sync", "s3://bm-models/ovms", "/models"]


@pytest.mark.parametrize("shell", [None, "bash"])  # as rendered (/bin/sh), and bash: Amazon Linux's sh
def test_the_sync_container_fails_on_a_flipped_byte_so_ovms_never_starts(tmp_path, published, shell):
    repo, models = published
    int8 = next(m for m in models if m.precision == "int8")
    flip_byte(int8.bin)
    _, done = _run_sync(tmp_path, repo, shell=shell)
    assert done.returncode != 0
    assert "model.bin: FAILED" in done.stdout
    assert (
        "model-sync: bone-marrow-int8 version 1 does not match its SHA256SUMS; OVMS is not started"
        in done.stderr
    )


def test_the_sync_container_fails_without_checksums_or_versions_or_a_sync(tmp_path, published):
    repo, models = published
    (models[0].directory / CHECKSUM_FILE).unlink()
    _, done = _run_sync(tmp_path, repo)
    assert done.returncode != 0 and "bone-marrow-fp32 version 1 has no SHA256SUMS" in done.stderr

    shutil.rmtree(repo / "bone-marrow-fp32")
    _, done = _run_sync(tmp_path, repo)
    assert done.returncode != 0 and "no version of bone-marrow-fp32 was synced" in done.stderr

    _, done = _run_sync(tmp_path, repo, aws_exit=3)
    assert done.returncode == 3 and "verified" not in done.stdout


def test_an_older_version_without_checksums_is_tolerated_but_a_damaged_one_is_not(tmp_path, published):
    repo, models = published
    for model in models:  # version 1 becomes "published before checksums"; 2 is the served one
        shutil.copytree(model.directory, model.directory.parent / "2")
        (model.directory / CHECKSUM_FILE).unlink()
    _, done = _run_sync(tmp_path, repo)
    assert done.returncode == 0, done.stderr
    assert "bone-marrow-int8 version 2 verified" in done.stdout
    flip_byte(repo / "bone-marrow-fp32" / "2" / "model.xml", 1)
    _, done = _run_sync(tmp_path, repo)
    assert done.returncode != 0 and "model.xml: FAILED" in done.stdout


# --- the local server and the bench, on a real optimized model ----------------------------------------


def _local_config(artifacts: Path, **bench):
    http_port, grpc_port = free_ports()
    return load_config(
        {
            "artifacts_dir": str(artifacts),
            "serving": {"http_port": http_port, "grpc_port": grpc_port, "start_timeout_seconds": 60.0},
            "bench": {
                "batch_size": 4,
                "concurrency": 1,
                "warmup_seconds": 0.1,
                "min_duration_seconds": 0.1,
                "min_requests": 2,
                "repetitions": 3,
                "known_answer_images": 8,
                "request_timeout_seconds": 10,
                **bench,
            },
        }
    )


def _artifacts(root: Path, served_repository: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("data", "runs"):
        (root / name).symlink_to(served_repository / name)
    shutil.copytree(served_repository / "models", root / "models")
    return root


@pytest.mark.slow
def test_up_refuses_a_model_bin_with_one_flipped_byte_in_one_line(tmp_path, served_repository):
    artifacts = _artifacts(tmp_path / "artifacts", served_repository)
    (int8,) = (artifacts / "models" / "bone-marrow-int8").glob("[0-9]*")
    size = (int8 / "model.bin").stat().st_size
    flip_byte(int8 / "model.bin")
    assert (int8 / "model.bin").stat().st_size == size
    config = _local_config(artifacts)
    with pytest.raises(ServingError) as error:
        local.start(config, progress=lambda line: None)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"refusing to serve bone-marrow-int8 version {int8.name}: {int8 / 'model.bin'}")
    assert "does not match the sha256 recorded at publish" in message
    assert not (config.paths.local_server / "server.pid").exists()


@pytest.mark.slow
def test_the_bench_fails_a_damaged_but_loadable_model_against_the_stored_reference(
    tmp_path, served_repository
):
    """The int8 IR is replaced by another loadable model (same input and output) and the checksums
    rewritten to match (a replacement SHA256SUMS cannot see); the bench reads this very repository,
    so a reference recomputed from the served file would agree — the stored one does not."""
    artifacts = _artifacts(tmp_path / "artifacts", served_repository)
    (int8,) = (artifacts / "models" / "bone-marrow-int8").glob("[0-9]*")
    stored = StoredKnownAnswer.load(int8 / KNOWN_ANSWER_FILE)
    # "Damaged": one class wins for every image — one the published model answers for none of them.
    other_class = min(set(range(21)) - {stored.classes.index(c) for c in stored.top1})
    weights = np.zeros((3, 21), np.float32)
    weights[:, other_class] = 1.0
    tiny_ir(tmp_path / "other", size=stored.image_size, weights=weights)
    for name in ("model.xml", "model.bin"):
        shutil.copyfile(tmp_path / "other" / name, int8 / name)
    reseal(int8)
    config = _local_config(artifacts, precision="int8")
    local.start(config, progress=lambda line: None)
    try:
        from workloads.bench.run import run_bench

        with pytest.raises(BenchError) as error:
            run_bench(config, target="local", progress=lambda line: None)
    finally:
        local.stop(config, progress=lambda line: None)
    message = str(error.value)
    assert message.startswith("known-answer check before the run failed: ")
    assert "8 of 8 images got another top-1 class" in message
    assert "the answers stored at publish for bone-marrow-int8" in message
    assert not config.paths.bench_results.exists() or not list(config.paths.bench_results.glob("*.json"))


@pytest.mark.slow
def test_the_bench_refuses_a_version_without_a_stored_reference(tmp_path, served_repository):
    artifacts = _artifacts(tmp_path / "artifacts", served_repository)
    (int8,) = (artifacts / "models" / "bone-marrow-int8").glob("[0-9]*")
    (int8 / KNOWN_ANSWER_FILE).unlink()
    lines = (int8 / CHECKSUM_FILE).read_text().splitlines(keepends=True)
    (int8 / CHECKSUM_FILE).write_text("".join(line for line in lines if KNOWN_ANSWER_FILE not in line))
    from workloads.bench.run import run_bench

    config = _local_config(artifacts, precision="int8")
    with pytest.raises(BenchError, match=r"has no stored known answer .*republish it with `invoke optimize`"):
        run_bench(config, target="in-process", runtime="openvino", progress=lambda line: None)


def test_a_version_published_before_checksums_is_republished_not_reused(tmp_path, published):
    repo, models = published
    for model in models:
        (model.directory / CHECKSUM_FILE).unlink()
    card = tmp_path / "run" / "model_card.json"
    irs = {p: tmp_path / "run" / "openvino" / p for p in ("fp32", "int8")}
    again = publish(repo, "bone-marrow", irs, card, progress=lambda _: None)
    assert [m.version for m in again] == [2, 2] and not again.unchanged
    for model in again:
        verify_version(model.directory, REQUIRED)
    # With checksums in place, the same files are reused as before.
    assert publish(repo, "bone-marrow", irs, card, progress=lambda _: None).unchanged == {
        "bone-marrow-fp32",
        "bone-marrow-int8",
    }


def test_the_sync_container_checks_the_version_ovms_is_pinned_to(tmp_path, published):
    repo, models = published  # committed: version 1 of each (version_set.json)
    for model in models:  # a version a killed publish left above the committed set
        shutil.copytree(model.directory, model.directory.parent / "2")
    _, done = _run_sync(tmp_path, repo, artifacts=repo.parent)
    assert done.returncode == 0, done.stderr
    assert "model-sync: bone-marrow-int8 version 1 verified" in done.stdout
    shutil.rmtree(tmp_path / "s3-copy", ignore_errors=True)
    shutil.copytree(repo, tmp_path / "s3-copy")
    shutil.rmtree(tmp_path / "s3-copy" / "bone-marrow-int8" / "1")  # the pinned version never arrived
    _, done = _run_sync(tmp_path, tmp_path / "s3-copy", artifacts=repo.parent)
    assert done.returncode != 0
    assert "bone-marrow-int8 version 1 (the one OVMS serves) was not synced" in done.stderr
