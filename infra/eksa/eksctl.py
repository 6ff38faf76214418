"""Running `eksctl anywhere`: the command lines, and a runner that streams and logs their output."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from contracts.errors import DeployError
from infra.eksa.client import PASSWORD_ENV, USERNAME_ENV, Credentials

INSTALL_HINT = (
    "install eksctl and its anywhere plugin: https://anywhere.eks.amazonaws.com/docs/getting-started/install/"
)


# eksctl runs `eksctl anywhere …` as the plugin executable eksctl-anywhere found on PATH.
TOOLS = ("eksctl", "eksctl-anywhere")


def require_tools() -> None:
    """eksctl and its anywhere plugin on PATH, checked before anything is discovered or written."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise DeployError(f"{' and '.join(missing)} not found on PATH; {INSTALL_HINT}")


def create_command(spec: Path) -> list[str]:
    return ["eksctl", "anywhere", "create", "cluster", "-f", str(spec)]


def delete_command(spec: Path, kubeconfig: Path) -> list[str]:
    return ["eksctl", "anywhere", "delete", "cluster", "-f", str(spec), "--kubeconfig", str(kubeconfig)]


def kubeconfig_path(work_dir: Path, cluster_name: str) -> Path:
    """Where eksctl anywhere writes the admin kubeconfig (relative to the directory it runs in)."""
    return work_dir / cluster_name / f"{cluster_name}-eks-a-cluster.kubeconfig"


def run(
    command: list[str],
    *,
    work_dir: Path,
    credentials: Credentials,
    log_path: Path,
    progress: Callable[[str], None],
) -> None:
    """Run ``command`` in ``work_dir`` with the vSphere credentials in its environment only."""
    executable = shutil.which(command[0])
    if executable is None:
        raise DeployError(f"{command[0]} not found on PATH; {INSTALL_HINT}")
    env = dict(os.environ)
    env[USERNAME_ENV] = credentials.username
    env[PASSWORD_ENV] = credentials.password
    log_path.parent.mkdir(parents=True, exist_ok=True)
    progress(f"$ {' '.join(command)}  (log: {log_path})")
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [executable, *command[1:]],
            cwd=work_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            progress(line.rstrip("\n"))
        code = process.wait()
    if code != 0:
        raise DeployError(f"`{' '.join(command[:4])}` failed with exit code {code}; see {log_path}")
