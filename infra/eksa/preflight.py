"""The checks eksctl anywhere runs at create time, run before anything is written.

Every check adds one actionable line; :func:`check` raises PreflightError with all of them.
Each rule is eksctl anywhere's own (aws/eks-anywhere, cited where it is applied), so what it
accepts passes and what it refuses is refused here, before anything is written.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.config import ToolkitConfig
from infra.eksa.client import VsphereClient
from infra.eksa.errors import PreflightError
from infra.eksa.inventory import Inventory
from infra.eksa.lookup import locate
from infra.eksa.paths import InventoryPaths
from infra.eksa.spec import SpecValues, build_values

# EKS Anywhere supports vSphere 7.0 Update 3 and later, 8.x included.
MIN_VCENTER = (7, 0, 3)
MAX_CLUSTER_NAME = 35
GIB, MIB = 1024**3, 1024**2
# pkg/constants DefaultNodeCidrMaskSize and pkg/api/v1alpha1 podSubnetNodeMaskMaxDiff.
NODE_CIDR_MASK = 24
POD_NODE_MASK_MAX_DIFF = 16
# networkutils.IsIPInUse: one TCP dial to port 80 with a 500 ms timeout.
IN_USE_PORT = 80
IN_USE_TIMEOUT = 0.5
# What EKS Anywhere's vSphere role needs on each object it touches (a subset, checkable per object).
PRIVILEGES = {
    "datastore": ("Datastore.AllocateSpace", "Datastore.Browse", "Datastore.FileManagement"),
    "network": ("Network.Assign",),
    "resource_pool": ("Resource.AssignVMToPool",),
    "folder": (
        "VirtualMachine.Inventory.CreateFromExisting",
        "VirtualMachine.Inventory.Delete",
        "VirtualMachine.Config.AddNewDisk",
        "VirtualMachine.Interact.PowerOn",
        "VirtualMachine.Interact.PowerOff",
    ),
    "template": ("VirtualMachine.Provisioning.Clone", "VirtualMachine.Provisioning.DeployTemplate"),
}

# address → why it is taken ("accepts …", "refuses …"), or None when it looks free.
EndpointProbe = Callable[[str], str | None]


def ip_in_use(address: str, *, port: int = IN_USE_PORT, timeout: float = IN_USE_TIMEOUT) -> str | None:
    """networkutils.IsIPInUse: a host that accepts, refuses or resets a TCP connection is live.

    Only silence (a timeout, no route) counts as free; no ICMP ping (it needs privileges).
    """
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return f"it accepts TCP connections on port {port}"
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return f"a host there refuses TCP connections on port {port}"
        if exc.errno == errno.ECONNRESET:
            return f"a host there resets TCP connections on port {port}"
        return None


@dataclass(frozen=True)
class Report:
    """What preflight found: problems (each one line), notes, and where the items are."""

    problems: tuple[str, ...]
    notes: tuple[str, ...]
    paths: InventoryPaths


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _check_settings(config: ToolkitConfig, failures: list[str]) -> None:
    vsphere = config.vsphere
    for name in ("server", "datacenter", "network", "datastore", "resource_pool", "template"):
        if not getattr(vsphere, name):
            failures.append(f"vsphere.{name} is not set")
    if not vsphere.insecure and not vsphere.thumbprint:
        failures.append(
            "vsphere.thumbprint is empty: set the vCenter certificate's SHA-1 fingerprint "
            "(or vsphere.insecure=true for a lab)"
        )
    name = vsphere.cluster_name
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        failures.append(
            f"cluster name {name!r} must be lower-case letters, digits and '-', starting with a letter"
        )
    if len(name) > MAX_CLUSTER_NAME:
        failures.append(f"cluster name {name!r} has {len(name)} characters; EKS Anywhere allows at most 35")
    # validateControlPlaneReplicas: any count with external etcd, an odd one when it is stacked.
    if not vsphere.etcd_count and vsphere.control_plane_count % 2 == 0:
        failures.append(
            f"vsphere.control_plane_count is {vsphere.control_plane_count} with stacked etcd "
            "(etcd_count 0); use an odd count (1, 3, 5) or external etcd"
        )
    if vsphere.etcd_count and vsphere.etcd_count % 2 == 0:
        failures.append(
            f"vsphere.etcd_count is {vsphere.etcd_count}; use an odd count (3, 5) or 0 for stacked etcd"
        )


def _check_network(config: ToolkitConfig, probe: EndpointProbe, failures: list[str]) -> None:
    vsphere = config.vsphere
    pods, services = ipaddress.ip_network(vsphere.pod_cidr), ipaddress.ip_network(vsphere.service_cidr)
    if pods.overlaps(services):
        failures.append(f"vsphere.pod_cidr {pods} overlaps vsphere.service_cidr {services}")
    # validateNetworking: the pod range must hold more than one node's /24, and at most 2**16 of them.
    if pods.prefixlen >= NODE_CIDR_MASK:
        failures.append(
            f"vsphere.pod_cidr {pods} is no larger than one node's /{NODE_CIDR_MASK} pod range; "
            f"use a mask below /{NODE_CIDR_MASK} (e.g. /16)"
        )
    elif NODE_CIDR_MASK - pods.prefixlen > POD_NODE_MASK_MAX_DIFF:
        widest = NODE_CIDR_MASK - POD_NODE_MASK_MAX_DIFF
        failures.append(
            f"vsphere.pod_cidr {pods}: eksctl anywhere allows at most a /{widest} "
            f"(node mask /{NODE_CIDR_MASK} minus {POD_NODE_MASK_MAX_DIFF})"
        )
    if not vsphere.control_plane_endpoint:
        failures.append(
            "vsphere.control_plane_endpoint is not set: choose a free static IP on the node network"
        )
        return
    try:
        endpoint = ipaddress.IPv4Address(vsphere.control_plane_endpoint)
    except ValueError:
        failures.append(
            f"vsphere.control_plane_endpoint {vsphere.control_plane_endpoint!r} is not an IPv4 address"
        )
        return
    for key, network in (("pod_cidr", pods), ("service_cidr", services)):
        if endpoint in network:
            failures.append(
                f"control plane endpoint {endpoint} lies inside vsphere.{key} {network}; "
                "pick an address outside the pod and service ranges"
            )
    if endpoint.is_unspecified or endpoint.is_multicast or endpoint.is_loopback or endpoint.is_link_local:
        failures.append(f"control plane endpoint {endpoint} is not a usable host address")
        return
    taken = probe(str(endpoint))
    if taken is not None:
        failures.append(
            f"control plane endpoint {endpoint} is already in use ({taken}); "
            "pick a free IP excluded from DHCP"
        )


def _check_inventory(
    config: ToolkitConfig,
    inventory: Inventory,
    paths: InventoryPaths,
    values: SpecValues,
    failures: list[str],
) -> None:
    if _version(inventory.version) < MIN_VCENTER:
        failures.append(
            f"vCenter {inventory.server} runs {inventory.version}; EKS Anywhere needs vSphere 7.0.3 "
            "or later (7.0 Update 3, 8.x)"
        )
    _check_template_tags(config, inventory, paths, failures)
    _check_capacity(config, inventory, paths, values, failures)


def _check_template_tags(
    config: ToolkitConfig, inventory: Inventory, paths: InventoryPaths, failures: list[str]
) -> None:
    template = inventory.template(paths.template) if paths.template else None
    if template is None:
        return
    family, version = config.vsphere.os_family, config.kubernetes.version
    names = template.tag_names
    if f"os:{family}" not in names:
        failures.append(
            f"template {template.path} lacks tag os:{family} (has: {', '.join(names) or 'no tags'}); "
            f"attach it: govc tags.attach -c os os:{family} '{template.path}'"
        )
    releases = [name.split(":", 1)[1] for name in names if name.startswith("eksdRelease:")]
    expected = config.vsphere.eksd_releases.get(version)
    prefix = "kubernetes-" + version.replace(".", "-") + "-eks-"
    wanted = f"eksdRelease:{expected}" if expected else f"eksdRelease:{prefix}N"
    if not releases:
        failures.append(
            f"template {template.path} lacks an eksdRelease tag for Kubernetes {version} ({wanted}); "
            "import the template with eksctl anywhere's tags or attach it with govc tags.attach"
        )
    elif (expected not in releases) if expected else not any(r.startswith(prefix) for r in releases):
        failures.append(
            f"template {template.path} is tagged eksdRelease:{', '.join(releases)}, not {wanted}; "
            f"use a template built for Kubernetes {version} or change kubernetes.version / "
            "vsphere.eksd_releases"
        )


def _check_capacity(
    config: ToolkitConfig,
    inventory: Inventory,
    paths: InventoryPaths,
    values: SpecValues,
    failures: list[str],
) -> None:
    machines = values.machine_counts()
    disk_gib = sum(machine.disk_gib * count for machine, count in machines)
    memory_mib = sum(machine.memory_mib * count for machine, count in machines)
    datastore = inventory.datastore(paths.datastore)
    if datastore is not None and datastore.free_bytes < disk_gib * GIB:
        failures.append(
            f"datastore {datastore.path} has {datastore.free_bytes // GIB} GiB free; the machines need "
            f"{disk_gib} GiB — free space or choose another datastore"
        )
    pool = inventory.resource_pool(paths.resource_pool)
    # vsphereProvider.validateMemoryUsage: the pool's limit less its usage; no limit, no check.
    available = pool.memory_available_mib if pool is not None else None
    if pool is not None and available is not None and available < memory_mib:
        failures.append(
            f"resource pool {pool.path} has {available} MiB of memory left under its limit; the machines "
            f"need {memory_mib} MiB — raise its limit or shrink vsphere.*_machine.memory_mib / counts"
        )
    if pool is not None:
        cluster = next((c for c in inventory.clusters if c.path == pool.cluster), None)
        for pool_name, node_pool in sorted(config.vsphere.pools.items()):
            hosts = cluster.hosts if cluster else ()
            wrong = sorted({h.cpu_generation or "unknown" for h in hosts} - {node_pool.cpu_generation})
            if wrong:
                failures.append(
                    f"vsphere.pools.{pool_name} is labelled cpu-generation={node_pool.cpu_generation} but "
                    f"{pool.cluster} has {', '.join(wrong)} hosts; use a resource pool on such hosts"
                )


def _check_os_family(values: SpecValues, failures: list[str]) -> None:
    families = sorted({machine.os_family for machine in values.machines})
    if len(families) > 1:
        failures.append(f"machine configs mix OS families ({', '.join(families)}); EKS Anywhere needs one")


def _check_privileges(
    client: VsphereClient, inventory: Inventory, paths: InventoryPaths, failures: list[str]
) -> None:
    wanted: dict[Any, tuple[str, ...]] = {}
    where: dict[Any, str] = {}
    for key, privileges in PRIVILEGES.items():
        ref = inventory.refs.get(getattr(paths, key))
        if ref is not None:
            wanted[ref] = privileges
            where[ref] = getattr(paths, key)
    by_path: dict[str, list[str]] = {}
    for entity, privilege in client.missing_privileges(wanted):
        by_path.setdefault(where[entity], []).append(privilege)
    for path, lacking in by_path.items():
        failures.append(
            f"{client.username!r} lacks {', '.join(lacking)} on {path}; "
            "grant the EKS Anywhere vSphere role there"
        )


def run_checks(
    config: ToolkitConfig,
    inventory: Inventory,
    *,
    client: VsphereClient | None = None,
    probe: EndpointProbe | None = None,
) -> Report:
    """Every problem found, one line each (none when eksctl anywhere can go ahead), and the paths."""
    failures: list[str] = []
    _check_settings(config, failures)
    located = locate(config.vsphere, inventory)
    failures.extend(located.problems)
    paths = located.paths
    values = build_values(config, paths=paths)
    _check_network(config, probe or ip_in_use, failures)
    _check_inventory(config, inventory, paths, values, failures)
    _check_os_family(values, failures)
    if client is not None:
        _check_privileges(client, inventory, paths, failures)
    return Report(problems=tuple(failures), notes=located.notes, paths=paths)


def find_problems(
    config: ToolkitConfig,
    inventory: Inventory,
    *,
    client: VsphereClient | None = None,
    probe: EndpointProbe | None = None,
) -> list[str]:
    """Every problem found, one line each (empty when eksctl anywhere can go ahead)."""
    return list(run_checks(config, inventory, client=client, probe=probe).problems)


def check(
    config: ToolkitConfig,
    inventory: Inventory,
    *,
    client: VsphereClient | None = None,
    probe: EndpointProbe | None = None,
) -> None:
    failures = find_problems(config, inventory, client=client, probe=probe)
    if failures:
        raise PreflightError(failures)
