import hashlib
import json
import stat
from pathlib import Path

import pytest

from contracts.errors import OptimizationError
from contracts.model_repository import ModelRepository
from workloads.optimize import repository
from workloads.optimize.repository import next_version, publish, published_entry, update_server_config


def _ir(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.xml").write_text(f"<net name='{tag}'/>")
    (folder / "model.bin").write_bytes(tag.encode() * 10)
    return folder


@pytest.fixture
def irs(tmp_path):
    return {p: _ir(tmp_path / "run" / "openvino" / p, p) for p in ("fp32", "fp16", "int8")}


@pytest.fixture
def card(tmp_path):
    path = tmp_path / "run" / "model_card.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model_name": "bone-marrow", "run_id": "r1", "image_size": 32}))
    return path


def _quiet(_message: str) -> None:
    pass


def test_first_publish_creates_version_1_of_every_precision(tmp_path, irs, card):
    repo = tmp_path / "models"
    published = publish(repo, "bone-marrow", irs, card, progress=_quiet)

    assert [(m.name, m.version, m.precision) for m in published] == [
        ("bone-marrow-fp32", 1, "fp32"),
        ("bone-marrow-fp16", 1, "fp16"),
        ("bone-marrow-int8", 1, "int8"),
    ]
    for model in published:
        assert model.directory == repo / model.name / "1"
        assert sorted(p.name for p in model.directory.iterdir()) == [
            "SHA256SUMS",
            "model.bin",
            "model.xml",
            "model_card.json",
        ]
        assert model.sha256 == hashlib.sha256(model.bin.read_bytes()).hexdigest()
        # sha256sum format, of the sources optimize evaluated.
        assert (model.directory / "SHA256SUMS").read_text() == "".join(
            f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {name}\n"
            for name, f in (
                ("model.bin", irs[model.precision] / "model.bin"),
                ("model.xml", irs[model.precision] / "model.xml"),
                ("model_card.json", card),
            )
        )
        assert (model.image_size, model.run_id) == (32, "r1")
        assert model.bin.read_bytes() == (irs[model.precision] / "model.bin").read_bytes()
        assert model.model_card.read_text() == card.read_text()
        # Readable by the OVMS container's user, unlike mkdtemp's owner-only default.
        assert stat.S_IMODE(model.directory.stat().st_mode) == 0o755
    config = json.loads((repo / "config.json").read_text())
    assert config == {
        "model_config_list": [
            {
                "config": {
                    "name": f"bone-marrow-{p}",
                    "base_path": f"/models/bone-marrow-{p}",
                    # OVMS serves the committed version, not the highest folder.
                    "model_version_policy": {"specific": {"versions": [1]}},
                    # ... in f32, even on hosts whose OpenVINO default is bf16.
                    "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
                }
            }
            for p in ("fp32", "fp16", "int8")
        ]
    }
    assert ModelRepository(repo).committed("bone-marrow") == {"fp32": 1, "fp16": 1, "int8": 1}


def test_second_publish_adds_version_2_and_leaves_version_1_alone(tmp_path, irs, card):
    repo = tmp_path / "models"
    first = publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)
    before = first[0].bin.read_bytes()
    (irs["fp32"] / "model.bin").write_bytes(b"retrained weights")

    second = publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)

    assert [m.version for m in first + second] == [1, 2]
    assert first[0].bin.read_bytes() == before
    assert second[0].bin.read_bytes() == b"retrained weights"
    assert second[0].sha256 == hashlib.sha256(b"retrained weights").hexdigest()
    assert len(json.loads((repo / "config.json").read_text())["model_config_list"]) == 1


def test_precisions_of_one_run_share_the_next_version_after_the_highest(tmp_path, irs, card):
    repo = tmp_path / "models"
    (repo / "bone-marrow-fp32" / "3").mkdir(parents=True)
    (repo / "bone-marrow-fp32" / "latest").mkdir()  # non-integer folders are not versions
    (repo / "bone-marrow-fp32" / ".staging-left-over").mkdir()
    (repo / "bone-marrow-fp32" / "9").write_text("a file, not a version folder")

    published = publish(
        repo, "bone-marrow", {"fp32": irs["fp32"], "int8": irs["int8"]}, card, progress=_quiet
    )

    assert {m.name: m.version for m in published} == {"bone-marrow-fp32": 4, "bone-marrow-int8": 4}
    assert ModelRepository(repo).versions("bone-marrow", "int8") == [4]


def test_existing_and_next_versions_ignore_what_ovms_ignores(tmp_path):
    model_dir = tmp_path / "m-fp32"
    for name in ("1", "10", "2", "v3", "2-tmp", "٣", ".staging-x"):
        (model_dir / name).mkdir(parents=True)
    repo = ModelRepository(tmp_path)
    assert repo.versions("m", "fp32") == [1, 2, 10]
    assert repo.versions("m", "int8") == []
    assert next_version(repo, "m", ["fp32", "int8"]) == 11
    assert next_version(repo, "m", []) == 1


def test_what_is_published_reads_back_through_the_repository_owner(tmp_path, irs, card):
    repo = ModelRepository(tmp_path / "models")
    published = publish(repo.root, "bone-marrow", irs, card, progress=_quiet)
    assert [repo.find("bone-marrow", p) for p in irs] == published
    assert repo.find_all("bone-marrow", irs) == published


def test_the_report_entry_names_the_published_files_and_their_hashes(tmp_path, irs, card):
    (model,) = publish(tmp_path / "models", "bone-marrow", {"int8": irs["int8"]}, card, progress=_quiet)
    assert published_entry(model) == {
        "name": "bone-marrow-int8",
        "version": 1,
        "precision": "int8",
        "path": str(tmp_path / "models" / "bone-marrow-int8" / "1"),
        "bin_sha256": hashlib.sha256(b"int8" * 10).hexdigest(),
        "xml_sha256": hashlib.sha256(b"<net name='int8'/>").hexdigest(),
        "unchanged": False,
    }
    assert published_entry(model, unchanged=True)["unchanged"] is True


def test_byte_identical_models_reuse_their_latest_version_instead_of_a_new_one(tmp_path, irs, card):
    repo = tmp_path / "models"
    first = publish(repo, "bone-marrow", irs, card, progress=_quiet)
    messages: list[str] = []

    again = publish(repo, "bone-marrow", irs, card, progress=messages.append)

    assert again == first and [m.version for m in again] == [1, 1, 1]
    assert again.unchanged == {"bone-marrow-fp32", "bone-marrow-fp16", "bone-marrow-int8"}
    assert first.unchanged == frozenset()
    for precision in irs:
        assert ModelRepository(repo).versions("bone-marrow", precision) == [1]
        assert [p.name for p in (repo / f"bone-marrow-{precision}").iterdir()] == ["1"]  # nothing staged
    assert messages[0].startswith("unchanged bone-marrow-fp32 version 1: model.xml, model.bin and model card")


def test_only_changed_precisions_get_the_next_version(tmp_path, irs, card):
    repo = tmp_path / "models"
    publish(repo, "bone-marrow", irs, card, progress=_quiet)
    (irs["int8"] / "model.bin").write_bytes(b"requantized")
    messages: list[str] = []

    again = publish(repo, "bone-marrow", irs, card, progress=messages.append)

    assert [(m.name, m.version) for m in again] == [
        ("bone-marrow-fp32", 1),
        ("bone-marrow-fp16", 1),
        ("bone-marrow-int8", 2),
    ]
    assert again.unchanged == {"bone-marrow-fp32", "bone-marrow-fp16"}
    assert ModelRepository(repo).find_all("bone-marrow", irs) == list(again)  # what OVMS serves
    assert messages[-1].startswith("published bone-marrow-int8 version 2")


@pytest.mark.parametrize("change", ["xml", "card"])
def test_the_same_weights_with_another_graph_or_card_are_a_new_version(tmp_path, irs, card, change):
    repo = tmp_path / "models"
    publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)
    if change == "xml":
        (irs["fp32"] / "model.xml").write_text("<net name='fp32' version='11'/>")
    else:
        card.write_text(json.dumps({"model_name": "bone-marrow", "run_id": "r2", "image_size": 32}))

    (model,) = publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)

    assert model.version == 2 and model.run_id == ("r2" if change == "card" else "r1")


def test_only_the_latest_version_counts_as_already_published(tmp_path, irs, card):
    repo = tmp_path / "models"
    publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)
    original = (irs["fp32"] / "model.bin").read_bytes()
    (irs["fp32"] / "model.bin").write_bytes(b"retrained")
    publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)
    (irs["fp32"] / "model.bin").write_bytes(original)  # back to what version 1 holds

    (model,) = publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)

    assert model.version == 3  # reusing 1 would not make OVMS serve it


@pytest.mark.parametrize("content", [{"run_id": "r1"}, {"image_size": 0}, "{"])
def test_a_card_readers_cannot_use_stops_publishing_before_any_version_appears(tmp_path, irs, content):
    card = tmp_path / "model_card.json"
    card.write_text(content if isinstance(content, str) else json.dumps(content))
    repo = tmp_path / "models"
    with pytest.raises(OptimizationError, match=r"^cannot publish: .*image_size") as error:
        publish(repo, "bone-marrow", irs, card, progress=_quiet)
    assert "\n" not in str(error.value)
    assert not repo.exists()


def test_staging_folder_is_not_a_version_while_files_are_copied(tmp_path, irs, card, monkeypatch):
    seen = []
    rename = repository._rename_without_replacing

    def spy(staging: Path, target: Path) -> None:
        seen.append(
            (
                staging.name,
                sorted(p.name for p in staging.iterdir()),
                ModelRepository(staging.parent.parent).versions("bone-marrow", "fp32"),
            )
        )
        rename(staging, target)

    monkeypatch.setattr(repository, "_rename_without_replacing", spy)
    published = publish(tmp_path / "models", "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)

    ((staging_name, files, versions_before_rename),) = seen
    assert staging_name.startswith(".staging-")
    assert files == ["SHA256SUMS", "model.bin", "model.xml", "model_card.json"]
    assert versions_before_rename == []
    assert [p.name for p in published[0].directory.parent.iterdir()] == ["1"]  # no staging left behind


def test_collision_raises_and_rolls_back_the_whole_publish(tmp_path, irs, card, monkeypatch):
    repo = tmp_path / "models"
    publish(repo, "bone-marrow", {"fp32": irs["fp32"]}, card, progress=_quiet)
    published_bin = (repo / "bone-marrow-fp32" / "1" / "model.bin").read_bytes()
    config_before = (repo / "config.json").read_text()
    (irs["fp32"] / "model.bin").write_bytes(b"retrained")  # a new model, not the one published
    # Another publisher claimed version 1 for fp32 between our scan and our rename.
    monkeypatch.setattr(repository, "next_version", lambda *_: 1)

    with pytest.raises(OptimizationError, match=r"bone-marrow-fp32/1 already exists; refusing to overwrite"):
        publish(repo, "bone-marrow", {"int8": irs["int8"], "fp32": irs["fp32"]}, card, progress=_quiet)

    assert (repo / "bone-marrow-fp32" / "1" / "model.bin").read_bytes() == published_bin
    assert ModelRepository(repo).versions("bone-marrow", "int8") == []  # renamed first, then rolled back
    assert list((repo / "bone-marrow-int8").iterdir()) == []
    assert [p.name for p in (repo / "bone-marrow-fp32").iterdir()] == ["1"]
    assert (repo / "config.json").read_text() == config_before


def test_config_json_keeps_unrelated_entries_and_custom_settings(tmp_path, irs, card):
    repo = tmp_path / "models"
    repo.mkdir()
    original = {
        "monitoring": {"metrics": {"enable": True}},
        "model_config_list": [
            {"config": {"name": "other-model", "base_path": "/models/other-model"}},
            {"config": {"name": "bone-marrow-fp32", "base_path": "/custom/fp32", "nireq": 4}},
        ],
    }
    (repo / "config.json").write_text(json.dumps(original))

    publish(repo, "bone-marrow", {"fp32": irs["fp32"], "int8": irs["int8"]}, card, progress=_quiet)

    config = json.loads((repo / "config.json").read_text())
    assert config["monitoring"] == original["monitoring"]
    pinned = {
        "model_version_policy": {"specific": {"versions": [1]}},
        "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
    }
    assert config["model_config_list"] == [
        original["model_config_list"][0],
        {"config": {**original["model_config_list"][1]["config"], **pinned}},
        {"config": {"name": "bone-marrow-int8", "base_path": "/models/bone-marrow-int8", **pinned}},
    ]
    assert not [p for p in repo.iterdir() if p.name.endswith(".tmp")]


def test_update_server_config_creates_the_file_once_and_is_idempotent(tmp_path):
    path = update_server_config(tmp_path, ["a", "a", "b"], server_mount="/srv")
    assert json.loads(path.read_text())["model_config_list"] == [
        {"config": {"name": "a", "base_path": "/srv/a"}},
        {"config": {"name": "b", "base_path": "/srv/b"}},
    ]
    before = path.stat().st_mtime_ns
    update_server_config(tmp_path, ["b"])
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("content", ["{not json", '{"model_config_list": {}}', "[]"])
def test_broken_config_json_stops_publishing_before_any_version_appears(tmp_path, irs, card, content):
    repo = tmp_path / "models"
    repo.mkdir()
    (repo / "config.json").write_text(content)

    with pytest.raises(OptimizationError, match=r"config\.json"):
        publish(repo, "bone-marrow", irs, card, progress=_quiet)

    assert sorted(p.name for p in repo.iterdir()) == ["config.json"]


def test_missing_ir_file_is_reported_and_nothing_is_created(tmp_path, irs, card):
    (irs["int8"] / "model.bin").unlink()
    repo = tmp_path / "models"
    with pytest.raises(OptimizationError, match=r"cannot publish int8: .*model.bin is missing"):
        publish(repo, "bone-marrow", irs, card, progress=_quiet)
    assert not repo.exists()


def test_nothing_to_publish_is_an_error(tmp_path, card):
    with pytest.raises(OptimizationError, match="nothing to publish"):
        publish(tmp_path / "models", "bone-marrow", {}, card, progress=_quiet)
