"""`invoke images.build` / `images.push`: the exact docker buildx commands, run or printed (--dry-run)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts import aws_names
from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from contracts.model_repository import ModelRepository
from workloads.progress import Progress, print_progress

IMAGES = ("train", "ovms", "bench")
Variant = str  # "gaudi" or "cpu" (training image only)


@dataclass(frozen=True)
class ImageBuild:
    name: str
    dockerfile: Path
    build_args: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    # Sent on stdin (a registry password), never printed.
    stdin: str | None = None

    def shown(self) -> str:
        return shlex.join(self.argv) + (" < (password on stdin)" if self.stdin is not None else "")


def repository_name(config: ToolkitConfig, name: str) -> str:
    """The image repository of ``name`` (train, ovms, bench): the name of the ECR repository CDK makes."""
    return aws_names.repository_name(config.aws.resource_prefix, name)


def image_tags(config: ToolkitConfig, *, registry: str, name: str, suffix: str = "") -> tuple[str, ...]:
    images = config.images
    base = f"{registry}/{repository_name(config, name)}"
    return tuple(f"{base}:{tag}{suffix}" for tag in (images.tag, *images.extra_tags))


def plan_builds(
    config: ToolkitConfig,
    *,
    registry: str,
    names: Sequence[str] = IMAGES,
    variant: Variant = "gaudi",
    model_dir: Path | None = None,
    repo_root: Path = Path("."),
) -> list[ImageBuild]:
    unknown = sorted(set(names) - set(IMAGES))
    if unknown or not names:
        raise DeployError(
            f"unknown image {unknown[0] if unknown else '(none)'}; choose from {', '.join(IMAGES)}"
        )
    if variant not in ("gaudi", "cpu"):
        raise DeployError(f"unknown training variant {variant!r}; choose gaudi or cpu")
    builds = []
    for name in names:
        args: list[tuple[str, str]] = []
        suffix = ""
        if name == "train":
            base = config.images.gaudi_base if variant == "gaudi" else config.images.cpu_base
            args = [("BASE_IMAGE", base), ("VARIANT", variant)]
            suffix = "" if variant == "gaudi" else "-cpu"
        elif name == "ovms":
            args = [("OVMS_IMAGE", config.ovms.image)]
            if model_dir is not None:
                relative = _inside(repo_root, model_dir)
                if not ModelRepository(model_dir).config_file.is_file():
                    raise DeployError(
                        f"{model_dir} is not an OVMS model repository (no config.json); run `invoke optimize`"
                    )
                args.append(("MODEL_DIR", relative))
                suffix = "-model"
        dockerfile = repo_root / "images" / name / "Dockerfile"
        builds.append(
            ImageBuild(
                name=name,
                dockerfile=dockerfile,
                build_args=tuple(args),
                tags=image_tags(config, registry=registry, name=name, suffix=suffix),
            )
        )
    return builds


def _inside(repo_root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        raise DeployError(f"{path} must be inside the build context {repo_root.resolve()}") from None


def buildx_command(build: ImageBuild, *, platform: str, push: bool, context: Path = Path(".")) -> Command:
    argv = ["docker", "buildx", "build", "--platform", platform, "--file", str(build.dockerfile)]
    for key, value in build.build_args:
        argv += ["--build-arg", f"{key}={value}"]
    for tag in build.tags:
        argv += ["--tag", tag]
    # --push sends every tag; --load makes a single-platform image usable by the local engine.
    argv += ["--push" if push else "--load", str(context)]
    return Command(tuple(argv))


def run_commands(
    commands: Sequence[Command],
    *,
    dry_run: bool,
    progress: Progress = print_progress,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> None:
    """Print (dry run) or run each command in order; a failure stops with one line."""
    if not dry_run and shutil.which("docker") is None:
        raise DeployError(
            "docker is not installed or not on PATH (buildx needs a Docker engine); try --dry-run"
        )
    for command in commands:
        progress(command.shown())
        if dry_run:
            continue
        result = runner(list(command.argv), input=command.stdin, text=True, check=False)
        if result.returncode != 0:
            raise DeployError(f"`{shlex.join(command.argv[:3])}` failed with exit code {result.returncode}")
