"""Render the serving manifests to files: build the documents, dump YAML, parse back, validate, write."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml

from contracts.config import NodePoolConfig, ToolkitConfig
from contracts.errors import DeployError
from contracts.files import atomic_write_text
from workloads.k8s.model_source import BakedModelSource, ModelSource, S3ModelSource, SecretS3ModelSource
from workloads.k8s.serving import namespace_documents, pool_documents
from workloads.k8s.validate import check_version, validate_document

Cluster = Literal["eks", "eksa"]
NAMESPACE_FILE = "00-namespace.yaml"


def cluster_pools(config: ToolkitConfig, cluster: Cluster) -> dict[str, NodePoolConfig]:
    if cluster == "eks":
        return config.aws.pools
    if cluster == "eksa":
        return config.vsphere.pools
    raise DeployError(f"unknown cluster {cluster!r}; choose eks or eksa")


def check_source(config: ToolkitConfig, cluster: Cluster, source: ModelSource) -> None:
    """EKS syncs under the pod's identity; EKS-A uses the configured delivery (Secret sync or baked)."""
    if cluster == "eks" and not isinstance(source, S3ModelSource | BakedModelSource):
        raise DeployError("on EKS the models are synced under the pod's own identity: use S3ModelSource")
    if cluster == "eksa":
        wanted = SecretS3ModelSource if config.ovms.eksa_model_delivery == "secret-sync" else BakedModelSource
        if not isinstance(source, wanted):
            raise DeployError(
                f"ovms.eksa_model_delivery is {config.ovms.eksa_model_delivery}: "
                f"EKS Anywhere needs a {wanted.__name__}, got {type(source).__name__}"
            )


def dump_documents(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, explicit_start=True)


def parse_and_validate(text: str, *, version: str, source: str) -> list[dict[str, Any]]:
    """What apply and the tests read: YAML parsed back, every document validated strictly."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise DeployError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    for document in documents:
        if not isinstance(document, dict):
            raise DeployError(f"{source} holds a document that is not a mapping")
        validate_document(document, version=version, source=source)
    return documents


def write_validated(files: dict[str, list[dict[str, Any]]], *, version: str, out_dir: Path) -> list[Path]:
    """Validate every file's text first, then write them all (atomically each): nothing half-written."""
    check_version(version)
    texts = {}
    for name, documents in files.items():
        text = dump_documents(documents)
        parse_and_validate(text, version=version, source=name)
        texts[name] = text
    return [atomic_write_text(out_dir / name, text) for name, text in texts.items()]


def render_serving(
    config: ToolkitConfig, *, cluster: Cluster, model_source: ModelSource, out_dir: Path
) -> list[Path]:
    """Write the namespace file and one file per node pool of ``cluster``; paths in apply order."""
    pools = cluster_pools(config, cluster)
    if not pools:
        raise DeployError(f"no node pools configured for {cluster}")
    check_source(config, cluster, model_source)
    files = {NAMESPACE_FILE: namespace_documents(config, model_source)}
    for pool, node_pool in sorted(pools.items()):
        files[f"10-ovms-{pool}.yaml"] = pool_documents(
            config, pool=pool, node_pool=node_pool, source=model_source
        )
    return write_validated(files, version=config.kubernetes.version, out_dir=Path(out_dir))
