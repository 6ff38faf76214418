"""`vsphere`: EKS Anywhere on vSphere (workloads.deploy.vsphere); models per ovms.eksa_model_delivery."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.config import BENCH_POOL, NodePoolConfig, Resources, ToolkitConfig
from contracts.errors import ConfigError, DeployError
from workloads.progress import Progress
from workloads.targets.base import ClusterTarget, ModelRequest, UpRequest

if TYPE_CHECKING:
    from workloads.containers.build import Command
    from workloads.deploy.bench_pool import ClusterObjectApi
    from workloads.k8s.capacity import NodeAllocatable
    from workloads.k8s.model_source import ModelSource, SecretS3ModelSource

# The instance_type of every vSphere pool: the machines' size comes from vsphere.*_machine.
VSPHERE_VM = "vsphere-vm"


@dataclasses.dataclass(frozen=True, kw_only=True)
class VsphereTarget(ClusterTarget):
    name: str = "vsphere"
    summary: str = "EKS Anywhere, OVMS on the Ice Lake workers"
    down_summary: str = "deletes the EKS Anywhere cluster"
    cluster_summary: str = "EKS Anywhere, Ice Lake pool"
    registry_summary: str = "images.registry"

    def node_pools(self, config: ToolkitConfig) -> dict[str, NodePoolConfig]:
        return config.vsphere.pools

    def bench_pool(self, config: ToolkitConfig) -> NodePoolConfig:
        return config.vsphere.bench_pool

    def node_allocatable(
        self, config: ToolkitConfig, pool_name: str, node_pool: NodePoolConfig
    ) -> NodeAllocatable:
        from workloads.k8s.capacity import NodeAllocatable, total

        bench = pool_name == BENCH_POOL
        key = "vsphere.bench_pool" if bench else f"vsphere.pools.{pool_name}"
        if node_pool.instance_type != VSPHERE_VM:
            raise ConfigError(
                f"{key}.instance_type must be {VSPHERE_VM} (its size is vsphere.worker_machine / "
                f"bench_machine), got {node_pool.instance_type!r}"
            )
        machine = config.vsphere.bench_machine if bench else config.vsphere.worker_machine
        reserved = config.vsphere.node_reserved
        return NodeAllocatable(
            pool=pool_name,
            instance_type=node_pool.instance_type,
            allocatable=Resources(
                cpu_millicores=machine.cpus * 1000 - reserved.cpu_millicores,
                memory_mib=machine.memory_mib - reserved.memory_mib,
            ),
            system_pods=total(config.kubernetes.eksa_system_pods.values()),
        )

    def kubeconfig(self, config: ToolkitConfig) -> Path:
        from infra.eksa.eksctl import kubeconfig_path

        return kubeconfig_path(self.work_dir(config), config.vsphere.cluster_name)

    def s3_source(self, config: ToolkitConfig, request: ModelRequest) -> SecretS3ModelSource:
        from workloads.k8s.model_source import SecretS3ModelSource

        # No pod identity on-prem: the sync reads the keys of a Secret.
        return SecretS3ModelSource(
            bucket=request.bucket,
            prefix=request.prefix,
            region=request.region or config.aws.region,
            secret_name=config.ovms.eksa_credentials_secret,
            endpoint_url=request.endpoint_url,
        )

    def model_source(self, config: ToolkitConfig, request: ModelRequest) -> ModelSource | None:
        from workloads.k8s.model_source import BakedModelSource

        delivery = config.ovms.eksa_model_delivery
        if delivery == "baked":
            if request.bucket:
                raise DeployError(
                    f"ovms.eksa_model_delivery is baked: give {request.image_flag}, not {request.bucket_flag}"
                )
            return BakedModelSource(image=request.image) if request.image else None
        if request.image:
            wrong = f"give {request.bucket_flag}, not {request.image_flag}"
            raise DeployError(f"ovms.eksa_model_delivery is {delivery}: {wrong}")
        if not request.bucket:
            return None
        return self.s3_source(config, request)

    def missing_models(self, config: ToolkitConfig, request: ModelRequest) -> str:
        if config.ovms.eksa_model_delivery == "baked":
            image = f"the OVMS image with the model ({request.image_flag})"
            return f"ovms.eksa_model_delivery is baked: give {image}"
        return f"target {self.name} syncs the models from S3: give the models bucket ({request.bucket_flag})"

    def check_model_source(self, config: ToolkitConfig, source: ModelSource) -> None:
        from workloads.k8s.model_source import BakedModelSource, SecretS3ModelSource

        delivery = config.ovms.eksa_model_delivery
        wanted = SecretS3ModelSource if delivery == "secret-sync" else BakedModelSource
        if not isinstance(source, wanted):
            raise DeployError(
                f"ovms.eksa_model_delivery is {delivery}: "
                f"EKS Anywhere needs a {wanted.__name__}, got {type(source).__name__}"
            )

    def bench_s3_source(
        self, config: ToolkitConfig, request: ModelRequest, *, results: bool
    ) -> SecretS3ModelSource:
        source = self.s3_source(config, request)
        if results:
            return dataclasses.replace(source, secret_name=config.ovms.bench_results_credentials_secret)
        return source

    def bench_artifacts_s3(self, config: ToolkitConfig) -> str:
        raise DeployError(f"target {self.name} has no default artifacts location")

    def bench_results_s3(self, config: ToolkitConfig) -> str:
        if not config.vsphere.bench_results_s3:
            raise DeployError("vsphere.bench_results_s3 is empty: set it to s3://BUCKET/PREFIX")
        return config.vsphere.bench_results_s3

    def scale_bench_pool(
        self,
        config: ToolkitConfig,
        *,
        nodes: int,
        kubeconfig: Path,
        progress: Progress,
        api: ClusterObjectApi | None = None,
        session: Any = None,
    ) -> None:
        from contracts.config import BENCH_POOL
        from workloads.deploy.bench_pool import scale_worker_group

        pool = config.vsphere.bench_pool
        if not pool.min_size <= nodes <= pool.max_size:
            sizes = f"{pool.min_size}..{pool.max_size}"
            raise DeployError(f"vsphere.bench_pool cannot hold {nodes} nodes: its sizes are {sizes}")
        if api is None:
            from workloads.k8s.cluster_api import DynamicClusterApi

            api = DynamicClusterApi(kubeconfig=kubeconfig)
        scale_worker_group(
            api, cluster_name=config.vsphere.cluster_name, group=BENCH_POOL, nodes=nodes, progress=progress
        )

    def image_registry(
        self, config: ToolkitConfig, *, push: bool, dry_run: bool, session: Any | None = None
    ) -> tuple[str, list[Command]]:
        from workloads.containers.registry import configured_registry

        registry = configured_registry(config)
        if registry is None:
            raise DeployError(f"images.registry is empty: set it to the registry of target {self.name}")
        return registry

    def up(self, config: ToolkitConfig, *, request: UpRequest) -> object:
        from workloads.deploy import vsphere

        source = self.model_source(config, request.models)
        return vsphere.up(config, model_source=source, dry_run=request.dry_run)

    def down(self, config: ToolkitConfig, *, runner: Any = None) -> object:
        from workloads.deploy import vsphere

        vsphere.down(config)
        return None
