"""From a deploy target (aws, vsphere) and a few names to the cluster kind and model source."""

from __future__ import annotations

from pathlib import Path

from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from workloads.k8s.model_source import BakedModelSource, ModelSource, S3ModelSource, SecretS3ModelSource
from workloads.k8s.render import Cluster, render_serving

CLUSTERS: dict[str, Cluster] = {"aws": "eks", "vsphere": "eksa"}


def model_source_for(
    config: ToolkitConfig,
    *,
    target: str,
    bucket: str | None,
    prefix: str = "models",
    role_arn: str = "",
    endpoint_url: str = "",
    baked_image: str | None = None,
) -> ModelSource:
    if target not in CLUSTERS:
        raise DeployError(f"unknown target {target!r}; choose aws or vsphere")
    if target == "vsphere" and config.ovms.eksa_model_delivery == "baked":
        if not baked_image:
            raise DeployError(
                "ovms.eksa_model_delivery is baked: give the OVMS image with the model (--baked-image)"
            )
        return BakedModelSource(image=baked_image)
    if not bucket:
        raise DeployError(f"target {target} syncs the models from S3: give the models bucket (--bucket)")
    if target == "aws":
        return S3ModelSource(
            bucket=bucket,
            prefix=prefix,
            region=config.aws.region,
            service_account=config.kubernetes.model_sync_service_account,
            role_arn=role_arn,
        )
    return SecretS3ModelSource(
        bucket=bucket,
        prefix=prefix,
        region=config.aws.region,
        secret_name=config.ovms.eksa_credentials_secret,
        endpoint_url=endpoint_url,
    )


def render_target(config: ToolkitConfig, *, target: str, out_dir: Path, source: ModelSource) -> list[Path]:
    return render_serving(config, cluster=CLUSTERS[target], model_source=source, out_dir=out_dir)
