"""What a deploy target provides: its pools, work folder, endpoints, how models reach it, up and down."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.aws_names import MODEL_REPOSITORY_PREFIX
from contracts.config import NodePoolConfig, ToolkitConfig
from contracts.errors import DeployError

if TYPE_CHECKING:
    from workloads.containers.build import Command
    from workloads.deploy.bench_pool import ClusterObjectApi
    from workloads.k8s.capacity import NodeAllocatable
    from workloads.k8s.model_source import ModelSource
    from workloads.k8s.s3sync import S3Location
    from workloads.progress import Progress


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """Where the models come from, as given on the command line ("" = not given)."""

    bucket: str = ""
    prefix: str = MODEL_REPOSITORY_PREFIX
    region: str = ""  # default: aws.region
    role_arn: str = ""  # aws: an IRSA role instead of the Pod Identity association
    endpoint_url: str = ""  # an S3-compatible store instead of AWS S3
    image: str = ""  # an OVMS image with the models baked in
    # The flags that set bucket and image, named in error messages.
    bucket_flag: str = "--model-bucket"
    image_flag: str = "--model-image"


@dataclasses.dataclass(frozen=True, kw_only=True)
class UpRequest:
    dry_run: bool = False
    runner: Any = None  # Invoke context that runs external CLIs (the CDK CLI for aws)
    models: ModelRequest = ModelRequest()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeployTarget(ABC):
    name: str
    summary: str  # what `up` makes there, for --help
    down_summary: str = ""  # what `down` removes, for --help
    supports_dry_run: bool = False
    in_cluster_bench: bool = False

    @abstractmethod
    def work_dir(self, config: ToolkitConfig) -> Path: ...

    @abstractmethod
    def pools(self, config: ToolkitConfig) -> tuple[str, ...]: ...

    @abstractmethod
    def kubeconfig(self, config: ToolkitConfig) -> Path | None: ...

    @abstractmethod
    def recorded_endpoints(self, config: ToolkitConfig) -> dict[str, dict[str, str]]:
        """{pool: {"rest": URL, "grpc": host:port}} recorded by `up`; a one-line error if none."""

    def server_record(self, config: ToolkitConfig) -> dict[str, Any] | None:
        """Everything `up` recorded about a single server it runs (models, settings), if it runs one."""
        return None

    @abstractmethod
    def up(self, config: ToolkitConfig, *, request: UpRequest) -> object: ...

    @abstractmethod
    def down(self, config: ToolkitConfig, *, runner: Any = None) -> object: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterTarget(DeployTarget):
    """A Kubernetes cluster serving OVMS per node pool: manifests, kubeconfig, images, in-cluster bench."""

    cluster_summary: str = ""  # its cluster and pools, for `k8s.render --help`
    registry_summary: str = ""  # where its images go, for `images.* --help`
    supports_dry_run: bool = True
    in_cluster_bench: bool = True

    @abstractmethod
    def node_pools(self, config: ToolkitConfig) -> dict[str, NodePoolConfig]: ...

    @abstractmethod
    def bench_pool(self, config: ToolkitConfig) -> NodePoolConfig:
        """The load-generator pool the bench Job runs on (tainted: KubernetesConfig.bench_taint)."""

    @abstractmethod
    def node_allocatable(
        self, config: ToolkitConfig, pool_name: str, node_pool: NodePoolConfig
    ) -> NodeAllocatable:
        """One node of ``node_pool`` (``pool_name``, or BENCH_POOL): allocatable and kube-system's share.

        A ConfigError naming the key when the pool's size is not known.
        """

    @abstractmethod
    def kubeconfig(self, config: ToolkitConfig) -> Path:
        """Where `up` writes the cluster's admin kubeconfig."""

    def pools(self, config: ToolkitConfig) -> tuple[str, ...]:
        return tuple(sorted(self.node_pools(config)))

    def work_dir(self, config: ToolkitConfig) -> Path:
        return config.paths.deploy(self.name)

    def recorded_endpoints(self, config: ToolkitConfig) -> dict[str, dict[str, str]]:
        from workloads.k8s.endpoints import load_endpoints

        return load_endpoints(config, target=self.name)

    @abstractmethod
    def s3_source(self, config: ToolkitConfig, request: ModelRequest) -> S3Location:
        """How this cluster's pods read ``request``'s bucket and prefix (the credentials they sync with)."""

    @abstractmethod
    def model_source(self, config: ToolkitConfig, request: ModelRequest) -> ModelSource | None:
        """The model source the request names for this cluster; None when it names none."""

    @abstractmethod
    def missing_models(self, config: ToolkitConfig, request: ModelRequest) -> str:
        """The one-line error when the request names no models."""

    def require_model_source(self, config: ToolkitConfig, request: ModelRequest) -> ModelSource:
        source = self.model_source(config, request)
        if source is None:
            raise DeployError(self.missing_models(config, request))
        return source

    @abstractmethod
    def check_model_source(self, config: ToolkitConfig, source: ModelSource) -> None:
        """DeployError when OVMS on this cluster cannot get its models from ``source``."""

    @abstractmethod
    def bench_s3_source(self, config: ToolkitConfig, request: ModelRequest, *, results: bool) -> S3Location:
        """How the bench Job reaches S3: reading the artifacts tree, or (``results``) writing its results."""

    @abstractmethod
    def bench_artifacts_s3(self, config: ToolkitConfig) -> str:
        """s3://bucket/prefix of the bench Job's artifacts tree when none is given; DeployError if none."""

    @abstractmethod
    def bench_results_s3(self, config: ToolkitConfig) -> str:
        """s3://bucket/prefix the bench results go under when none is given; one-line DeployError if none."""

    @abstractmethod
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
        """Scale the load-generator pool (bench_pool) to ``nodes`` (waiting for the cloud's update, not
        for the node itself: the caller waits for a Ready node through the Kubernetes API)."""

    @abstractmethod
    def image_registry(
        self, config: ToolkitConfig, *, push: bool, dry_run: bool, session: Any | None = None
    ) -> tuple[str, list[Command]]:
        """The registry `invoke images.*` tags for, and the logins to run before pushing."""
