"""`invoke up/down --target vsphere`: EKS Anywhere on vSphere, then the OVMS workloads on it.

up: eksctl on PATH (not for a dry run) → discover → preflight → render + validate the spec →
eksctl anywhere create cluster → kubeconfig → OVMS manifests on the worker pools → endpoints for
`invoke bench --target vsphere`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from infra.eksa import eksctl, preflight
from infra.eksa.client import VsphereClient, credentials_from_env
from infra.eksa.errors import PreflightError
from infra.eksa.inventory import Inventory, discover
from infra.eksa.paths import InventoryPaths
from infra.eksa.render import write_spec
from infra.eksa.spec import build_values
from workloads.progress import Progress, print_progress

if TYPE_CHECKING:
    from workloads.k8s.model_source import ModelSource

TARGET = "vsphere"


@dataclass(frozen=True)
class UpResult:
    spec: Path
    command: list[str]
    kubeconfig: Path | None  # None after --dry-run
    endpoints: Path | None


def work_dir(config: ToolkitConfig) -> Path:
    """<artifacts>/deploy/vsphere: the spec, eksctl's cluster folder (kubeconfig), logs, manifests."""
    return config.paths.deploy(TARGET)


def summarize(inventory: Inventory, progress: Progress) -> None:
    progress(f"vCenter {inventory.server} {inventory.version}: {len(inventory.datacenters)} datacenter(s)")
    for cluster in inventory.clusters:
        for host in cluster.hosts:
            vnni = {True: "avx512_vnni", False: "no avx512_vnni", None: "avx512_vnni unknown"}[
                host.avx512_vnni
            ]
            progress(
                f"  {host.path}: {host.cpu_model} ({host.cpu_generation or 'unknown generation'}, {vnni})"
            )


def discover_and_check(
    config: ToolkitConfig, *, progress: Progress, probe: preflight.EndpointProbe | None = None
) -> tuple[Inventory, InventoryPaths]:
    """Log in with the environment's credentials, read the inventory, run every preflight check.

    Returns the inventory and the full paths of the configured items found in it.
    """
    vsphere = config.vsphere
    with VsphereClient(
        server=vsphere.server,
        credentials=credentials_from_env(),
        thumbprint=vsphere.thumbprint,
        insecure=vsphere.insecure,
    ) as client:
        inventory = discover(client)
        summarize(inventory, progress)
        report = preflight.run_checks(config, inventory, client=client, probe=probe)
    for note in report.notes:
        progress(f"note: {note}")
    if report.problems:
        for line in report.problems:
            progress(f"preflight: {line}")
        raise PreflightError(list(report.problems))
    progress("preflight: all checks passed")
    return inventory, report.paths


def up(
    config: ToolkitConfig,
    *,
    model_source: ModelSource | None = None,
    dry_run: bool = False,
    progress: Progress = print_progress,
    probe: preflight.EndpointProbe | None = None,
) -> UpResult:
    """Create the cluster and serve on it; with ``dry_run`` stop after writing the validated spec.

    ``probe`` tells whether the control-plane address is taken (default: preflight.ip_in_use).
    """
    credentials = credentials_from_env()
    if not dry_run and model_source is None:
        raise DeployError(
            "up --target vsphere needs the models: --model-bucket (ovms.eksa_model_delivery=secret-sync) "
            "or --model-image (baked)"
        )
    if not dry_run:
        eksctl.require_tools()
    _inventory, paths = discover_and_check(config, progress=progress, probe=probe)
    out = work_dir(config)
    spec = write_spec(build_values(config, paths=paths), out)
    progress(f"wrote {spec} (validated against the EKS Anywhere CRDs)")
    command = eksctl.create_command(spec)
    if dry_run:
        progress("dry run; would run: " + " ".join(command))
        return UpResult(spec=spec, command=command, kubeconfig=None, endpoints=None)
    assert model_source is not None  # refused above when not a dry run

    eksctl.run(
        command, work_dir=out, credentials=credentials, log_path=out / "eksctl-create.log", progress=progress
    )
    kubeconfig = eksctl.kubeconfig_path(out, config.vsphere.cluster_name)
    if not kubeconfig.is_file():
        raise DeployError(f"eksctl finished but wrote no kubeconfig at {kubeconfig}")
    progress(f"kubeconfig: {kubeconfig}")

    from workloads.k8s.apply import apply_manifests
    from workloads.k8s.bench_job import service_endpoints
    from workloads.k8s.endpoints import record_endpoints
    from workloads.k8s.render import render_serving

    manifests = render_serving(config, target=TARGET, model_source=model_source, out_dir=out / "manifests")
    apply_manifests(manifests, kubeconfig=kubeconfig, progress=progress)
    endpoints = record_endpoints(
        config,
        target=TARGET,
        endpoints={pool: service_endpoints(config, pool) for pool in sorted(config.vsphere.pools)},
    )
    progress(f"endpoints: {endpoints}")
    return UpResult(spec=spec, command=command, kubeconfig=kubeconfig, endpoints=endpoints)


def down(config: ToolkitConfig, *, progress: Progress = print_progress) -> None:
    """Delete the cluster `up` created (its spec and kubeconfig under the work folder)."""
    credentials = credentials_from_env()
    out = work_dir(config)
    spec = out / f"{config.vsphere.cluster_name}.yaml"
    kubeconfig = eksctl.kubeconfig_path(out, config.vsphere.cluster_name)
    if not spec.is_file() or not kubeconfig.is_file():
        raise DeployError(f"no EKS Anywhere cluster recorded under {out}; nothing to delete")
    eksctl.require_tools()
    eksctl.run(
        eksctl.delete_command(spec, kubeconfig),
        work_dir=out,
        credentials=credentials,
        log_path=out / "eksctl-delete.log",
        progress=progress,
    )
    from workloads.k8s.endpoints import endpoints_path

    endpoints_path(config, TARGET).unlink(missing_ok=True)
    progress(f"deleted EKS Anywhere cluster {config.vsphere.cluster_name}")
