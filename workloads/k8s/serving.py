"""The serving documents as data: namespace-wide objects and, per node pool, OVMS and its guards."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from contracts.config import NodePoolConfig, ToolkitConfig
from workloads.k8s import s3sync
from workloads.k8s.model_source import BakedModelSource, ModelSource, S3ModelSource
from workloads.k8s.ovms import CONFIG_MOUNT, MODELS_MOUNT, OVMS_UID, server_args, server_config
from workloads.k8s.security import container_security, guaranteed, namespace_labels, pod_security

APP = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
PART_OF = {"app.kubernetes.io/part-of": "bone-marrow", "app.kubernetes.io/managed-by": "bmc-toolkit"}
OVMS = "ovms"
BENCH_CLIENT = "bench-client"
CONFIG_MAP = "ovms-config"
DEFAULT_SERVICE_ACCOUNT = "ovms"
# Generous: the sync and the first model compilation happen before readiness.
STARTUP_SECONDS = 600
PROBE_PERIOD = 10


def deployment_name(pool: str) -> str:
    return f"ovms-{pool}"


def _meta(config: ToolkitConfig, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": config.kubernetes.namespace, "labels": {**PART_OF, **(labels or {})}}


def served_versions(config: ToolkitConfig) -> dict[str, int | None]:
    """Each model OVMS serves → the version its config.json pins (None: OVMS takes the highest)."""
    served: dict[str, int | None] = {}
    for entry in server_config(config)["model_config_list"]:
        model = entry["config"]
        pinned = (model.get("model_version_policy") or {}).get("specific", {}).get("versions") or [None]
        served[model["name"]] = pinned[0]
    return served


def service_account_name(source: ModelSource) -> str:
    return source.service_account if isinstance(source, S3ModelSource) else DEFAULT_SERVICE_ACCOUNT


def namespace_documents(config: ToolkitConfig, source: ModelSource) -> list[dict[str, Any]]:
    namespace = config.kubernetes.namespace
    config_json = json.dumps(server_config(config), indent=2, sort_keys=True)
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {**PART_OF, **namespace_labels(config.kubernetes.version)},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(config, service_account_name(source)),
            # No Kubernetes API access is needed; AWS identities use their own projected tokens.
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(config, CONFIG_MAP),
            "data": {"config.json": config_json},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(config, "default-deny"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(config, "allow-dns"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    }
                ],
            },
        },
    ]


def pool_documents(
    config: ToolkitConfig, *, pool: str, node_pool: NodePoolConfig, source: ModelSource
) -> list[dict[str, Any]]:
    ovms = config.ovms
    name = deployment_name(pool)
    selector = {APP: OVMS, INSTANCE: name}
    labels = {**selector, **config.kubernetes.pool_labels(pool, node_pool)}
    config_digest = hashlib.sha256(json.dumps(server_config(config), sort_keys=True).encode()).hexdigest()
    documents = [
        _deployment(
            config,
            name=name,
            selector=selector,
            labels=labels,
            pool=pool,
            node_pool=node_pool,
            source=source,
            config_digest=config_digest,
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(config, name, labels),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {"name": "grpc", "port": ovms.grpc_port, "targetPort": "grpc", "appProtocol": "grpc"},
                    {"name": "rest", "port": ovms.rest_port, "targetPort": "rest", "appProtocol": "http"},
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(config, name, labels),
            # One pod at a time: voluntary evictions never take the whole pool down at once, and a
            # single-replica pool can still be drained.
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(config, f"{name}-ingress", labels),
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {APP: BENCH_CLIENT}}}],
                        "ports": [
                            {"port": "grpc", "protocol": "TCP"},
                            {"port": "rest", "protocol": "TCP"},
                        ],
                    }
                ],
            },
        },
    ]
    if not isinstance(source, BakedModelSource):
        documents.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(config, f"{name}-model-sync", labels),
                "spec": {
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Egress"],
                    "egress": s3sync.egress_rules(source),
                },
            }
        )
    if ovms.hpa_max_replicas:
        documents.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": _meta(config, name, labels),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": ovms.replicas,
                    "maxReplicas": ovms.hpa_max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": ovms.hpa_cpu_utilization,
                                },
                            },
                        }
                    ],
                },
            }
        )
    return documents


def _deployment(
    config: ToolkitConfig,
    *,
    name: str,
    selector: dict[str, str],
    labels: dict[str, str],
    pool: str,
    node_pool: NodePoolConfig,
    source: ModelSource,
    config_digest: str,
) -> dict[str, Any]:
    ovms = config.ovms
    http = {"path": "/v2/health/ready", "port": "rest", "scheme": "HTTP"}
    mounts = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": CONFIG_MAP}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    init_containers = []
    annotations = {"bone-marrow.ml/ovms-config-sha256": config_digest}
    if not isinstance(source, BakedModelSource):
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True})
        volumes.append({"name": "models", "emptyDir": {"sizeLimit": "4Gi"}})
        volumes += s3sync.identity_volumes(source)
        init_containers.append(
            s3sync.sync_container(
                name="model-sync",
                image=ovms.sync_image,
                source=source,
                volume="models",
                mount=MODELS_MOUNT,
                # What OVMS serves (its config.json), checked against the sha256 recorded at publish.
                verify_models=served_versions(config),
            )
        )
        annotations.update(s3sync.pod_annotations(source, skip_containers=[OVMS]))
    container = {
        "name": OVMS,
        "image": source.image if isinstance(source, BakedModelSource) else ovms.image,
        "args": server_args(config),
        "ports": [
            {"name": "grpc", "containerPort": ovms.grpc_port, "protocol": "TCP"},
            {"name": "rest", "containerPort": ovms.rest_port, "protocol": "TCP"},
        ],
        "resources": guaranteed(ovms.cpus, ovms.memory_mib),
        "securityContext": container_security(),
        "volumeMounts": mounts,
        "startupProbe": {
            "httpGet": http,
            "periodSeconds": PROBE_PERIOD,
            "failureThreshold": STARTUP_SECONDS // PROBE_PERIOD,
        },
        "readinessProbe": {"httpGet": http, "periodSeconds": PROBE_PERIOD, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {**http, "path": "/v2/health/live"},
            "periodSeconds": PROBE_PERIOD,
            "failureThreshold": 3,
        },
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {**PART_OF, **labels}, "annotations": annotations},
            "spec": {
                "serviceAccountName": service_account_name(source),
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "nodeSelector": config.kubernetes.pool_labels(pool, node_pool),
                "securityContext": pod_security(OVMS_UID),
                "initContainers": init_containers,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if not ovms.hpa_max_replicas:
        # With an HPA the replica count is its field; applying one here would fight it.
        spec["replicas"] = ovms.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(config, name, labels),
        "spec": spec,
    }
