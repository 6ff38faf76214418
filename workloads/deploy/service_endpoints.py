"""Per-pool OVMS endpoints (in-cluster DNS names) from the rendered Service manifests."""

from __future__ import annotations

from pathlib import Path

import yaml

from contracts.errors import DeployError


def service_endpoints(paths: list[Path], *, label_domain: str) -> dict[str, dict[str, str]]:
    """{pool: {"rest": "http://svc.ns.svc.cluster.local:port", "grpc": "svc.ns.svc.cluster.local:port"}}."""
    pool_label = f"{label_domain}/pool"
    endpoints: dict[str, dict[str, str]] = {}
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "Service":
                continue
            metadata = document["metadata"]
            pool = metadata.get("labels", {}).get(pool_label)
            if not pool:
                continue
            host = f"{metadata['name']}.{metadata['namespace']}.svc.cluster.local"
            ports = {p.get("name"): p["port"] for p in document["spec"].get("ports", [])}
            if "rest" not in ports or "grpc" not in ports:
                raise DeployError(f"Service {metadata['name']} in {path.name} lacks a 'rest' or 'grpc' port")
            endpoints[pool] = {"rest": f"http://{host}:{ports['rest']}", "grpc": f"{host}:{ports['grpc']}"}
    if not endpoints:
        raise DeployError(f"no OVMS Service labelled {pool_label} in the rendered manifests")
    return endpoints
