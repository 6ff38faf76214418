"""`local`: the KServe v2 OpenVINO server on this machine (workloads.serving.local)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from contracts.config import ToolkitConfig
from contracts.errors import ServingError
from workloads.targets.base import DeployTarget, UpRequest

POOL = "local"  # the one server, reported as the pool of its results


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalTarget(DeployTarget):
    name: str = "local"
    summary: str = "KServe v2 OpenVINO server on loopback"

    def work_dir(self, config: ToolkitConfig) -> Path:
        return config.paths.local_server

    def pools(self, config: ToolkitConfig) -> tuple[str, ...]:
        return (POOL,)

    def kubeconfig(self, config: ToolkitConfig) -> Path | None:
        return None

    def server_record(self, config: ToolkitConfig) -> dict[str, Any]:
        """The server's endpoints.json (a workloads.serving.local.ServerInfo)."""
        from workloads.serving.local import ENDPOINTS_FILE

        path = self.work_dir(config) / ENDPOINTS_FILE
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ServingError(
                f"no local server recorded in {path}; run `invoke up --target local`"
            ) from None
        except (OSError, ValueError) as exc:
            raise ServingError(
                f"cannot read {path} ({exc}); restart the server with `invoke up --target local`"
            ) from None
        if not isinstance(info, dict) or not info.get("http_url") or not info.get("grpc_target"):
            raise ServingError(
                f"{path} names no endpoints; restart the server with `invoke up --target local`"
            )
        started_from = info.get("folder")
        if started_from and started_from != str(path.parent.resolve()):
            raise ServingError(
                f"{path} was copied from {started_from}: its server was not started from this folder; "
                "start this folder's own with `invoke up --target local`"
            )
        return info

    def recorded_endpoints(self, config: ToolkitConfig) -> dict[str, dict[str, str]]:
        info = self.server_record(config)
        return {POOL: {"rest": info["http_url"], "grpc": info["grpc_target"]}}

    def up(self, config: ToolkitConfig, *, request: UpRequest) -> object:
        from workloads.serving.local import start

        return start(config)

    def down(self, config: ToolkitConfig, *, runner: Any = None) -> object:
        from workloads.serving.local import stop

        return stop(config)
