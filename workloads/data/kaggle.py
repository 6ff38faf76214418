"""Download the dataset from Kaggle with kagglehub (imported only when needed).

Credentials are checked before any network access, in the places kagglehub 0.4 reads them:
an API token (``KAGGLE_API_TOKEN`` holding the token or a path to it, or
``~/.kaggle/access_token[.txt]``), or the legacy username/key pair (``KAGGLE_USERNAME`` +
``KAGGLE_KEY``, or ``kaggle.json`` in ``$KAGGLE_CONFIG_DIR``, else in ``~/.kaggle``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from contracts.errors import DatasetError
from contracts.files import atomic_write_text
from workloads.data.layout import DATASET_DIRNAME, locate_dataset
from workloads.progress import Progress, print_progress

DOWNLOAD_STAMP = ".download.json"
_FALLBACK = "or use --source local --path DIR"


def find_credentials(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Describe the first Kaggle credential found (never its value), or None when there is none.

    Raises :class:`DatasetError` for a kaggle.json that exists but is unusable, since kagglehub
    would fail on it too.
    """
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    token = env.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        token_path = Path(token).expanduser()
        if not token_path.exists():
            return "KAGGLE_API_TOKEN"
        if _read_token(token_path):
            return f"KAGGLE_API_TOKEN file {token_path}"
    for name in ("access_token", "access_token.txt"):
        token_file = home / ".kaggle" / name
        if _read_token(token_file):
            return str(token_file)
    if env.get("KAGGLE_USERNAME", "").strip() and env.get("KAGGLE_KEY", "").strip():
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    config_dir = Path(env["KAGGLE_CONFIG_DIR"]) if env.get("KAGGLE_CONFIG_DIR") else home / ".kaggle"
    creds = config_dir / "kaggle.json"
    if creds.is_file():
        try:
            data = json.loads(creds.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DatasetError(
                f"Kaggle credentials file {creds} is not valid JSON ({err}); fix it, {_FALLBACK}"
            ) from None
        if not (isinstance(data, dict) and data.get("username") and data.get("key")):
            raise DatasetError(
                f"Kaggle credentials file {creds} needs 'username' and 'key'; fix it, {_FALLBACK}"
            )
        return str(creds)
    return None


def _read_token(path: Path) -> bool:
    try:
        return path.is_file() and bool(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


def require_credentials(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """:func:`find_credentials`, or a :class:`DatasetError` that says where to put them."""
    found = find_credentials(environ, home)
    if found is None:
        raise DatasetError(
            "Kaggle credentials not found: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY), or put "
            f"kaggle.json in ~/.kaggle or $KAGGLE_CONFIG_DIR; {_FALLBACK}"
        )
    return found


def download(handle: str, dest: str | os.PathLike[str], progress: Progress = print_progress) -> Path:
    """Download Kaggle dataset ``handle`` into ``dest`` and return the folder holding the class folders.

    A completed earlier download of the same handle into ``dest`` is reused without network access.
    """
    dest = Path(dest)
    if handle.count("/") != 1 or not all(handle.split("/")):
        raise DatasetError(f"Kaggle dataset handle must look like owner/dataset, got {handle!r}")
    reused = _previous_download(dest, handle)
    if reused is not None:
        progress(f"using the Kaggle dataset {handle} already downloaded to {reused}")
        return reused

    where = require_credentials()
    try:
        import kagglehub
    except ImportError:
        raise DatasetError(f"kagglehub is not installed (pip install kagglehub); {_FALLBACK}") from None
    progress(f"downloading Kaggle dataset {handle} into {dest} (several GB; credentials from {where})")
    stale = (dest / DOWNLOAD_STAMP).exists()  # a finished download of another handle
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        returned = kagglehub.dataset_download(handle, output_dir=str(dest), force_download=stale)
    except FileExistsError:
        raise DatasetError(
            f"{dest} holds files from an incomplete or different download; delete it and retry, {_FALLBACK}"
        ) from None
    except Exception as err:  # HTTP, network, auth and kagglehub errors alike
        message = " ".join(str(err).split())[:300] or type(err).__name__
        raise DatasetError(
            f"Kaggle download of {handle} failed ({type(err).__name__}: {message}); "
            f"check the handle, network access and credentials, {_FALLBACK}"
        ) from None
    try:
        dataset_root = locate_dataset(returned)
    except DatasetError as err:
        raise DatasetError(
            f"the Kaggle download of {handle} at {returned} does not look like the bone-marrow dataset "
            f"(no {DATASET_DIRNAME}/ with class folders): {err}"
        ) from None
    stamp = {
        "handle": handle,
        "dataset_root": str(dataset_root),
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(dest / DOWNLOAD_STAMP, json.dumps(stamp, indent=2) + "\n")
    progress(f"Kaggle dataset {handle} is at {dataset_root}")
    return dataset_root


def _previous_download(dest: Path, handle: str) -> Path | None:
    try:
        stamp = json.loads((dest / DOWNLOAD_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("handle") != handle:
        return None
    root = Path(str(stamp.get("dataset_root", "")))
    return root if root.is_absolute() and root.is_dir() else None
