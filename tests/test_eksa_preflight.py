"""Preflight against a real vCenter simulator: every failure has its message and nothing is written."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from vcsim import harness
from vcsim.harness import Vcsim, create_inventory, lab_settings

from contracts.config import load_config
from infra.eksa import preflight
from infra.eksa.client import VsphereClient
from infra.eksa.errors import PreflightError, VsphereLoginError
from workloads.deploy import vsphere

# The simulator fixtures: a binary built once per session, a lab simulator per module.
lab, vcsim_binary, vsphere_env = harness.lab, harness.vcsim_binary, harness.vsphere_env


@pytest.fixture(autouse=True)
def free_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default endpoint probe says 'free': no test sends traffic to the lab's 10.250.0.10."""
    monkeypatch.setattr(preflight, "ip_in_use", lambda address: None)


def _config(sim: Vcsim, tmp_path: Path, *, kubernetes: dict | None = None, **vsphere_overrides):
    return load_config(
        {
            "artifacts_dir": str(tmp_path / "artifacts"),
            "kubernetes": kubernetes or {},
            "vsphere": lab_settings(sim, **vsphere_overrides),
        }
    )


def _failures(config, tmp_path: Path, **up_options) -> tuple[str, ...]:
    lines: list[str] = []
    with pytest.raises(PreflightError) as info:
        vsphere.up(config, dry_run=True, progress=lines.append, **up_options)
    assert not (tmp_path / "artifacts" / "deploy").exists(), "a failed preflight must write nothing"
    assert [f"preflight: {f}" for f in info.value.failures] == [
        ln for ln in lines if ln.startswith("preflight:")
    ]
    assert "\n" not in str(info.value)
    return info.value.failures


def test_the_lab_passes_and_dry_run_writes_only_the_spec(vsphere_env: Vcsim, tmp_path: Path) -> None:
    lines: list[str] = []
    result = vsphere.up(_config(vsphere_env, tmp_path), dry_run=True, progress=lines.append)
    assert result.spec == tmp_path / "artifacts/deploy/vsphere/bone-marrow-onprem.yaml"
    assert [p.name for p in result.spec.parent.iterdir()] == [result.spec.name]
    assert "preflight: all checks passed" in lines
    assert lines[-1] == f"dry run; would run: eksctl anywhere create cluster -f {result.spec}"
    assert any(
        "DC0_C0_H0: Intel(R) Xeon(R) Platinum 8380" in ln and "icelake, avx512_vnni" in ln for ln in lines
    )
    assert vsphere_env.password not in "\n".join(lines) + result.spec.read_text()


def test_bad_password(vsphere_env: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EKSA_VSPHERE_PASSWORD", "not-the-password")
    with pytest.raises(
        VsphereLoginError, match=r"rejected the login of 'eksa@vsphere.local'; check EKSA_VSPHERE"
    ):
        vsphere.up(_config(vsphere_env, tmp_path), dry_run=True, progress=lambda line: None)
    assert not (tmp_path / "artifacts").exists()


def test_missing_datastore(vsphere_env: Vcsim, tmp_path: Path) -> None:
    failures = _failures(_config(vsphere_env, tmp_path, datastore="NoSuchDS"), tmp_path)
    assert failures == (
        "vsphere.datastore 'NoSuchDS' not found in vCenter (found: /DC0/datastore/LocalDS_0)",
    )


def test_missing_pool_and_network_outside_the_network_folder(vsphere_env: Vcsim, tmp_path: Path) -> None:
    config = _config(
        vsphere_env, tmp_path, folder="deep/nope", resource_pool="DC0_C0/Resources/x", network="/DC0/vm/eksa"
    )
    failures = _failures(config, tmp_path)
    assert "vsphere.network /DC0/vm/eksa must be under /DC0/network/" in failures
    # govc GetFolderPath creates only the last folder: a missing parent is an error.
    assert any(
        f.startswith("vsphere.folder /DC0/vm/deep/nope: its parent /DC0/vm/deep does not exist")
        for f in failures
    )
    assert any(
        f.startswith(
            "vsphere.resource_pool 'DC0_C0/Resources/x' not found in vCenter (found: /DC0/host/DC0_C0"
        )
        for f in failures
    )


def test_untagged_template(vsphere_env: Vcsim, tmp_path: Path) -> None:
    failures = _failures(_config(vsphere_env, tmp_path, template="Templates/untagged"), tmp_path)
    assert failures == (
        "template /DC0/vm/Templates/untagged lacks tag os:bottlerocket (has: no tags); attach it: "
        "govc tags.attach -c os os:bottlerocket '/DC0/vm/Templates/untagged'",
        "template /DC0/vm/Templates/untagged lacks an eksdRelease tag for Kubernetes 1.34 "
        "(eksdRelease:kubernetes-1-34-eks-13); import the template with eksctl anywhere's tags or attach it "
        "with govc tags.attach",
    )


def test_wrong_tag_release(vsphere_env: Vcsim, tmp_path: Path) -> None:
    failures = _failures(_config(vsphere_env, tmp_path, template="Templates/bottlerocket-1.33"), tmp_path)
    assert len(failures) == 1
    assert failures[0].startswith(
        "template /DC0/vm/Templates/bottlerocket-1.33 is tagged eksdRelease:kubernetes-1-33-eks-20, "
        "not eksdRelease:kubernetes-1-34-eks-13; use a template built for Kubernetes 1.34"
    )
    # Without a pinned release, any 1.34 release is accepted, and a 1.33 one is still refused.
    unpinned = _config(vsphere_env, tmp_path, template="Templates/bottlerocket-1.33", eksd_releases={})
    assert "not eksdRelease:kubernetes-1-34-eks-N" in _failures(unpinned, tmp_path)[0]
    older = _config(
        vsphere_env,
        tmp_path,
        template="Templates/bottlerocket-1.33",
        eksd_releases={},
        kubernetes={"version": "1.33"},
    )
    vsphere.up(older, dry_run=True, progress=lambda line: None)


def test_template_of_another_os_family(vsphere_env: Vcsim, tmp_path: Path) -> None:
    failures = _failures(_config(vsphere_env, tmp_path, os_family="ubuntu"), tmp_path)
    assert [f.split(" (")[0] for f in failures] == [
        "template /DC0/vm/Templates/bottlerocket-1.34 lacks tag os:ubuntu"
    ]


def test_vcenter_6_is_refused(vcsim_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = Vcsim.start(vcsim_binary, version="6.7.0")
    try:
        create_inventory(old)
        for key, value in old.env.items():
            monkeypatch.setenv(key, value)
        failures = _failures(_config(old, tmp_path), tmp_path)
    finally:
        old.stop()
    assert failures == (
        "vCenter 127.0.0.1 runs 6.7.0; EKS Anywhere needs vSphere 7.0.3 or later (7.0 Update 3, 8.x)",
    )


def test_bad_control_plane_endpoint(
    vsphere_env: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = _failures(_config(vsphere_env, tmp_path, control_plane_endpoint="192.168.10.10"), tmp_path)
    assert inside == (
        "control plane endpoint 192.168.10.10 lies inside vsphere.pod_cidr 192.168.0.0/16; "
        "pick an address outside the pod and service ranges",
    )
    asked: list[str] = []

    def refused(address: str) -> str:
        asked.append(address)
        return "a host there refuses TCP connections on port 80"

    taken = _failures(_config(vsphere_env, tmp_path), tmp_path, probe=refused)
    assert asked == ["10.250.0.10"]
    assert taken == (
        "control plane endpoint 10.250.0.10 is already in use (a host there refuses TCP connections on "
        "port 80); pick a free IP excluded from DHCP",
    )


def test_even_counts_are_all_reported(vsphere_env: Vcsim, tmp_path: Path) -> None:
    """pkg/api/v1alpha1/cluster.go validateEtcdReplicas ("external etcd count cannot be an even
    number") and validateControlPlaneReplicas (even control planes only with stacked etcd refused)."""
    failures = _failures(_config(vsphere_env, tmp_path, control_plane_count=2, etcd_count=4), tmp_path)
    assert failures == ("vsphere.etcd_count is 4; use an odd count (3, 5) or 0 for stacked etcd",)
    stacked = _failures(_config(vsphere_env, tmp_path, control_plane_count=2, etcd_count=0), tmp_path)
    assert stacked == (
        "vsphere.control_plane_count is 2 with stacked etcd (etcd_count 0); use an odd count (1, 3, 5) "
        "or external etcd",
    )


def test_even_control_plane_with_external_etcd_is_accepted(vsphere_env: Vcsim, tmp_path: Path) -> None:
    """pkg/api/v1alpha1/cluster.go validateControlPlaneReplicas: "For unstacked/external etcd,
    controlplane replicas can be any number including even numbers" (`generate clusterconfig`
    writes 2 control planes + 3 etcd)."""
    config = _config(vsphere_env, tmp_path, control_plane_count=2, etcd_count=3)
    vsphere.up(config, dry_run=True, progress=lambda line: None)


def test_cluster_name_rules(vsphere_env: Vcsim, tmp_path: Path) -> None:
    failures = _failures(_config(vsphere_env, tmp_path, cluster_name="b" * 36), tmp_path)
    assert failures == (f"cluster name {'b' * 36!r} has 36 characters; EKS Anywhere allows at most 35",)
    failures = _failures(_config(vsphere_env, tmp_path, cluster_name="Bone_Marrow"), tmp_path)
    assert failures[0].startswith("cluster name 'Bone_Marrow' must be lower-case letters")


def test_capacity_of_datastore_and_resource_pool(vsphere_env: Vcsim, tmp_path: Path) -> None:
    big = {"cpus": 8, "memory_mib": 200000, "disk_gib": 2000}
    failures = _failures(_config(vsphere_env, tmp_path, worker_machine=big), tmp_path)
    assert failures[0].startswith(
        "datastore /DC0/datastore/LocalDS_0 has 2047 GiB free; the machines need 4100 GiB"
    )
    assert failures[1].startswith(
        "resource pool /DC0/host/DC0_C0/Resources/eksa has 262144 MiB of memory left under its limit; "
        "the machines need 432768 MiB"
    )


def test_pool_cpu_generation_must_match_the_hosts(vsphere_env: Vcsim, tmp_path: Path) -> None:
    pools = {"c5like": {"instance_type": "vsphere-vm", "cpu_generation": "cascadelake"}}
    failures = _failures(_config(vsphere_env, tmp_path, pools=pools), tmp_path)
    assert failures == (
        "vsphere.pools.c5like is labelled cpu-generation=cascadelake but /DC0/host/DC0_C0 has icelake hosts; "
        "use a resource pool on such hosts",
    )


def test_missing_privileges(vsphere_env: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = VsphereClient.has_privilege_on_entities

    def deny_allocate(self, entities, privileges):
        answers = real(self, entities, privileges)  # the real call; vcsim grants everything
        for answer in answers:
            for item in answer.privAvailability:
                if item.privId == "Datastore.AllocateSpace":
                    item.isGranted = False
        return answers

    monkeypatch.setattr(VsphereClient, "has_privilege_on_entities", deny_allocate)
    failures = _failures(_config(vsphere_env, tmp_path), tmp_path)
    assert failures == (
        "'eksa@vsphere.local' lacks Datastore.AllocateSpace on /DC0/datastore/LocalDS_0; "
        "grant the EKS Anywhere vSphere role there",
    )


def test_unset_settings(vsphere_env: Vcsim, tmp_path: Path) -> None:
    config = _config(vsphere_env, tmp_path, template="", control_plane_endpoint="")
    failures = _failures(config, tmp_path)
    assert "vsphere.template is not set" in failures
    assert (
        "vsphere.control_plane_endpoint is not set: choose a free static IP on the node network" in failures
    )


def test_mixed_os_families_are_refused() -> None:
    values = SimpleNamespace(
        machines=(SimpleNamespace(os_family="ubuntu"), SimpleNamespace(os_family="bottlerocket"))
    )
    failures: list[str] = []
    preflight._check_os_family(values, failures)
    assert failures == ["machine configs mix OS families (bottlerocket, ubuntu); EKS Anywhere needs one"]
