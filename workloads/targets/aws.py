"""`aws`: EKS with c5 and c6i node groups (workloads.deploy.aws); models synced under pod identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.config import NodePoolConfig, ToolkitConfig
from contracts.errors import DeployError
from workloads.targets.base import ClusterTarget, ModelRequest, UpRequest

if TYPE_CHECKING:
    from workloads.containers.build import Command
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
