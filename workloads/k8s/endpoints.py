"""Endpoints of a deployed target, per pool: written after deploy, read by `invoke bench --target`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from contracts.files import atomic_write_text

ENDPOINTS_FILE = "endpoints.json"


def endpoints_path(config: ToolkitConfig, target: str) -> Path:
    return config.paths.deploy(target) / ENDPOINTS_FILE


def _check(endpoints: Any, source: str) -> dict[str, dict[str, str]]:
    if not isinstance(endpoints, dict) or not endpoints:
        raise DeployError(f"{source}: endpoints must map at least one pool to its rest/grpc endpoints")
    for pool, entry in endpoints.items():
        if not isinstance(entry, dict) or set(entry) != {"rest", "grpc"}:
            raise DeployError(f"{source}: pool {pool!r} needs exactly 'rest' and 'grpc' endpoints")
        if not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", str(entry["rest"])):
            raise DeployError(
                f"{source}: pool {pool!r} rest endpoint must be http(s)://host:port, got {entry['rest']!r}"
            )
        if not re.fullmatch(r"[^\s/:]+:\d+", str(entry["grpc"])):
            raise DeployError(
                f"{source}: pool {pool!r} grpc endpoint must be host:port, got {entry['grpc']!r}"
            )
    return endpoints


def record_endpoints(config: ToolkitConfig, *, target: str, endpoints: dict[str, dict[str, str]]) -> Path:
    _check(endpoints, f"endpoints of {target}")
    text = json.dumps(endpoints, indent=2, sort_keys=True) + "\n"
    return atomic_write_text(endpoints_path(config, target), text)


def load_endpoints(config: ToolkitConfig, *, target: str) -> dict[str, dict[str, str]]:
    path = endpoints_path(config, target)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(
            f"no endpoints recorded for {target} ({path}); run `invoke up --target {target}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read {path}: {exc}") from None
    return _check(data, str(path))
