"""Where the configured inventory items live: full paths from names or paths in the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.config import VsphereConfig

# The datacenter folder each kind of item sits under (vCenter's fixed layout).
_FOLDERS = {
    "network": "network",
    "datastore": "datastore",
    "folder": "vm",
    "template": "vm",
    "resource_pool": "host",
}


@dataclass(frozen=True)
class InventoryPaths:
    datacenter: str  # "/DC0"
    network: str
    datastore: str
    folder: str
    resource_pool: str
    template: str


def _full(datacenter: str, kind: str, value: str) -> str:
    if value.startswith("/"):
        return value.rstrip("/")
    base = f"{datacenter}/{_FOLDERS[kind]}"
    return f"{base}/{value.strip('/')}" if value else ("" if kind != "folder" else base)


def resolve(vsphere: VsphereConfig) -> InventoryPaths:
    """Full paths; an empty folder means the datacenter's root VM folder, other empties stay empty."""
    datacenter = "/" + vsphere.datacenter.strip("/") if vsphere.datacenter else ""
    return InventoryPaths(
        datacenter=datacenter,
        **{kind: _full(datacenter, kind, getattr(vsphere, kind)) for kind in _FOLDERS},
    )
