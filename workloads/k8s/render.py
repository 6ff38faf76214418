"""Render the serving manifests to files: build the documents, dump YAML, parse back, validate, write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from contracts.files import atomic_write_text
from workloads.k8s.model_source import ModelSource
from workloads.k8s.ovms import served_precisions
from workloads.k8s.serving import namespace_documents, pool_documents
from workloads.k8s.validate import check_version, validate_document
from workloads.targets import cluster_target

NAMESPACE_FILE = "00-namespace.yaml"


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
    config: ToolkitConfig, *, target: str, model_source: ModelSource, out_dir: Path
) -> list[Path]:
    """Write the namespace file and one file per node pool of cluster ``target``; paths in apply order."""
    cluster = cluster_target(target)
    pools = cluster.node_pools(config)
    if not pools:
        raise DeployError(f"no node pools configured for {target}")
    cluster.check_model_source(config, model_source)
    served = served_precisions(config, target=cluster.name, pools=pools)
    files = {NAMESPACE_FILE: namespace_documents(config, model_source)}
    for pool, node_pool in sorted(pools.items()):
        files[f"10-ovms-{pool}.yaml"] = pool_documents(
            config,
            pool=pool,
            node_pool=node_pool,
            node=cluster.node_allocatable(config, pool, node_pool),
            source=model_source,
            precisions=served[pool],
        )
    return write_validated(files, version=config.kubernetes.version, out_dir=Path(out_dir))
