"""Rendered serving manifests: schema-valid for the pinned Kubernetes version, and safe by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from contracts.config import load_config
from contracts.errors import DeployError
from workloads.k8s.bench_job import BenchJobSpec, PvcArtifacts, render_bench_job
from workloads.k8s.model_source import BakedModelSource, S3ModelSource, SecretS3ModelSource
from workloads.k8s.render import parse_and_validate, render_serving
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
    "eks-hpa": ("aws", POD_IDENTITY, {"ovms": {"hpa_max_replicas": 3, "replicas": 2}}),
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
def test_http_probes_never_tcp(tmp_path: Path, case: str) -> None:
    documents, _config = _render(tmp_path, case)
    for deployment in _kind(documents, "Deployment"):
        (ovms,) = deployment["spec"]["template"]["spec"]["containers"]
        assert ovms["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert ovms["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert ovms["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(ovms[probe]) & {"tcpSocket", "exec", "grpc"} == set()


def test_ovms_settings_from_config(tmp_path: Path) -> None:
    documents, config = _render(tmp_path, "eks-pod-identity")
    (config_map,) = _kind(documents, "ConfigMap")
    server = json.loads(config_map["data"]["config.json"])
    assert server["monitoring"] == {"metrics": {"enable": True}}
    names = [m["config"]["name"] for m in server["model_config_list"]]
    assert names == [f"bone-marrow-{p}" for p in config.serving.precisions]
    for model in server["model_config_list"]:
        assert model["config"]["plugin_config"]["PERFORMANCE_HINT"] == "THROUGHPUT"
    args = _kind(documents, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log_level=INFO" in args and "--file_system_poll_wait_seconds=0" in args
    assert not any(a.startswith("--metrics_enable") for a in args), (
        "OVMS refuses CLI and config metrics together"
    )

    realtime = load_config(
        {"ovms": {"use": "realtime", "realtime": {"performance_hint": "LATENCY", "nireq": 2}}}
    )
    render_serving(realtime, target="aws", model_source=POD_IDENTITY, out_dir=tmp_path / "rt")
    text = (tmp_path / "rt" / "00-namespace.yaml").read_text()
    cm = next(d for d in yaml.safe_load_all(text) if d["kind"] == "ConfigMap")
    model = json.loads(cm["data"]["config.json"])["model_config_list"][0]["config"]
    assert model["plugin_config"] == {"PERFORMANCE_HINT": "LATENCY"} and model["nireq"] == 2


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
        pool="c6i", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/bm/bench:0.1.0", artifacts=IRSA
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
    assert upload["args"][:4] == ["s3", "sync", "/work/artifacts/bench", "s3://bm-models/bench-results"]
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
