"""Rendered serving manifests: schema-valid for the pinned Kubernetes version, and safe by default."""

from __future__ import annotations

import dataclasses
import http.server
import json
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from contracts.config import load_config
from contracts.errors import DeployError
from workloads.k8s.bench_job import BenchJobSpec, PvcArtifacts, render_bench_job
from workloads.k8s.model_source import BakedModelSource, S3ModelSource, SecretS3ModelSource
from workloads.k8s.ovms import model_ready_paths
from workloads.k8s.render import parse_and_validate, render_serving
from workloads.k8s.security import pinned_by_static_cpu_manager, qos_class
from workloads.k8s.validate import supported_versions, validate_document

POD_IDENTITY = S3ModelSource(
    bucket="bm-models", prefix="models", region="us-east-1", service_account="ovms-s3"
)
IRSA = S3ModelSource(
    bucket="bm-models",
    prefix="models",
    region="us-east-1",
    service_account="ovms-s3",
    role_arn="arn:aws:iam::123456789012:role/bm-models-read",
)
SECRET = SecretS3ModelSource(
    bucket="bm-models",
    prefix="models",
    region="us-east-1",
    secret_name="models-s3",
    endpoint_url="http://minio:9000",
)
BAKED = BakedModelSource(image="registry.example.com/bmc/ovms-model:0.1.0")
CASES = {
    "eks-pod-identity": ("aws", POD_IDENTITY, {}),
    "eks-irsa": ("aws", IRSA, {}),
    "eksa-secret": ("vsphere", SECRET, {}),
    "eksa-baked": ("vsphere", BAKED, {"ovms": {"eksa_model_delivery": "baked"}}),
    "eks-hpa": (
        "aws",
        POD_IDENTITY,
        {
            "ovms": {"hpa_max_replicas": 3, "replicas": 2},
            "aws": {
                "pools": {
                    name: {"instance_type": f"{name}.large", "cpu_generation": gen, "desired_size": 2}
                    for name, gen in (("c5", "cascadelake"), ("c6i", "icelake"))
                }
            },
        },
    ),
}


def _render(tmp_path: Path, case: str) -> tuple[list[dict], object]:
    target, source, overrides = CASES[case]
    config = load_config(overrides)
    paths = render_serving(config, target=target, model_source=source, out_dir=tmp_path)
    documents = []
    for path in paths:
        documents += parse_and_validate(path.read_text(), version=config.kubernetes.version, source=path.name)
    return documents, config


def _kind(documents: list[dict], kind: str) -> list[dict]:
    return [d for d in documents if d["kind"] == kind]


def _pod_specs(documents: list[dict]) -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in documents if d["kind"] in ("Deployment", "Job")]


def _containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_files_per_pool_and_pinned_by_shared_labels(tmp_path: Path, case: str) -> None:
    documents, config = _render(tmp_path, case)
    pools = {"aws": config.aws.pools, "vsphere": config.vsphere.pools}[CASES[case][0]]
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == ["00-namespace.yaml"] + [
        f"10-ovms-{p}.yaml" for p in sorted(pools)
    ]
    deployments = {d["metadata"]["name"]: d for d in _kind(documents, "Deployment")}
    services = {d["metadata"]["name"]: d for d in _kind(documents, "Service")}
    assert set(deployments) == set(services) == {f"ovms-{p}" for p in pools}
    for pool, node_pool in pools.items():
        pod = deployments[f"ovms-{pool}"]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == config.kubernetes.pool_labels(pool, node_pool)
        ports = {p["name"]: p["port"] for p in services[f"ovms-{pool}"]["spec"]["ports"]}
        assert ports == {"grpc": config.ovms.grpc_port, "rest": config.ovms.rest_port}
    assert len(_kind(documents, "PodDisruptionBudget")) == len(pools)


def test_the_default_aws_pools_render_cascade_lake_ice_lake_and_sapphire_rapids(tmp_path: Path) -> None:
    documents, config = _render(tmp_path, "eks-pod-identity")
    selectors = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["nodeSelector"]
        for d in _kind(documents, "Deployment")
    }
    generation = f"{config.kubernetes.label_domain}/cpu-generation"
    assert {name: labels[generation] for name, labels in selectors.items()} == {
        "ovms-c5": "cascadelake",
        "ovms-c6i": "icelake",
        "ovms-c7i": "sapphirerapids",
    }
    assert selectors["ovms-c7i"][f"{config.kubernetes.label_domain}/pool"] == "c7i"


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_security_restricted(tmp_path: Path, case: str) -> None:
    documents, _config = _render(tmp_path, case)
    (namespace,) = _kind(documents, "Namespace")
    for mode in ("enforce", "audit", "warn"):
        assert namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for pod in _pod_specs(documents):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in _containers(pod):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["runAsNonRoot"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
            resources = container["resources"]
            assert resources["requests"] == resources["limits"]
            assert resources["limits"]["cpu"].isdigit(), "whole CPUs for static pinning"
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp


@pytest.mark.parametrize("case", sorted(CASES))
def test_probes_ask_every_served_model_never_tcp(tmp_path: Path, case: str) -> None:
    documents, config = _render(tmp_path, case)
    models = [f"bone-marrow-{p}" for p in config.serving.precisions]
    for deployment in _kind(documents, "Deployment"):
        (ovms,) = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe"):
            command = ovms[probe]["exec"]["command"]
            assert command[:2] == ["/bin/sh", "-c"] and "curl --fail" in command[2]
            assert command[4:] == [f"/v2/models/{m}/ready" for m in models]
            assert ovms[probe]["timeoutSeconds"] > 2 * len(models)
        assert ovms["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(ovms[probe]) & {"tcpSocket", "grpc"} == set()


def test_ovms_settings_from_config(tmp_path: Path) -> None:
    documents, config = _render(tmp_path, "eks-pod-identity")
    config_maps = {d["metadata"]["name"]: d for d in _kind(documents, "ConfigMap")}
    # One config.json per pool, each mounted by its own pool's Deployment.
    assert set(config_maps) == {f"ovms-config-{p}" for p in config.aws.pools}
    for deployment in _kind(documents, "Deployment"):
        pool = deployment["metadata"]["name"].removeprefix("ovms-")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "config", "configMap": {"name": f"ovms-config-{pool}"}} in volumes
    for config_map in config_maps.values():
        server = json.loads(config_map["data"]["config.json"])
        assert server["monitoring"] == {"metrics": {"enable": True}}
        names = [m["config"]["name"] for m in server["model_config_list"]]
        assert names == [f"bone-marrow-{p}" for p in config.serving.precisions]
        for model in server["model_config_list"]:
            # Sized to the pod's 1 CPU, not the node's cores.
            assert model["config"]["plugin_config"] == {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": 1,
                "INFERENCE_NUM_THREADS": 1,
                "INFERENCE_PRECISION_HINT": "f32",  # fp32 and int8 never run in bf16 on AMX nodes
            }
    args = _kind(documents, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log_level=INFO" in args and "--file_system_poll_wait_seconds=0" in args
    assert not any(a.startswith("--metrics_enable") for a in args), (
        "OVMS refuses CLI and config metrics together"
    )

    realtime = load_config(
        {"ovms": {"use": "realtime", "realtime": {"performance_hint": "LATENCY", "nireq": 2}}}
    )
    render_serving(realtime, target="aws", model_source=POD_IDENTITY, out_dir=tmp_path / "rt")
    text = (tmp_path / "rt" / "10-ovms-c5.yaml").read_text()
    cm = next(d for d in yaml.safe_load_all(text) if d["kind"] == "ConfigMap")
    model = json.loads(cm["data"]["config.json"])["model_config_list"][0]["config"]
    assert model["nireq"] == 2
    assert model["plugin_config"] == {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
    }


def test_model_sync_identity_reaches_only_the_sync_container(tmp_path: Path) -> None:
    documents, _ = _render(tmp_path, "eks-irsa")
    pod = _kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    (sync,) = pod["initContainers"]
    (ovms,) = pod["containers"]
    assert {e["name"] for e in sync["env"]} >= {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
    token = next(v for v in pod["volumes"] if v["name"] == "aws-iam-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    assert not any(e["name"].startswith("AWS_") for e in ovms.get("env", []))
    assert not any(m["name"] == "aws-iam-token" for m in ovms["volumeMounts"])
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in ovms["volumeMounts"]

    documents, _ = _render(tmp_path / "pi", "eks-pod-identity")
    deployment = _kind(documents, "Deployment")[0]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/skip-containers"] == "ovms"
    sa = _kind(documents, "ServiceAccount")[0]
    assert sa["metadata"]["name"] == "ovms-s3" and sa["automountServiceAccountToken"] is False


def test_secret_sync_and_baked_model_on_eksa(tmp_path: Path) -> None:
    documents, _ = _render(tmp_path, "eksa-secret")
    pod = _kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    sync = pod["initContainers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in sync["env"] if "valueFrom" in e}
    assert refs == {"AWS_ACCESS_KEY_ID": "models-s3", "AWS_SECRET_ACCESS_KEY": "models-s3"}
    assert sync["args"][-2:] == ["--endpoint-url", "http://minio:9000"]
    assert not any("valueFrom" in e for e in pod["containers"][0].get("env", []))

    documents, _ = _render(tmp_path / "baked", "eksa-baked")
    pod = _kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == BAKED.image
    assert pod["initContainers"] == []
    assert not any(n["metadata"]["name"].endswith("model-sync") for n in _kind(documents, "NetworkPolicy"))

    with pytest.raises(DeployError, match="eksa_model_delivery is secret-sync"):
        render_serving(load_config(), target="vsphere", model_source=BAKED, out_dir=tmp_path / "x")
    with pytest.raises(DeployError, match="pod's own identity"):
        render_serving(load_config(), target="aws", model_source=SECRET, out_dir=tmp_path / "y")


def test_network_policies_default_deny_and_needed_allows(tmp_path: Path) -> None:
    documents, _ = _render(tmp_path, "eks-pod-identity")
    policies = {d["metadata"]["name"]: d["spec"] for d in _kind(documents, "NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns_ports = policies["allow-dns"]["egress"][0]["ports"]
    assert {(p["port"], p["protocol"]) for p in dns_ports} == {(53, "UDP"), (53, "TCP")}
    ingress = policies["ovms-c5-ingress"]["ingress"][0]
    assert ingress["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "bench-client"}}}]
    egress = policies["ovms-c5-model-sync"]["egress"]
    assert egress[0]["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert egress[0]["to"][0]["ipBlock"]["except"] == ["169.254.169.254/32"]
    assert egress[1]["to"][0]["ipBlock"]["cidr"] == "169.254.170.23/32"  # the Pod Identity agent


def test_hpa_optional_and_owns_replicas(tmp_path: Path) -> None:
    documents, _ = _render(tmp_path, "eks-pod-identity")
    assert _kind(documents, "HorizontalPodAutoscaler") == []
    assert all(d["spec"]["replicas"] == 1 for d in _kind(documents, "Deployment"))
    documents, _ = _render(tmp_path / "hpa", "eks-hpa")
    hpas = _kind(documents, "HorizontalPodAutoscaler")
    assert [h["spec"]["maxReplicas"] for h in hpas] == [3, 3]
    assert all("replicas" not in d["spec"] for d in _kind(documents, "Deployment"))


def test_bench_job_in_cluster(tmp_path: Path) -> None:
    config = load_config()
    spec = BenchJobSpec(
        pool="c6i",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/bm/bench:0.1.0",
        artifacts=IRSA,
        results=dataclasses.replace(IRSA, bucket="bm-results", prefix="bench-results"),
    )
    path = render_bench_job(config, target="aws", spec=spec, out_dir=tmp_path)
    documents = parse_and_validate(path.read_text(), version=config.kubernetes.version, source=path.name)
    (job,) = _kind(documents, "Job")
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "bench-client"
    _sync, bench = pod["initContainers"]
    (upload,) = pod["containers"]
    assert bench["command"] == [
        "invoke",
        "--config",
        "/etc/bmc/invoke.yaml",
        "bench",
        "--endpoint",
        "ovms-c6i.bone-marrow.svc.cluster.local:9000",
    ]
    (config_map,) = _kind(documents, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["invoke.yaml"])["bmc"]["artifacts_dir"] == "/work/artifacts"
    assert upload["args"][:4] == [
        "s3",
        "sync",
        "/work/artifacts/bench",
        "s3://bm-results/bench-results/aws/c6i/bench-c6i",
    ]
    assert not any(e["name"].startswith("AWS_") for e in bench["env"])
    (policy,) = _kind(documents, "NetworkPolicy")
    assert (
        policy["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"]
        == "ovms-c6i"
    )

    volume = render_bench_job(
        config,
        target="vsphere",
        spec=BenchJobSpec(pool="icelake", image="r/b:1", artifacts=PvcArtifacts(claim="bench-pvc")),
        out_dir=tmp_path,
    )
    (job,) = [d for d in yaml.safe_load_all(volume.read_text()) if d["kind"] == "Job"]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "bench-pvc"
    with pytest.raises(DeployError, match="unknown pool 'c5' for vsphere"):
        render_bench_job(
            config,
            target="vsphere",
            spec=BenchJobSpec(pool="c5", image="r/b:1", artifacts=PvcArtifacts(claim="x")),
            out_dir=tmp_path,
        )


def test_strict_validation_rejects_what_the_api_would(tmp_path: Path) -> None:
    documents, config = _render(tmp_path, "eks-pod-identity")
    deployment = _kind(documents, "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(DeployError, match=r"is invalid for Kubernetes 1\.34"):
        validate_document(deployment, version=config.kubernetes.version, source="t")
    with pytest.raises(DeployError, match="Couldn't find schema for kind Frobnicator"):
        validate_document(
            {"apiVersion": "v1", "kind": "Frobnicator", "metadata": {"name": "x"}}, version="1.31", source="t"
        )


def test_unsupported_version_is_one_clear_line(tmp_path: Path) -> None:
    assert "1.31" in supported_versions()
    config = load_config({"kubernetes": {"version": "1.24"}})
    with pytest.raises(DeployError, match=r"kubernetes.version 1.24 has no schemas in kubernetes-validate"):
        render_serving(config, target="aws", model_source=POD_IDENTITY, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_bad_model_sources_are_rejected() -> None:
    with pytest.raises(DeployError, match="S3 bucket name"):
        S3ModelSource(bucket="Bad_Bucket", prefix="m", region="us-east-1", service_account="s")
    with pytest.raises(DeployError, match="pinned by a tag"):
        BakedModelSource(image="registry.example.com/ovms:latest")
    with pytest.raises(DeployError, match="IAM role ARN"):
        S3ModelSource(bucket="bkt", prefix="m", region="us-east-1", service_account="s", role_arn="role")


def test_cached_validator_agrees_with_kubernetes_validate(tmp_path: Path) -> None:
    import kubernetes_validate

    documents, config = _render(tmp_path, "eks-irsa")
    for document in documents:
        kubernetes_validate.validate(document, config.kubernetes.version, strict=True)
    pdb = _kind(documents, "PodDisruptionBudget")[0]
    pdb["spec"]["maxUnavailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, config.kubernetes.version, strict=True)
    with pytest.raises(DeployError, match="PodDisruptionBudget/ovms-c5 is invalid"):
        validate_document(pdb, version=config.kubernetes.version, source="t")


def test_targets_choose_the_model_source(tmp_path: Path) -> None:
    from workloads.targets import ModelRequest, cluster_target

    config = load_config()
    aws, vsphere = cluster_target("aws"), cluster_target("vsphere")
    source = aws.require_model_source(config, ModelRequest(bucket="bm-models", bucket_flag="--bucket"))
    assert isinstance(source, S3ModelSource) and source.service_account == "ovms-model-sync"
    assert isinstance(
        vsphere.require_model_source(config, ModelRequest(bucket="bm-models")), SecretS3ModelSource
    )
    baked = load_config({"ovms": {"eksa_model_delivery": "baked"}})
    with pytest.raises(DeployError, match="--baked-image"):
        vsphere.require_model_source(baked, ModelRequest(image_flag="--baked-image"))
    with pytest.raises(DeployError, match="--bucket"):
        aws.require_model_source(config, ModelRequest(bucket_flag="--bucket"))
    paths = render_serving(config, target="vsphere", out_dir=tmp_path, model_source=SECRET)
    assert [p.name for p in paths] == ["00-namespace.yaml", "10-ovms-icelake.yaml"]


class _ModelReady(http.server.BaseHTTPRequestHandler):
    """KServe v2 Model Ready as OVMS answers it: 200 for a loaded model, 4xx for any other."""

    ready: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        self.send_response(200 if self.path in self.ready else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_rendered_readiness_command_fails_until_every_model_is_ready(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = load_config({"ovms": {"rest_port": server.server_address[1]}})
        render_serving(config, target="aws", model_source=POD_IDENTITY, out_dir=tmp_path)
        text = (tmp_path / "10-ovms-c5.yaml").read_text()
        assert "&id" not in text, "each probe spelled out, not a YAML alias"
        (deployment,) = [d for d in yaml.safe_load_all(text) if d["kind"] == "Deployment"]
        (ovms,) = deployment["spec"]["template"]["spec"]["containers"]
        command = ovms["readinessProbe"]["exec"]["command"]
        assert ovms["startupProbe"]["exec"]["command"] == command

        def probe() -> subprocess.CompletedProcess[str]:
            return subprocess.run(command, capture_output=True, text=True, timeout=30)

        _ModelReady.ready = {"/v2/models/bone-marrow-fp32/ready"}  # int8 failed to load
        done = probe()
        assert done.returncode != 0
        assert "model-ready: /v2/models/bone-marrow-int8/ready is not ready" in done.stderr
        _ModelReady.ready = set()  # the server is up, no model is
        assert probe().returncode != 0
        _ModelReady.ready = {f"/v2/models/bone-marrow-{p}/ready" for p in ("fp32", "int8")}
        done = probe()
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert probe().returncode != 0, "nothing listening: not ready"


def test_model_ready_asks_for_the_pinned_version() -> None:
    assert model_ready_paths({"m-fp32": 3, "m-int8": None}) == [
        "/v2/models/m-fp32/versions/3/ready",
        "/v2/models/m-int8/ready",
    ]


def test_metrics_are_scrapable_from_the_monitoring_namespace_only(tmp_path: Path) -> None:
    documents, config = _render(tmp_path, "eks-pod-identity")
    for deployment in _kind(documents, "Deployment"):
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        (ovms,) = template["spec"]["containers"]
        rest = next(p for p in ovms["ports"] if p["name"] == "rest")
        assert annotations["prometheus.io/port"] == str(rest["containerPort"]) == str(config.ovms.rest_port)
    policies = {d["metadata"]["name"]: d["spec"] for d in _kind(documents, "NetworkPolicy")}
    metrics = policies["ovms-c5-metrics"]
    assert metrics["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "ovms-c5"
    assert metrics["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": "rest", "protocol": "TCP"}],
        }
    ]

    other = load_config({"kubernetes": {"monitoring_namespace": "observability"}})
    render_serving(other, target="aws", model_source=POD_IDENTITY, out_dir=tmp_path / "o")
    text = (tmp_path / "o" / "10-ovms-c6i.yaml").read_text()
    policy = next(d for d in yaml.safe_load_all(text) if d["metadata"]["name"] == "ovms-c6i-metrics")
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "observability"
    }
    off = load_config({"kubernetes": {"monitoring_namespace": ""}})
    render_serving(off, target="aws", model_source=POD_IDENTITY, out_dir=tmp_path / "off")
    names = [
        d["metadata"]["name"] for d in yaml.safe_load_all((tmp_path / "off" / "10-ovms-c5.yaml").read_text())
    ]
    assert "ovms-c5-metrics" not in names


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_ovms_pod_is_guaranteed_so_the_static_cpu_manager_pins_its_cores(
    tmp_path: Path, case: str
) -> None:
    documents, _config = _render(tmp_path, case)
    for deployment in _kind(documents, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert qos_class(pod) == "Guaranteed"
        (ovms,) = pod["containers"]
        assert pinned_by_static_cpu_manager(pod, ovms)


def test_qos_counts_init_containers_and_whole_cpus() -> None:
    def container(requests: dict, limits: dict) -> dict:
        return {"resources": {"requests": requests, "limits": limits}}

    whole = {"cpu": "1", "memory": "1536Mi"}
    pod = {"initContainers": [container(whole, whole)], "containers": [container(whole, whole)]}
    assert qos_class(pod) == "Guaranteed" and pinned_by_static_cpu_manager(pod, pod["containers"][0])
    pod["initContainers"] = [container({"cpu": "500m", "memory": "512Mi"}, {"cpu": "1", "memory": "512Mi"})]
    assert qos_class(pod) == "Burstable" and not pinned_by_static_cpu_manager(pod, pod["containers"][0])
    pod["initContainers"] = [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]  # requests default
    assert qos_class(pod) == "Guaranteed"
    fractional = {"cpu": "1500m", "memory": "1Gi"}
    pod = {"containers": [container(fractional, fractional)]}
    assert qos_class(pod) == "Guaranteed" and not pinned_by_static_cpu_manager(pod, pod["containers"][0])
    assert qos_class({"containers": [{"name": "x"}]}) == "BestEffort"


@pytest.mark.parametrize(
    ("ovms", "expected"),
    [
        ({"cpus": 4}, {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 4, "INFERENCE_NUM_THREADS": 4}),
        (
            {"cpus": 4, "batch": {"performance_hint": "THROUGHPUT", "nireq": 2}},
            {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 4},
        ),
        (
            {"cpus": 4, "use": "realtime"},
            {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 4},
        ),
        (
            {
                "cpus": 4,
                "batch": {"performance_hint": "THROUGHPUT", "num_streams": 3, "inference_threads": 2},
            },
            {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 3, "INFERENCE_NUM_THREADS": 2},
        ),
    ],
)
def test_streams_and_threads_follow_the_pods_cpu_limit(tmp_path: Path, ovms: dict, expected: dict) -> None:
    config = load_config({"ovms": {**ovms, "memory_mib": 4096}})
    render_serving(config, target="vsphere", model_source=SECRET, out_dir=tmp_path)
    cm = next(
        d
        for d in yaml.safe_load_all((tmp_path / "10-ovms-icelake.yaml").read_text())
        if d["kind"] == "ConfigMap"
    )
    for model in json.loads(cm["data"]["config.json"])["model_config_list"]:
        assert model["config"]["plugin_config"] == {**expected, "INFERENCE_PRECISION_HINT": "f32"}
