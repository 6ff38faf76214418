"""Find the configured inventory items in what vCenter holds, the way eksctl anywhere finds them.

A full path (``/F0/DC1/vm/eksa``) must exist as written. A name or partial path resolves to the one
item whose path ends with it: a datacenter wherever its folders put it (``DC1`` → ``/F0/DC1``), a
resource pool by suffix (``*/Resources/eksa``, ``eksa``; govc ``GetResourcePoolPath``), a template
by name anywhere in the datacenter (``SearchTemplate``), a network or datastore anywhere in its
folder. Several matches are one error listing them. A missing VM folder is created by eksctl
(``GetFolderPath`` runs ``govc folder.create``) when its parent exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.config import VsphereConfig
from infra.eksa.inventory import Inventory
from infra.eksa.paths import InventoryPaths

SHOWN = 5


@dataclass(frozen=True)
class Located:
    paths: InventoryPaths
    problems: tuple[str, ...]
    # Not problems, but worth a line: what eksctl anywhere will create.
    notes: tuple[str, ...]


def _listing(candidates: list[str]) -> str:
    if not candidates:
        return "none found"
    shown = ", ".join(candidates[:SHOWN])
    more = f" (+{len(candidates) - SHOWN} more)" if len(candidates) > SHOWN else ""
    return f"found: {shown}{more}"


def _ends_with(path: str, tail: str) -> bool:
    return path == tail or path.endswith("/" + tail)


def _find(
    key: str, value: str, known: Iterable[str], scope: str, problems: list[str], *, full_base: str = ""
) -> str:
    """The one path in ``known`` under ``scope`` that ``value`` names, or "" with a problem added."""
    if not value:
        return ""
    candidates = sorted(p for p in known if p.startswith(scope.rstrip("/") + "/") or not scope)
    if value.startswith("/"):
        path = value.rstrip("/")
        if path in candidates or (not scope and path in known):
            return path
        problems.append(f"vsphere.{key} {path} not found in vCenter ({_listing(candidates)})")
        return ""
    tail = value.strip("/")
    if tail.startswith("*/"):
        tail = tail[2:]
    exact = f"{full_base}/{tail}" if full_base else ""
    if exact and exact in candidates:
        return exact
    matches = [p for p in candidates if _ends_with(p, tail)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        problems.append(
            f"vsphere.{key} {value!r} matches {len(matches)} items ({', '.join(matches)}); give its full path"
        )
        return ""
    problems.append(f"vsphere.{key} {value!r} not found in vCenter ({_listing(candidates)})")
    return ""


def _folder(dc: str, value: str, known: tuple[str, ...], problems: list[str], notes: list[str]) -> str:
    base = f"{dc}/vm"
    path = value.rstrip("/") if value.startswith("/") else f"{base}/{value.strip('/')}" if value else base
    if path != base and not path.startswith(base + "/"):
        problems.append(f"vsphere.folder {path} must be under {base}/ (eksctl anywhere puts VMs there)")
        return ""
    if path in known:
        return path
    parent = path.rsplit("/", 1)[0]
    if parent in known:
        notes.append(f"VM folder {path} does not exist yet; eksctl anywhere creates it")
        return path
    nearby = [p for p in known if p.startswith(base + "/") or p == base]
    problems.append(
        f"vsphere.folder {path}: its parent {parent} does not exist, and eksctl anywhere creates only "
        f"the last folder ({_listing(nearby)})"
    )
    return ""


def locate(vsphere: VsphereConfig, inventory: Inventory) -> Located:
    """Full paths of every configured item; what cannot be found or is ambiguous is a problem."""
    problems: list[str] = []
    notes: list[str] = []
    dc = _find("datacenter", vsphere.datacenter, inventory.datacenters, "", problems)
    if not dc:
        return Located(
            paths=InventoryPaths(
                datacenter="", network="", datastore="", folder="", resource_pool="", template=""
            ),
            problems=tuple(problems),
            notes=(),
        )
    network = vsphere.network
    if network.startswith("/") and not network.startswith(f"{dc}/network/"):
        problems.append(f"vsphere.network {network} must be under {dc}/network/")
        network = ""
    paths = InventoryPaths(
        datacenter=dc,
        network=_find(
            "network",
            network,
            (n.path for n in inventory.networks),
            f"{dc}/network",
            problems,
            full_base=f"{dc}/network",
        ),
        datastore=_find(
            "datastore",
            vsphere.datastore,
            (d.path for d in inventory.datastores),
            f"{dc}/datastore",
            problems,
            full_base=f"{dc}/datastore",
        ),
        folder=_folder(dc, vsphere.folder, inventory.folders, problems, notes),
        resource_pool=_find(
            "resource_pool",
            vsphere.resource_pool,
            (p.path for p in inventory.resource_pools),
            f"{dc}/host",
            problems,
            full_base=f"{dc}/host",
        ),
        template=_find(
            "template",
            vsphere.template,
            (t.path for t in inventory.templates),
            f"{dc}/vm",
            problems,
            full_base=f"{dc}/vm",
        ),
    )
    return Located(paths=paths, problems=tuple(problems), notes=tuple(notes))
