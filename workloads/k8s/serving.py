"""The serving documents as data: namespace-wide objects and, per node pool, OVMS, its config and guards."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from contracts.config import NodePoolConfig, ToolkitConfig
from contracts.errors import DeployError
from workloads.k8s import s3sync
from workloads.k8s.capacity import NodeAllocatable, Rollout, plan_rollout, pod_requests, pods_per_node
from workloads.k8s.model_source import BakedModelSource, ModelSource, S3ModelSource
from workloads.k8s.ovms import (
    CONFIG_MOUNT,
    MODELS_MOUNT,
    OVMS_UID,
    model_ready_command,
    server_args,
    server_config,
)
from workloads.k8s.security import container_security, guaranteed, namespace_labels, pod_security

APP = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
PART_OF = {"app.kubernetes.io/part-of": "bone-marrow", "app.kubernetes.io/managed-by": "bmc-toolkit"}
OVMS = "ovms"
BENCH_CLIENT = "bench-client"
DEFAULT_SERVICE_ACCOUNT = "ovms"
# Generous: the sync and the first model compilation happen before readiness.
STARTUP_SECONDS = 600
PROBE_PERIOD = 10
# Each Model Ready call of the exec probe may take this long (curl --max-time).
PROBE_SECONDS_PER_MODEL = 2
METRICS_PATH = "/metrics"  # OVMS serves Prometheus metrics on its REST port


def deployment_name(pool: str) -> str:
    return f"ovms-{pool}"


def config_map_name(pool: str) -> str:
    """The pool's own OVMS config.json: pools of one target serve different variants (bf16)."""
    return f"ovms-config-{pool}"


def _meta(config: ToolkitConfig, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": config.kubernetes.namespace, "labels": {**PART_OF, **(labels or {})}}


def served_versions(server: dict[str, Any]) -> dict[str, int | None]:
    """Each model of a config.json (``server``) → the version it pins (None: OVMS takes the highest)."""
    served: dict[str, int | None] = {}
    for entry in server["model_config_list"]:
        model = entry["config"]
        pinned = (model.get("model_version_policy") or {}).get("specific", {}).get("versions") or [None]
        served[model["name"]] = pinned[0]
    return served


def service_account_name(source: ModelSource) -> str:
    return source.service_account if isinstance(source, S3ModelSource) else DEFAULT_SERVICE_ACCOUNT


def namespace_documents(config: ToolkitConfig, source: ModelSource) -> list[dict[str, Any]]:
    namespace = config.kubernetes.namespace
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


def rollout_for(
    config: ToolkitConfig, pod_spec: dict[str, Any], node_pool: NodePoolConfig, node: NodeAllocatable
) -> Rollout:
    """The pool's rolling update: surge only into room the pool's nodes really have.

    A DeployError when one pod does not fit a node beside kube-system, or the replicas do not
    fit the pool's nodes (desired_size: nothing here scales node groups).
    """
    ovms = config.ovms
    requests = pod_requests(pod_spec)
    per_node = pods_per_node(requests, node)
    pool = node.pool
    if per_node == 0:
        free = node.free
        raise DeployError(
            f"an OVMS pod ({requests.cpu_millicores}m CPU, {requests.memory_mib} MiB) does not fit a "
            f"{node.instance_type} node of pool {pool} beside kube-system ({free.cpu_millicores}m, "
            f"{free.memory_mib} MiB free): lower ovms.cpus / ovms.memory_mib or use a bigger node"
        )
    try:
        return plan_rollout(
            replicas=ovms.replicas,
            peak_replicas=max(ovms.replicas, ovms.hpa_max_replicas),
            nodes=node_pool.desired_size,
            per_node=per_node,
        )
    except DeployError as exc:
        raise DeployError(f"ovms.replicas on pool {pool}: {exc}; raise the pool's desired_size") from None


def pool_documents(
    config: ToolkitConfig,
    *,
    pool: str,
    node_pool: NodePoolConfig,
    node: NodeAllocatable,
    source: ModelSource,
    precisions: tuple[str, ...],
) -> list[dict[str, Any]]:
    """The pool's config.json, Deployment and guards; ``node``: one of its nodes
    (ClusterTarget.node_allocatable); ``precisions``: what it serves (ovms.served_precisions)."""
    ovms = config.ovms
    name = deployment_name(pool)
    selector = {APP: OVMS, INSTANCE: name}
    labels = {**selector, **config.kubernetes.pool_labels(pool, node_pool)}
    server = server_config(config, precisions)
    config_json = json.dumps(server, indent=2, sort_keys=True)
    # Applied before the Deployment (this file's order), which mounts it.
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(config, config_map_name(pool), labels),
        "data": {"config.json": config_json},
    }
    deployment = _deployment(
        config,
        name=name,
        selector=selector,
        labels=labels,
        pool=pool,
        node_pool=node_pool,
        source=source,
        served=served_versions(server),
        config_digest=hashlib.sha256(config_json.encode()).hexdigest(),
    )
    # The strategy depends on the pod's requests, so it is computed from the rendered pod.
    rollout = rollout_for(config, deployment["spec"]["template"]["spec"], node_pool, node)
    deployment["spec"]["strategy"] = rollout.strategy()
    documents = [
        config_map,
        deployment,
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
            # One pod at a time, as the rollout without room replaces them: voluntary evictions
            # never take the whole pool down at once, and a single-replica pool can still be
            # drained (a minAvailable of 1 would block every drain of it).
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
    monitoring = config.kubernetes.monitoring_namespace
    if monitoring:
        documents.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(config, f"{name}-metrics", labels),
                # Metrics share the REST port: the monitoring namespace may reach it, nothing else.
                "spec": {
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": monitoring}
                                    }
                                }
                            ],
                            "ports": [{"port": "rest", "protocol": "TCP"}],
                        }
                    ],
                },
            }
        )
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
    served: dict[str, int | None],
    config_digest: str,
) -> dict[str, Any]:
    ovms = config.ovms

    # Ready only when every served model is: Model Ready of each (see model_ready_command).
    def models_ready() -> dict[str, Any]:  # a fresh copy per probe: no YAML anchors in the files
        return {
            "exec": {"command": model_ready_command(ovms.rest_port, served)},
            "timeoutSeconds": PROBE_SECONDS_PER_MODEL * len(served) + 1,
            "periodSeconds": PROBE_PERIOD,
        }

    mounts = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(pool)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    init_containers = []
    annotations = {
        "bone-marrow.ml/ovms-config-sha256": config_digest,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ovms.rest_port),
        "prometheus.io/path": METRICS_PATH,
    }
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
                verify_models=served,
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
        "startupProbe": {**models_ready(), "failureThreshold": STARTUP_SECONDS // PROBE_PERIOD},
        "readinessProbe": {**models_ready(), "failureThreshold": 3},
        # Alive is the process answering, whatever its models: a model that fails to load must
        # keep the pod unready (and the startup probe restarts it), not loop liveness restarts.
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "rest", "scheme": "HTTP"},
            "periodSeconds": PROBE_PERIOD,
            "failureThreshold": 3,
        },
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
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
