"""Loopback helpers shared by the serving and bench tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contracts.config import load_config
from workloads.serving import local
from workloads.serving.local import ServerInfo


def free_ports(count: int = 2) -> list[int]:
    """Ports that are free now (held together so that they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextmanager
def serving(artifacts: Path, served_repository: Path) -> Iterator[ServerInfo]:
    """A local server on free ports over the shared test repository; stopped on exit."""
    (artifacts / "models").symlink_to(served_repository / "models")
    http_port, grpc_port = free_ports(2)
    config = load_config(
        {"artifacts_dir": str(artifacts), "serving": {"http_port": http_port, "grpc_port": grpc_port}}
    )
    info = local.start(config, progress=lambda line: None)
    try:
        yield info
    finally:
        local.stop(config, progress=lambda line: None)
