"""Build or push the images: resolve the registry, log in when pushing, run buildx per image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contracts.config import ToolkitConfig
from workloads.containers.build import IMAGES, Command, buildx_command, plan_builds, run_commands
from workloads.targets import cluster_target


def build_images(
    config: ToolkitConfig,
    *,
    target: str,
    names: Sequence[str] = IMAGES,
    variant: str = "gaudi",
    model_dir: Path | None = None,
    push: bool = False,
    dry_run: bool = False,
    repo_root: Path = Path("."),
    progress: Callable[[str], None] = print,
    runner: Callable[..., Any] | None = None,
    session: Any | None = None,
) -> list[Command]:
    """Returns the commands (run, or only printed with ``dry_run``)."""
    builds = plan_builds(
        config,
        registry="registry.invalid",  # validated first, before any AWS call
        names=names,
        variant=variant,
        model_dir=model_dir,
        repo_root=repo_root,
    )
    registry, logins = cluster_target(target).image_registry(
        config, push=push, dry_run=dry_run, session=session
    )
    builds = plan_builds(
        config, registry=registry, names=names, variant=variant, model_dir=model_dir, repo_root=repo_root
    )
    commands = [
        *logins,
        *(buildx_command(b, platform=config.images.platform, push=push, context=repo_root) for b in builds),
    ]
    options = {} if runner is None else {"runner": runner}
    run_commands(commands, dry_run=dry_run, progress=progress, **options)
    return commands
