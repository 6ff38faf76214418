"""Discovery: what vCenter holds, as frozen dataclasses keyed by full inventory paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from infra.eksa.client import VsphereClient
from infra.eksa.cpu import describe
from infra.eksa.tagging import Tag

MIB = 1024 * 1024


@dataclass(frozen=True)
class Host:
    path: str
    cpu_model: str
    cpu_generation: str | None
    avx512_vnni: bool | None

    @property
    def is_icelake(self) -> bool:
        return self.cpu_generation == "icelake"


@dataclass(frozen=True)
class ComputeCluster:
    path: str
    is_cluster: bool  # False for a standalone host's ComputeResource
    hosts: tuple[Host, ...]


@dataclass(frozen=True)
class ResourcePool:
    path: str
    cluster: str
    # The pool's own memory limit (MiB), None when unlimited: eksctl anywhere then skips the check.
    memory_limit_mib: int | None
    memory_usage_mib: int = 0

    @property
    def memory_available_mib(self) -> int | None:
        """govc GetResourcePoolInfo: limit − usage, None (no check) when the pool has no limit."""
        if self.memory_limit_mib is None:
            return None
        return self.memory_limit_mib - self.memory_usage_mib


@dataclass(frozen=True)
class Datastore:
    path: str
    free_bytes: int
    capacity_bytes: int


@dataclass(frozen=True)
class Network:
    path: str
    kind: str  # Network, DistributedVirtualPortgroup or OpaqueNetwork


@dataclass(frozen=True)
class Template:
    path: str
    moid: str
    tags: tuple[Tag, ...]

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(tag.name for tag in self.tags)


@dataclass(frozen=True)
class Inventory:
    server: str
    version: str
    datacenters: tuple[str, ...]
    clusters: tuple[ComputeCluster, ...]
    resource_pools: tuple[ResourcePool, ...]
    datastores: tuple[Datastore, ...]
    networks: tuple[Network, ...]
    folders: tuple[str, ...]  # VM folders, the datacenters' root vm folders included
    templates: tuple[Template, ...]
    # Managed object ids by path, for privilege checks and tagging.
    refs: dict[str, Any]

    def datastore(self, path: str) -> Datastore | None:
        return next((d for d in self.datastores if d.path == path), None)

    def network(self, path: str) -> Network | None:
        return next((n for n in self.networks if n.path == path), None)

    def resource_pool(self, path: str) -> ResourcePool | None:
        return next((p for p in self.resource_pools if p.path == path), None)

    def template(self, path: str) -> Template | None:
        return next((t for t in self.templates if t.path == path), None)

    def under(self, items: tuple[Any, ...], prefix: str) -> list[str]:
        """Paths of ``items`` (paths or dataclasses with .path) below ``prefix``: suggestions."""
        paths = [item if isinstance(item, str) else item.path for item in items]
        return sorted(p for p in paths if p.startswith(prefix.rstrip("/") + "/"))


def _paths(client: VsphereClient) -> tuple[dict[str, str], dict[str, Any]]:
    """Full inventory path of every managed entity (moid → path), from one name+parent sweep."""
    entities = client.collect(vim.ManagedEntity, ["name", "parent"])
    root = client.content.rootFolder._moId
    parents = {obj._moId: (props.get("name", ""), props.get("parent")) for obj, props in entities}
    objects = {obj._moId: obj for obj, _props in entities}
    paths: dict[str, str] = {}

    def path_of(moid: str) -> str:
        if moid == root:
            return ""
        if moid not in paths:
            name, parent = parents.get(moid, ("", None))
            paths[moid] = f"{path_of(parent._moId) if parent is not None else ''}/{name}"
        return paths[moid]

    for moid in parents:
        path_of(moid)
    return paths, objects


def _pool_limit_mib(props: dict[str, Any]) -> int | None:
    limit = props.get("config.memoryAllocation.limit")
    return int(limit) if limit is not None and limit >= 0 else None  # MB; -1 = unlimited


def discover(client: VsphereClient) -> Inventory:
    """Read the inventory eksctl anywhere works with (and the tags of every template)."""
    paths, objects = _paths(client)
    datacenters = tuple(sorted(paths[o._moId] for o, _ in client.collect(vim.Datacenter, ["name"])))

    hosts: dict[str, Host] = {}
    host_parent: dict[str, str] = {}
    for obj, props in client.collect(
        vim.HostSystem, ["summary.hardware.cpuModel", "hardware.cpuFeature", "parent"]
    ):
        model = props.get("summary.hardware.cpuModel") or ""
        cpu = describe(model=model, cpuid=props.get("hardware.cpuFeature") or [])
        hosts[obj._moId] = Host(
            path=paths[obj._moId], cpu_model=model, cpu_generation=cpu.generation, avx512_vnni=cpu.avx512_vnni
        )
        host_parent[obj._moId] = props["parent"]._moId
    clusters = []
    for obj, _props in client.collect(vim.ComputeResource, ["name"]):
        members = tuple(
            sorted((h for hid, h in hosts.items() if host_parent[hid] == obj._moId), key=lambda h: h.path)
        )
        clusters.append(
            ComputeCluster(
                path=paths[obj._moId], is_cluster=isinstance(obj, vim.ClusterComputeResource), hosts=members
            )
        )

    pools_props = {
        obj._moId: props
        for obj, props in client.collect(
            vim.ResourcePool, ["config.memoryAllocation.limit", "runtime.memory.overallUsage", "owner"]
        )
    }
    pools = tuple(
        ResourcePool(
            path=paths[moid],
            cluster=paths[props["owner"]._moId],
            memory_limit_mib=_pool_limit_mib(props),
            memory_usage_mib=int(props.get("runtime.memory.overallUsage") or 0) // MIB,
        )
        for moid, props in pools_props.items()
        if not isinstance(objects.get(moid), vim.VirtualApp)
    )

    datastores = {
        paths[obj._moId]: Datastore(
            path=paths[obj._moId],
            free_bytes=int(props.get("summary.freeSpace") or 0),
            capacity_bytes=int(props.get("summary.capacity") or 0),
        )
        for obj, props in client.collect(vim.Datastore, ["summary.freeSpace", "summary.capacity"])
    }
    networks = tuple(
        Network(path=paths[obj._moId], kind=type(obj).__name__.rsplit(".", 1)[-1])
        for obj, _props in client.collect(vim.Network, ["name"])
    )
    folders = tuple(
        paths[obj._moId]
        for obj, props in client.collect(vim.Folder, ["childType"])
        if "VirtualMachine" in (props.get("childType") or [])
    )

    template_refs = [
        obj
        for obj, props in client.collect(vim.VirtualMachine, ["config.template"])
        if props.get("config.template")
    ]
    tags = client.tagging.attached_tags([("VirtualMachine", obj._moId) for obj in template_refs])
    templates = tuple(
        Template(path=paths[obj._moId], moid=obj._moId, tags=tags.get(obj._moId, ())) for obj in template_refs
    )
    refs = {paths[moid]: obj for moid, obj in objects.items() if moid in paths}
    return Inventory(
        server=client.host,
        version=client.version,
        datacenters=datacenters,
        clusters=tuple(sorted(clusters, key=lambda c: c.path)),
        resource_pools=tuple(sorted(pools, key=lambda p: p.path)),
        datastores=tuple(sorted(datastores.values(), key=lambda d: d.path)),
        networks=tuple(sorted(networks, key=lambda n: n.path)),
        folders=tuple(sorted(folders)),
        templates=tuple(sorted(templates, key=lambda t: t.path)),
        refs=refs,
    )
