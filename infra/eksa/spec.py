"""The values of an EKS Anywhere vSphere cluster spec, computed once from config + discovery."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from contracts.config import BENCH_POOL, ToolkitConfig, VsphereMachineSize
from infra.eksa.paths import InventoryPaths, resolve
from infra.eksa.tls import normalize_thumbprint

API_VERSION = "anywhere.eks.amazonaws.com/v1alpha1"
# The login user of each OS image family (EKS Anywhere's own defaults).
_OS_USERS = {"bottlerocket": "ec2-user", "ubuntu": "capv", "redhat": "capv"}
# pkg/providers/vsphere/defaults.go setDefaultsForEtcdMachineConfig: eksctl raises etcd machines
# below 8192 MiB to 8192, so the spec says so and the memory check counts that.
ETCD_MIN_MEMORY_MIB = 8192


@dataclass(frozen=True)
class MachineValues:
    name: str
    os_family: str
    template: str
    datastore: str
    folder: str
    resource_pool: str
    cpus: int
    memory_mib: int
    disk_gib: int
    user: str
    ssh_authorized_keys: tuple[str, ...]


@dataclass(frozen=True)
class WorkerGroupValues:
    name: str
    count: int
    machine: str
    labels: dict[str, str]
    taints: tuple[dict[str, str], ...] = ()
    # The group's kubeletConfiguration (kind KubeletConfiguration), None = kubelet defaults.
    kubelet: dict | None = None


def serving_kubelet(config: ToolkitConfig) -> dict:
    """The serving workers' kubelet: the static CPU manager pins Guaranteed OVMS pods to whole cores.

    The static policy refuses to start without reserved CPU, so kube-reserved CPU is stated (the
    vsphere.node_reserved CPU the capacity checks already subtract).
    """
    return {
        "kind": "KubeletConfiguration",
        "cpuManagerPolicy": "static",
        "kubeReserved": {"cpu": f"{config.vsphere.node_reserved.cpu_millicores}m"},
    }


@dataclass(frozen=True)
class SpecValues:
    api_version: str
    cluster_name: str
    kubernetes_version: str
    pod_cidr: str
    service_cidr: str
    endpoint: str
    control_plane_count: int
    control_plane_machine: str
    etcd_count: int  # 0 = stacked etcd, no externalEtcdConfiguration
    etcd_machine: str
    datacenter_config: str
    datacenter: str
    network: str
    server: str
    thumbprint: str
    insecure: bool
    machines: tuple[MachineValues, ...]
    worker_groups: tuple[WorkerGroupValues, ...]

    def as_template_data(self) -> dict:
        return asdict(self)

    def machine_counts(self) -> list[tuple[MachineValues, int]]:
        """Each machine config with how many VMs use it (capacity checks)."""
        counts = {self.control_plane_machine: self.control_plane_count, self.etcd_machine: self.etcd_count}
        counts.update({group.machine: group.count for group in self.worker_groups})
        return [(machine, counts.get(machine.name, 0)) for machine in self.machines]


def build_values(config: ToolkitConfig, *, paths: InventoryPaths | None = None) -> SpecValues:
    vsphere = config.vsphere
    paths = paths or resolve(vsphere)
    name = vsphere.cluster_name
    keys = (vsphere.ssh_authorized_key,)

    def machine(machine_name: str, size: VsphereMachineSize) -> MachineValues:
        return MachineValues(
            name=machine_name,
            os_family=vsphere.os_family,
            template=paths.template,
            datastore=paths.datastore,
            folder=paths.folder,
            resource_pool=paths.resource_pool,
            cpus=size.cpus,
            memory_mib=size.memory_mib,
            disk_gib=size.disk_gib,
            user=_OS_USERS[vsphere.os_family],
            ssh_authorized_keys=keys,
        )

    machines = [machine(f"{name}-cp", vsphere.control_plane_machine)]
    if vsphere.etcd_count:
        etcd = vsphere.etcd_machine
        raised = VsphereMachineSize(
            cpus=etcd.cpus, memory_mib=max(etcd.memory_mib, ETCD_MIN_MEMORY_MIB), disk_gib=etcd.disk_gib
        )
        machines.append(machine(f"{name}-etcd", raised))
    groups = []
    for pool_name, pool in sorted(vsphere.pools.items()):
        machines.append(machine(f"{name}-{pool_name}", vsphere.worker_machine))
        groups.append(
            WorkerGroupValues(
                name=pool_name,
                count=pool.desired_size,
                machine=f"{name}-{pool_name}",
                labels=config.kubernetes.pool_labels(pool_name, pool),
                kubelet=serving_kubelet(config),
            )
        )
    # The load generator's group: tainted so only the bench Job lands there, 0 nodes until a bench
    # scales it (validateWorkerNodeGroups allows count 0 and taints while another group is untainted).
    bench, taint = vsphere.bench_pool, config.kubernetes.bench_taint()
    machines.append(machine(f"{name}-{BENCH_POOL}", vsphere.bench_machine))
    groups.append(
        WorkerGroupValues(
            name=BENCH_POOL,
            count=bench.desired_size,
            machine=f"{name}-{BENCH_POOL}",
            labels=config.kubernetes.bench_pool_labels(bench),
            taints=({"key": taint.key, "value": taint.value, "effect": taint.effect},),
        )
    )
    return SpecValues(
        api_version=API_VERSION,
        cluster_name=name,
        kubernetes_version=config.kubernetes.version,
        pod_cidr=vsphere.pod_cidr,
        service_cidr=vsphere.service_cidr,
        endpoint=vsphere.control_plane_endpoint,
        control_plane_count=vsphere.control_plane_count,
        control_plane_machine=f"{name}-cp",
        etcd_count=vsphere.etcd_count,
        etcd_machine=f"{name}-etcd",
        datacenter_config=name,
        datacenter=paths.datacenter.lstrip("/"),
        network=paths.network,
        server=vsphere.server,
        thumbprint=normalize_thumbprint(vsphere.thumbprint) if vsphere.thumbprint else "",
        insecure=vsphere.insecure,
        machines=tuple(machines),
        worker_groups=tuple(groups),
    )
