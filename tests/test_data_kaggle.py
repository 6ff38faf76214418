"""Kaggle source: credential detection, error paths and an offline download (workloads/data/kaggle.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import kagglehub
import pytest

from contracts.errors import DatasetError
from workloads.data import kaggle
from workloads.data.kaggle import DOWNLOAD_STAMP, download, find_credentials, require_credentials

HANDLE = "andrewmvd/bone-marrow-cell-classification"
ENV_VARS = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_API_V1_TOKEN")


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """An empty home directory and no Kaggle variables: no credentials anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_no_credentials(home: Path) -> None:
    assert find_credentials() is None
    with pytest.raises(DatasetError) as err:
        require_credentials()
    message = str(err.value)
    assert message.startswith("Kaggle credentials not found: ")
    assert message.endswith("or use --source local --path DIR")
    assert "\n" not in message


def test_token_in_environment(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_abc123")
    assert find_credentials() == "KAGGLE_API_TOKEN"


def test_token_variable_pointing_at_a_file(home: Path, monkeypatch) -> None:
    token = write(home / "secrets" / "token", "KGAT_abc\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token))
    assert find_credentials() == f"KAGGLE_API_TOKEN file {token}"
    token.write_text("   \n")  # empty token file: not a credential
    assert find_credentials() is None


@pytest.mark.parametrize("name", ["access_token", "access_token.txt"])
def test_access_token_file(home: Path, name: str) -> None:
    path = write(home / ".kaggle" / name, "KGAT_abc\n")
    assert find_credentials() == str(path)


def test_username_and_key_variables(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    assert find_credentials() is None  # both are needed
    monkeypatch.setenv("KAGGLE_KEY", "0123abcd")
    assert find_credentials() == "KAGGLE_USERNAME/KAGGLE_KEY"


def test_kaggle_json_in_home_and_in_config_dir(home: Path, tmp_path: Path, monkeypatch) -> None:
    default = write(home / ".kaggle" / "kaggle.json", json.dumps({"username": "u", "key": "k"}))
    assert find_credentials() == str(default)
    other = write(tmp_path / "cfg" / "kaggle.json", json.dumps({"username": "u", "key": "k"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(other.parent))
    assert find_credentials() == str(other)
    # Like kagglehub, KAGGLE_CONFIG_DIR replaces ~/.kaggle for kaggle.json.
    other.unlink()
    assert find_credentials() is None


@pytest.mark.parametrize(
    ("content", "message"),
    [("{oops", "is not valid JSON"), ('{"username": "u"}', "needs 'username' and 'key'")],
)
def test_unusable_kaggle_json(home: Path, content: str, message: str) -> None:
    write(home / ".kaggle" / "kaggle.json", content)
    with pytest.raises(DatasetError, match=message):
        find_credentials()


def test_explicit_environ_and_home(tmp_path: Path) -> None:
    assert find_credentials(environ={}, home=tmp_path) is None
    assert find_credentials(environ={"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, home=tmp_path) is not None


# --- download ---------------------------------------------------------------------------------------
@pytest.fixture
def credentials(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123abcd")


def fake_download(monkeypatch, result) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []

    def dataset_download(handle, *args, **kwargs):
        calls.append((handle, kwargs))
        if isinstance(result, BaseException):
            raise result
        return str(result)

    monkeypatch.setattr(kagglehub, "dataset_download", dataset_download)
    return calls


def test_download_without_credentials_never_calls_kagglehub(home: Path, tmp_path: Path, monkeypatch) -> None:
    calls = fake_download(monkeypatch, tmp_path)
    with pytest.raises(DatasetError, match="Kaggle credentials not found"):
        download(HANDLE, tmp_path / "dest", progress=lambda _: None)
    assert calls == []


def test_download_success_and_reuse(
    credentials, synthetic_dataset_root: Path, tmp_path: Path, monkeypatch
) -> None:
    calls = fake_download(monkeypatch, synthetic_dataset_root)
    dest = tmp_path / "kaggle"
    lines: list[str] = []
    root = download(HANDLE, dest, progress=lines.append)
    assert root == (synthetic_dataset_root / "bone_marrow_cell_dataset").resolve()
    assert calls == [(HANDLE, {"output_dir": str(dest), "force_download": False})]
    assert json.loads((dest / DOWNLOAD_STAMP).read_text())["handle"] == HANDLE
    assert any(line.startswith(f"downloading Kaggle dataset {HANDLE}") for line in lines)
    # A finished download is reused without touching the network (or needing credentials).
    monkeypatch.delenv("KAGGLE_USERNAME")
    lines.clear()
    assert download(HANDLE, dest, progress=lines.append) == root
    assert len(calls) == 1
    assert any("already downloaded" in line for line in lines)


def test_download_of_another_handle_forces_a_fresh_download(
    credentials, synthetic_dataset_root: Path, tmp_path: Path, monkeypatch
) -> None:
    calls = fake_download(monkeypatch, synthetic_dataset_root)
    dest = tmp_path / "kaggle"
    download(HANDLE, dest, progress=lambda _: None)
    download("someone/else", dest, progress=lambda _: None)
    assert [kwargs["force_download"] for _, kwargs in calls] == [False, True]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ConnectionError("Max retries exceeded with url: /api/v1/datasets"), "ConnectionError: Max retries"),
        (kagglehub.exceptions.KaggleApiHTTPError("403 Client Error: Forbidden\nfor url"), "403 Client Error"),
        (kagglehub.exceptions.BackendError("Server error 500"), "BackendError: Server error 500"),
    ],
)
def test_download_errors_become_one_line(
    credentials, tmp_path: Path, monkeypatch, error, message: str
) -> None:
    fake_download(monkeypatch, error)
    with pytest.raises(DatasetError) as err:
        download(HANDLE, tmp_path / "dest", progress=lambda _: None)
    text = str(err.value)
    assert text.startswith(f"Kaggle download of {HANDLE} failed (")
    assert message in text and "\n" not in text
    assert text.endswith("or use --source local --path DIR")


def test_download_into_a_dirty_folder(credentials, tmp_path: Path, monkeypatch) -> None:
    fake_download(monkeypatch, FileExistsError("output_dir is not empty"))
    with pytest.raises(DatasetError, match="incomplete or different download; delete it"):
        download(HANDLE, tmp_path / "dest", progress=lambda _: None)


def test_download_that_is_not_the_dataset(credentials, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "other" / "images").mkdir(parents=True)
    fake_download(monkeypatch, tmp_path / "other")
    with pytest.raises(DatasetError, match="does not look like the bone-marrow dataset"):
        download(HANDLE, tmp_path / "dest", progress=lambda _: None)
    assert not (tmp_path / "dest" / DOWNLOAD_STAMP).exists()


def test_bad_handle(credentials, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="owner/dataset"):
        download("not-a-handle", tmp_path, progress=lambda _: None)


def test_kagglehub_missing(credentials, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(DatasetError, match="kagglehub is not installed"):
        kaggle.download(HANDLE, tmp_path / "dest", progress=lambda _: None)
