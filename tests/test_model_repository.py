"""The one reader of the OVMS repository layout, as serving, bench and the images use it."""

import hashlib
import json
from pathlib import Path

import pytest

from contracts.errors import ModelRepositoryError
from contracts.model_repository import ModelRepository, ModelVersion, served_name

CARD = {"run_id": "20250101-120000", "image_size": 64}


def _version(repository: ModelRepository, precision: str, version: int) -> Path:
    """A version folder as optimize publishes it (tests/test_optimize_repository.py checks that side)."""
    folder = repository.model_dir("bone-marrow", precision) / str(version)
    folder.mkdir(parents=True)
    (folder / "model.xml").write_text(f"<net name='{precision}'/>")
    (folder / "model.bin").write_bytes(precision.encode() * 10)
    (folder / "model_card.json").write_text(json.dumps(CARD))
    return folder


@pytest.fixture
def published(tmp_path) -> tuple[ModelRepository, list[Path]]:
    repository = ModelRepository(tmp_path / "models")
    return repository, [_version(repository, p, 1) for p in ("fp32", "int8")]


def test_a_version_folder_reads_as_a_model_version(published):
    repository, folders = published
    int8 = repository.find("bone-marrow", "int8")
    assert int8 == ModelVersion(
        name="bone-marrow-int8",
        precision="int8",
        version=1,
        directory=folders[1],
        image_size=64,
        run_id="20250101-120000",
        sha256=hashlib.sha256(b"int8" * 10).hexdigest(),
    )
    assert (int8.xml.name, int8.bin.name, int8.model_card.name) == (
        "model.xml",
        "model.bin",
        "model_card.json",
    )
    assert repository.config_file == repository.root / "config.json"


def test_the_latest_integer_version_is_found_and_others_ignored(published):
    repository, _ = published
    model_dir = repository.model_dir("bone-marrow", "int8")
    assert model_dir.name == served_name("bone-marrow", "int8") == "bone-marrow-int8"
    (model_dir / ".staging-x").mkdir()
    (model_dir / "latest").mkdir()
    _version(repository, "int8", 12)
    assert repository.versions("bone-marrow", "int8") == [1, 12]
    assert repository.find("bone-marrow", "int8").version == 12
    assert repository.find("bone-marrow", "int8", 1).version == 1
    _version(repository, "fp32", 12)  # find_all wants one version set (tests below: what else it refuses)
    assert [m.precision for m in repository.find_all("bone-marrow", ["int8", "fp32", "int8"])] == [
        "int8",
        "fp32",
    ]


def _break(repository: ModelRepository, breakage: str) -> None:
    version = repository.root / "bone-marrow-int8" / "1"
    if breakage == "no-bin":
        (version / "model.bin").unlink()
    elif breakage == "card-without-size":
        (version / "model_card.json").write_text("{}")
    elif breakage == "card-bad-size":
        (version / "model_card.json").write_text(json.dumps({"image_size": "64"}))


@pytest.mark.parametrize(
    ("breakage", "precision", "version", "message"),
    [
        ("none", "fp16", None, r"^no published bone-marrow-fp16 in .*: no integer version folder under"),
        ("none", "int8", 3, r"has no bone-marrow-int8 version 3 \(it has 1\)$"),
        ("no-bin", "int8", None, r"^bone-marrow-int8 version 1 is incomplete: .*model\.bin is missing$"),
        (
            "card-without-size",
            "int8",
            None,
            r"^cannot read image_size from the model card .*model_card\.json",
        ),
        ("card-bad-size", "int8", None, r"has an invalid image_size '64'; republish with `invoke optimize`$"),
    ],
)
def test_unusable_versions_are_one_line_errors(published, breakage, precision, version, message):
    repository, _ = published
    _break(repository, breakage)
    with pytest.raises(ModelRepositoryError, match=message) as error:
        repository.find("bone-marrow", precision, version)
    assert "\n" not in str(error.value)


def test_a_missing_repository_says_to_optimize_first(tmp_path):
    with pytest.raises(
        ModelRepositoryError, match=r"^model repository .* does not exist; run `invoke optimize`"
    ):
        ModelRepository(tmp_path / "models").find("bone-marrow", "int8")
    assert ModelRepository(tmp_path / "models").versions("bone-marrow", "int8") == []


def test_bf16_is_the_fp32_ir_under_its_own_name(published):
    repository, folders = published
    _version(repository, "fp32", 2)
    (repository.root / "version_set.json").write_text(
        json.dumps({"models": {"bone-marrow": {"versions": {"fp32": 1, "int8": 1}}}})
    )
    bf16 = repository.find("bone-marrow", "bf16")
    fp32 = repository.find("bone-marrow", "fp32")
    assert (bf16.name, bf16.precision, bf16.version, bf16.directory) == (
        "bone-marrow-bf16",
        "bf16",
        1,
        folders[0],
    )
    assert (bf16.sha256, bf16.ir_name, fp32.ir_name) == (fp32.sha256, "bone-marrow-fp32", "bone-marrow-fp32")
    assert repository.uncommitted("bone-marrow", "bf16") == [2]  # fp32's leftover, not a bf16 folder
    assert not (repository.root / "bone-marrow-bf16").exists()
    assert [m.name for m in repository.find_all("bone-marrow", ["fp32", "bf16", "int8"])] == [
        "bone-marrow-fp32",
        "bone-marrow-bf16",
        "bone-marrow-int8",
    ]


def test_bf16_without_an_fp32_ir_says_to_publish_fp32(tmp_path):
    repository = ModelRepository(tmp_path / "models")
    _version(repository, "int8", 1)
    with pytest.raises(
        ModelRepositoryError,
        match=r"^no published bone-marrow-fp32 \(the fp32 IR that "
        r"bone-marrow-bf16 runs\) in .*run `invoke optimize` with fp32 in optimize.precisions$",
    ):
        repository.find("bone-marrow", "bf16")
