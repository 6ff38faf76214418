"""`aws`: EKS with c5 and c6i node groups (workloads.deploy.aws); models synced under pod identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.config import BENCH_POOL, NodePoolConfig, ToolkitConfig
from contracts.errors import ConfigError, DeployError
from workloads.progress import Progress
from workloads.targets.base import ClusterTarget, ModelRequest, UpRequest

if TYPE_CHECKING:
    from workloads.containers.build import Command
    from workloads.deploy.bench_pool import ClusterObjectApi
    from workloads.k8s.capacity import NodeAllocatable
    from workloads.k8s.model_source import ModelSource, S3ModelSource


@dataclasses.dataclass(frozen=True, kw_only=True)
class AwsTarget(ClusterTarget):
    name: str = "aws"
    summary: str = "CDK stacks, OVMS on EKS c5 + c6i"
    down_summary: str = "workloads and stacks; data buckets and repositories stay"
    cluster_summary: str = "EKS, c5/c6i pools"
    registry_summary: str = "the account's ECR, login through boto3"

    def node_pools(self, config: ToolkitConfig) -> dict[str, NodePoolConfig]:
        return config.aws.pools

    def bench_pool(self, config: ToolkitConfig) -> NodePoolConfig:
        return config.aws.bench_pool

    def node_allocatable(
        self, config: ToolkitConfig, pool_name: str, node_pool: NodePoolConfig
    ) -> NodeAllocatable:
        from workloads.k8s.capacity import NodeAllocatable, total

        key = "aws.bench_pool" if pool_name == BENCH_POOL else f"aws.pools.{pool_name}"
        allocatable = config.kubernetes.node_allocatable.get(node_pool.instance_type)
        if allocatable is None:
            raise ConfigError(
                f"kubernetes.node_allocatable has no entry for {node_pool.instance_type} "
                f"({key}.instance_type); add its cpu_millicores and memory_mib"
            )
        return NodeAllocatable(
            pool=pool_name,
            instance_type=node_pool.instance_type,
            allocatable=allocatable,
            system_pods=total(config.kubernetes.eks_system_pods.values()),
        )

    def kubeconfig(self, config: ToolkitConfig) -> Path:
        from workloads.deploy.aws import aws_paths

        return aws_paths(config).kubeconfig

    def s3_source(self, config: ToolkitConfig, request: ModelRequest) -> S3ModelSource:
        from workloads.k8s.model_source import S3ModelSource

        return S3ModelSource(
            bucket=request.bucket,
            prefix=request.prefix,
            region=request.region or config.aws.region,
            service_account=config.kubernetes.model_sync_service_account,
            role_arn=request.role_arn,
        )

    def model_source(self, config: ToolkitConfig, request: ModelRequest) -> ModelSource | None:
        if not request.bucket:
            return None
        return self.s3_source(config, request)

    def missing_models(self, config: ToolkitConfig, request: ModelRequest) -> str:
        return f"target {self.name} syncs the models from S3: give the models bucket ({request.bucket_flag})"

    def check_model_source(self, config: ToolkitConfig, source: ModelSource) -> None:
        from workloads.k8s.model_source import BakedModelSource, S3ModelSource

        if not isinstance(source, S3ModelSource | BakedModelSource):
            raise DeployError("on EKS the models are synced under the pod's own identity: use S3ModelSource")

    def bench_s3_source(
        self, config: ToolkitConfig, request: ModelRequest, *, results: bool
    ) -> S3ModelSource:
        # One pod, one service account: its Pod Identity role reads the artifacts and writes results.
        return dataclasses.replace(
            self.s3_source(config, request), service_account=config.kubernetes.bench_service_account
        )

    def bench_artifacts_s3(self, config: ToolkitConfig) -> str:
        from contracts.aws_names import StackNames, bucket_output
        from workloads.deploy.aws import aws_paths
        from workloads.deploy.aws_outputs import load_outputs_file, stack_output

        outputs = load_outputs_file(aws_paths(config).outputs_file)
        data = StackNames.for_prefix(config.aws.resource_prefix).data
        models = stack_output(outputs, data, bucket_output("models"))
        return f"s3://{models}/{config.aws.bench_artifacts_prefix}"

    def bench_results_s3(self, config: ToolkitConfig) -> str:
        from contracts.aws_names import BENCH_RESULTS_PREFIX, StackNames, bucket_output
        from workloads.deploy.aws import aws_paths
        from workloads.deploy.aws_outputs import load_outputs_file, stack_output

        outputs = load_outputs_file(aws_paths(config).outputs_file)
        data = StackNames.for_prefix(config.aws.resource_prefix).data
        return f"s3://{stack_output(outputs, data, bucket_output('results'))}/{BENCH_RESULTS_PREFIX}"

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
        from contracts.aws_names import CLUSTER_NAME, StackNames, nodegroup_output
        from contracts.config import BENCH_POOL
        from workloads.deploy.aws import aws_paths
        from workloads.deploy.aws_outputs import load_outputs_file, stack_output
        from workloads.deploy.bench_pool import scale_nodegroup

        outputs = load_outputs_file(aws_paths(config).outputs_file)
        stack = StackNames.for_prefix(config.aws.resource_prefix).cluster
        if session is None:
            import boto3

            session = boto3.session.Session(region_name=config.aws.region)
        scale_nodegroup(
            session.client("eks"),
            cluster=stack_output(outputs, stack, CLUSTER_NAME),
            nodegroup=stack_output(outputs, stack, nodegroup_output(BENCH_POOL)),
            nodes=nodes,
            pool=config.aws.bench_pool,
            progress=progress,
        )

    def image_registry(
        self, config: ToolkitConfig, *, push: bool, dry_run: bool, session: Any | None = None
    ) -> tuple[str, list[Command]]:
        from workloads.containers.registry import configured_registry, ecr_registry

        return configured_registry(config) or ecr_registry(
            config, push=push, dry_run=dry_run, session=session
        )

    def up(self, config: ToolkitConfig, *, request: UpRequest) -> object:
        from workloads.deploy import aws

        return aws.up(config, runner=request.runner, dry_run=request.dry_run)

    def down(self, config: ToolkitConfig, *, runner: Any = None) -> object:
        from workloads.deploy import aws

        return aws.down(config, runner=runner)
