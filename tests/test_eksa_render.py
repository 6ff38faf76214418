"""EKS Anywhere spec rendering: jinja2 templates, parsed back, validated against the CRD schemas."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jinja2
import pytest
import yaml
from vcsim import harness
from vcsim.harness import Vcsim, lab_settings

from contracts.config import load_config
from infra.eksa import crds
from infra.eksa.errors import SpecValidationError
from infra.eksa.render import _ENV, render_documents, validate_stream, write_spec
from infra.eksa.spec import build_values
from workloads.deploy import vsphere

# The simulator fixtures: a binary built once per session, a lab simulator per module.
lab, vcsim_binary, vsphere_env = harness.lab, harness.vcsim_binary, harness.vsphere_env


def _config(sim: Vcsim, tmp_path: Path, **overrides):
    return load_config({"artifacts_dir": str(tmp_path), "vsphere": lab_settings(sim, **overrides)})


def _by_kind(text: str) -> dict[str, list[dict]]:
    docs: dict[str, list[dict]] = {}
    for doc in yaml.safe_load_all(text):
        docs.setdefault(doc["kind"], []).append(doc)
    return docs


def test_full_render_from_the_simulator_validates_against_the_crds(
    vsphere_env: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.eksa import preflight

    monkeypatch.setattr(preflight, "ip_in_use", lambda address: None)
    config = _config(vsphere_env, tmp_path)
    spec = vsphere.up(config, dry_run=True, progress=lambda line: None).spec
    text = spec.read_text()
    # Cluster, datacenter, cp + etcd + serving worker + bench worker machine configs
    assert len(validate_stream(text)) == 6
    docs = _by_kind(text)
    cluster = docs["Cluster"][0]["spec"]
    assert cluster["kubernetesVersion"] == "1.34"
    assert cluster["controlPlaneConfiguration"]["endpoint"]["host"] == "10.250.0.10"
    assert cluster["externalEtcdConfiguration"]["count"] == 3
    group, bench = cluster["workerNodeGroupConfigurations"]
    pool = config.vsphere.pools["icelake"]
    assert group["labels"] == config.kubernetes.pool_labels("icelake", pool)
    assert group["count"] == pool.desired_size
    assert "taints" not in group
    assert bench["name"] == "bench" and bench["machineGroupRef"]["name"] == "bone-marrow-onprem-bench"
    assert bench["labels"] == config.kubernetes.bench_pool_labels(config.vsphere.bench_pool)
    assert bench["count"] == 0 and "kubeletConfiguration" not in bench
    datacenter = docs["VSphereDatacenterConfig"][0]["spec"]
    assert datacenter == {
        "datacenter": "DC0",
        "network": "/DC0/network/VM Network",
        "server": vsphere_env.server,
        "thumbprint": ":".join(vsphere_env.thumbprint[i : i + 2] for i in range(0, 40, 2)),
        "insecure": False,
    }
    machines = {m["metadata"]["name"]: m["spec"] for m in docs["VSphereMachineConfig"]}
    assert set(machines) == {
        "bone-marrow-onprem-cp",
        "bone-marrow-onprem-etcd",
        "bone-marrow-onprem-icelake",
        "bone-marrow-onprem-bench",
    }
    assert (
        machines["bone-marrow-onprem-bench"]["numCPUs"],
        machines["bone-marrow-onprem-bench"]["memoryMiB"],
    ) == (
        config.vsphere.bench_machine.cpus,
        config.vsphere.bench_machine.memory_mib,
    )
    worker = machines["bone-marrow-onprem-icelake"]
    assert worker["template"] == "/DC0/vm/Templates/bottlerocket-1.34"
    assert worker["resourcePool"] == "/DC0/host/DC0_C0/Resources/eksa"
    assert worker["folder"] == "/DC0/vm/eksa"
    assert worker["datastore"] == "/DC0/datastore/LocalDS_0"
    assert (worker["numCPUs"], worker["memoryMiB"], worker["diskGiB"]) == (8, 16384, 50)
    assert {m["osFamily"] for m in machines.values()} == {"bottlerocket"}
    assert worker["users"] == [{"name": "ec2-user", "sshAuthorizedKeys": [""]}]


def test_stacked_etcd_and_awkward_names_render_safely(tmp_path: Path) -> None:
    config = load_config(
        {
            "vsphere": {
                "server": "vc.example.com",
                "insecure": True,
                "datacenter": "DC: one",
                "network": 'VM Network "lab" #2',
                "datastore": "ds",
                "resource_pool": "c/Resources",
                "template": "ubuntu",
                "os_family": "ubuntu",
                "etcd_count": 0,
                "control_plane_endpoint": "10.0.0.9",
                "ssh_authorized_key": "ssh-ed25519 AAAA user@host",
            }
        }
    )
    docs = _by_kind(write_spec(build_values(config), tmp_path).read_text())
    assert "externalEtcdConfiguration" not in docs["Cluster"][0]["spec"]
    assert docs["VSphereDatacenterConfig"][0]["spec"]["network"] == '/DC: one/network/VM Network "lab" #2'
    assert docs["VSphereDatacenterConfig"][0]["spec"]["insecure"] is True
    users = docs["VSphereMachineConfig"][0]["spec"]["users"]
    assert users == [{"name": "capv", "sshAuthorizedKeys": ["ssh-ed25519 AAAA user@host"]}]


def test_validation_names_the_field(tmp_path: Path) -> None:
    text = render_documents(build_values(load_config({"vsphere": {"control_plane_endpoint": "10.0.0.9"}})))
    with pytest.raises(
        SpecValidationError, match=r"^Cluster bone-marrow-onprem: spec.controlPlaneConfiguration.count"
    ):
        validate_stream(text.replace("count: 3", "count: three", 1))
    with pytest.raises(
        SpecValidationError,
        match=r"VSphereMachineConfig bone-marrow-onprem-cp: spec: .*\('numCpus' was unexpected\)",
    ):
        validate_stream(text.replace("numCPUs", "numCpus", 1))
    with pytest.raises(
        SpecValidationError, match=r"spec.workerNodeGroupConfigurations.0.labels.*not of type"
    ):
        validate_stream(text.replace('labels: {"', 'labels: ["', 1).replace('"icelake"}', '"icelake"]', 1))


def test_an_invalid_render_writes_nothing(tmp_path: Path) -> None:
    values = build_values(load_config({"vsphere": {"control_plane_endpoint": "10.0.0.9"}}))
    broken = dataclasses.replace(values, control_plane_count="three")
    with pytest.raises(SpecValidationError, match=r"spec.controlPlaneConfiguration.count"):
        write_spec(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_templates_refuse_undefined_values() -> None:
    with pytest.raises(jinja2.UndefinedError):
        _ENV.get_template("vsphere-datacenter.yaml.j2").render(api_version="x")


def test_missing_crds_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(crds.CRDS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(
        SpecValidationError, match=r"EKS Anywhere CRD schemas not found in .*nowhere; put the CRD"
    ):
        crds.crds_dir()


def test_the_vendored_crds_are_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crds.CRDS_ENV, raising=False)
    directory = crds.crds_dir()
    assert directory == Path(__file__).resolve().parents[1] / "infra" / "eksa" / "crds"
    kinds = {kind for _version, kind in crds.load_schemas(directory)}
    assert {"Cluster", "VSphereDatacenterConfig", "VSphereMachineConfig"} <= kinds


@pytest.mark.skipif(not crds.SHARED_CRDS.is_dir(), reason="no ../shared/eksa-crds next to this clone")
def test_the_vendored_crds_equal_the_shared_ones() -> None:
    shared = {p.name: p.read_bytes() for p in crds.SHARED_CRDS.glob("*.yaml")}
    vendored = {p.name: p.read_bytes() for p in crds.DEFAULT_CRDS.glob("*.yaml")}
    assert vendored == shared, "refresh infra/eksa/crds from ../shared/eksa-crds"


def _cluster_spec(**vsphere) -> dict:
    config = load_config({"vsphere": {"control_plane_endpoint": "10.0.0.9", **vsphere}})
    return _by_kind(render_documents(build_values(config)))["Cluster"][0]["spec"]


def test_bench_worker_group_is_tainted_and_scaled_to_zero() -> None:
    """pkg/api/v1alpha1/cluster.go validateWorkerNodeGroups / validateAutoscalingConfig: count 0 is
    allowed ("worker node count must be zero or greater"), taints are per group, and at least one
    group must stay free of NoSchedule/NoExecute taints (the serving groups are)."""
    config = load_config({"vsphere": {"control_plane_endpoint": "10.0.0.9"}})
    text = render_documents(build_values(config))
    validate_stream(text)  # the CRD schema takes taints on worker node groups
    groups = {g["name"]: g for g in _by_kind(text)["Cluster"][0]["spec"]["workerNodeGroupConfigurations"]}
    taint = config.kubernetes.bench_taint()
    assert groups["bench"]["taints"] == [{"key": taint.key, "value": taint.value, "effect": "NoSchedule"}]
    assert groups["bench"]["count"] == config.vsphere.bench_pool.desired_size == 0
    untainted = [name for name, group in groups.items() if not group.get("taints")]
    assert untainted == ["icelake"]
    scaled = _cluster_spec(
        bench_pool={"instance_type": "vsphere-vm", "cpu_generation": "icelake", "desired_size": 1}
    )
    assert [g["count"] for g in scaled["workerNodeGroupConfigurations"] if g["name"] == "bench"] == [1]


def test_serving_groups_run_the_static_cpu_manager() -> None:
    """The Cluster CRD's workerNodeGroupConfigurations[].kubeletConfiguration (preserve-unknown-fields),
    checked by pkg/api/v1alpha1/cluster.go validateWorkerNodeKubeletConfiguration (strict
    KubeletConfiguration, `kind` required per docs/.../optional/kubeletconfig.md). kubelet's static
    policy needs reserved CPU, so kubeReserved.cpu is vsphere.node_reserved's."""
    pools = {
        "icelake": {"instance_type": "vsphere-vm", "cpu_generation": "icelake"},
        "spr": {"instance_type": "vsphere-vm", "cpu_generation": "sapphirerapids"},
    }
    groups = {g["name"]: g for g in _cluster_spec(pools=pools)["workerNodeGroupConfigurations"]}
    expected = {"kind": "KubeletConfiguration", "cpuManagerPolicy": "static", "kubeReserved": {"cpu": "100m"}}
    assert groups["icelake"]["kubeletConfiguration"] == expected
    assert groups["spr"]["kubeletConfiguration"] == expected
    assert "kubeletConfiguration" not in groups["bench"]


def test_etcd_memory_is_raised_to_8192_as_eksctl_does(tmp_path: Path) -> None:
    """pkg/providers/vsphere/defaults.go setDefaultsForEtcdMachineConfig: etcd machines below
    8192 MiB are raised to 8192; the control plane keeps what it was given."""
    small = {"cpus": 2, "memory_mib": 4096, "disk_gib": 25}
    config = load_config(
        {
            "vsphere": {
                "control_plane_endpoint": "10.0.0.9",
                "etcd_machine": small,
                "control_plane_machine": small,
            }
        }
    )
    values = build_values(config)
    machines = {
        m["metadata"]["name"]: m["spec"] for m in _by_kind(render_documents(values))["VSphereMachineConfig"]
    }
    assert machines["bone-marrow-onprem-etcd"]["memoryMiB"] == 8192
    assert machines["bone-marrow-onprem-cp"]["memoryMiB"] == 4096
    counts = {machine.name: (machine.memory_mib, count) for machine, count in values.machine_counts()}
    assert counts["bone-marrow-onprem-etcd"] == (8192, 3)
