"""eksctl anywhere's own rules (aws/eks-anywhere), against vcsim with a second inventory shape.

The site inventory (tests/vcsim/harness.py SITE_OPTIONS): DC1 inside folder F0, its datastores,
networks, hosts and VMs in F0 sub-folders, a child resource pool with a pool inside it, templates
in nested VM folders. Settings use the names the vSphere UI shows.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vcsim import harness
from vcsim.harness import Vcsim, create_inventory, lab_settings, site_settings

from contracts.config import load_config
from infra.eksa import preflight
from infra.eksa.errors import PreflightError
from workloads.deploy import vsphere

lab, site, vcsim_binary = harness.lab, harness.site, harness.vcsim_binary
ROOT = Path(__file__).resolve().parents[1]
REAL_PROBE = preflight.ip_in_use  # before the autouse fixture replaces the default


@pytest.fixture(autouse=True)
def free_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sends traffic to the configured 10.250.0.10: the default probe says 'free'."""
    monkeypatch.setattr(preflight, "ip_in_use", lambda address: None)


def _env(sim: Vcsim, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in sim.env.items():
        monkeypatch.setenv(key, value)


def _config(tmp_path: Path, settings: dict):
    return load_config({"artifacts_dir": str(tmp_path / "artifacts"), "vsphere": settings})


def _up(config) -> tuple[dict[str, list[dict]], list[str]]:
    lines: list[str] = []
    spec = vsphere.up(config, dry_run=True, progress=lines.append).spec
    docs: dict[str, list[dict]] = {}
    for doc in yaml.safe_load_all(spec.read_text()):
        docs.setdefault(doc["kind"], []).append(doc)
    return docs, lines


def _failures(config) -> tuple[str, ...]:
    with pytest.raises(PreflightError) as info:
        vsphere.up(config, dry_run=True, progress=lambda line: None)
    assert "\n" not in str(info.value)
    return info.value.failures


def test_names_as_the_ui_shows_them_resolve_wherever_they_sit(
    site: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """govc GetResourcePoolPath / SearchTemplate (pkg/executables/govc.go): a pool and a template are
    found by name and matched by suffix within the datacenter; the datacenter by its unique name."""
    _env(site, monkeypatch)
    docs, lines = _up(_config(tmp_path, site_settings(site)))
    datacenter = docs["VSphereDatacenterConfig"][0]["spec"]
    assert datacenter["datacenter"] == "F0/DC1"
    assert datacenter["network"] == "/F0/DC1/network/F0/DC1_DVPG0"
    worker = next(
        m["spec"] for m in docs["VSphereMachineConfig"] if m["metadata"]["name"].endswith("icelake")
    )
    assert worker["datastore"] == "/F0/DC1/datastore/F0/LocalDS_0"
    assert worker["resourcePool"] == "/F0/DC1/host/F0/DC1_C0/Resources/DC1_C0_RP1/eksa"
    assert worker["template"] == "/F0/DC1/vm/F0/Templates/bottlerocket-1.34"
    # govc GetFolderPath runs `govc folder.create` for a missing folder: a note, not an error.
    assert worker["folder"] == "/F0/DC1/vm/F0/eksa"
    assert "note: VM folder /F0/DC1/vm/F0/eksa does not exist yet; eksctl anywhere creates it" in lines
    assert "preflight: all checks passed" in lines


def test_full_paths_and_pool_suffixes_resolve_as_written(
    site: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """govc GetResourcePoolPath trims a leading "*/" and matches the rest as a path suffix."""
    _env(site, monkeypatch)
    full = site_settings(
        site,
        datacenter="/F0/DC1",
        network="/F0/DC1/network/F0/DC1_DVPG0",
        datastore="/F0/DC1/datastore/F0/LocalDS_0",
        folder="/F0/DC1/vm/F0/Templates",
        resource_pool="*/Resources/DC1_C0_RP1/eksa",
        template="/F0/DC1/vm/F0/Templates/bottlerocket-1.34",
    )
    docs, _lines = _up(_config(tmp_path, full))
    worker = docs["VSphereMachineConfig"][0]["spec"]
    assert worker["resourcePool"] == "/F0/DC1/host/F0/DC1_C0/Resources/DC1_C0_RP1/eksa"
    assert worker["folder"] == "/F0/DC1/vm/F0/Templates"


def test_ambiguous_names_are_one_line_listing_the_candidates(
    site: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """govc SearchTemplate: "specified template ... maps to multiple paths within the datacenter";
    GetResourcePoolPath: "specified resource pool ... maps to multiple paths"."""
    _env(site, monkeypatch)
    settings = site_settings(site, resource_pool="eksa", template="ubuntu-1.34", os_family="ubuntu")
    assert _failures(_config(tmp_path, settings)) == (
        "vsphere.resource_pool 'eksa' matches 2 items (/F0/DC1/host/F0/DC1_C0/Resources/DC1_C0_RP1/eksa, "
        "/F0/DC1/host/F0/DC1_H0/Resources/eksa); give its full path",
        "vsphere.template 'ubuntu-1.34' matches 2 items (/F0/DC1/vm/F0/Templates/old/ubuntu-1.34, "
        "/F0/DC1/vm/F0/Templates/ubuntu-1.34); give its full path",
    )
    # A longer suffix is unique again.
    narrowed = dict(settings, template="Templates/ubuntu-1.34", resource_pool="DC1_H0/Resources/eksa")
    docs, _lines = _up(_config(tmp_path, narrowed))
    assert docs["VSphereMachineConfig"][0]["spec"]["template"] == "/F0/DC1/vm/F0/Templates/ubuntu-1.34"


def test_unknown_names_list_what_exists(site: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(site, monkeypatch)
    assert _failures(_config(tmp_path, site_settings(site, datacenter="DC9"))) == (
        "vsphere.datacenter 'DC9' not found in vCenter (found: /DC0, /F0/DC1)",
    )
    missing_parent = _config(tmp_path, site_settings(site, folder="F0/nope/eksa"))
    assert _failures(missing_parent) == (
        "vsphere.folder /F0/DC1/vm/F0/nope/eksa: its parent /F0/DC1/vm/F0/nope does not exist, and eksctl "
        "anywhere creates only the last folder (found: /F0/DC1/vm, /F0/DC1/vm/F0, /F0/DC1/vm/F0/Templates, "
        "/F0/DC1/vm/F0/Templates/old)",
    )


def test_a_pool_without_memory_limit_skips_the_memory_check(
    site: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pkg/providers/vsphere/vsphere.go updateMemoryUsageMap / validateMemoryUsage: "needMiB can be
    ignored when the resource pool memory limit is unset" (govc pool.info limit -1)."""
    _env(site, monkeypatch)
    huge = {"cpus": 8, "memory_mib": 400000, "disk_gib": 50}
    unlimited = site_settings(site, resource_pool="DC1_C0_RP1", worker_machine=huge)
    _up(_config(tmp_path, unlimited))
    limited = site_settings(site, worker_machine=huge)
    [failure] = _failures(_config(tmp_path, limited))
    assert failure.startswith(
        "resource pool /F0/DC1/host/F0/DC1_C0/Resources/DC1_C0_RP1/eksa has 262144 MiB of memory left under "
        "its limit; the machines need 832768 MiB"
    )


def test_memory_total_counts_etcd_raised_to_8192(
    site: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pkg/providers/vsphere/defaults.go setDefaultsForEtcdMachineConfig raises etcd memory below
    8192 MiB to 8192, and validateMemoryUsage counts the raised value."""
    _env(site, monkeypatch)
    # 1 cp × 2048 + 3 etcd × 8192 (not 3 × 2048) + 2 workers × 118784 = 264192 > 262144.
    small = {"cpus": 2, "memory_mib": 2048, "disk_gib": 25}
    worker = {"cpus": 8, "memory_mib": 118784, "disk_gib": 50}
    settings = site_settings(site, control_plane_machine=small, etcd_machine=small, worker_machine=worker)
    [failure] = _failures(_config(tmp_path, settings))
    assert "the machines need 264192 MiB" in failure


@pytest.mark.parametrize(("version", "accepted"), [("8.0.2", True), ("7.0.3", True), ("7.0.2", False)])
def test_vsphere_8_beside_7_0_3(
    vcsim_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, accepted: bool
) -> None:
    """EKS Anywhere's vSphere requirements: vSphere 7 (Update 3 and later) or 8."""
    sim = Vcsim.start(vcsim_binary, version=version)
    try:
        create_inventory(sim)
        _env(sim, monkeypatch)
        config = _config(tmp_path, lab_settings(sim))
        if accepted:
            _up(config)
        else:
            assert _failures(config) == (
                f"vCenter 127.0.0.1 runs {version}; EKS Anywhere needs vSphere 7.0.3 or later "
                "(7.0 Update 3, 8.x)",
            )
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("pod_cidr", "problem"),
    [
        ("10.244.0.0/25", "vsphere.pod_cidr 10.244.0.0/25 is no larger than one node's /24 pod range"),
        ("10.244.0.0/24", "vsphere.pod_cidr 10.244.0.0/24 is no larger than one node's /24 pod range"),
        ("64.0.0.0/7", "vsphere.pod_cidr 64.0.0.0/7: eksctl anywhere allows at most a /8"),
        ("10.244.0.0/23", None),
        ("64.0.0.0/8", None),
    ],
)
def test_pod_cidr_mask_against_the_node_mask(
    lab: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pod_cidr: str, problem: str | None
) -> None:
    """pkg/api/v1alpha1/cluster.go validateNetworking: "the size of pod subnet with mask %d is smaller
    than or equal to the size of node subnet with mask %d" (node mask DefaultNodeCidrMaskSize 24),
    and the difference may be at most podSubnetNodeMaskMaxDiff (16)."""
    _env(lab, monkeypatch)
    config = _config(tmp_path, lab_settings(lab, pod_cidr=pod_cidr))
    if problem is None:
        _up(config)
    else:
        assert any(f.startswith(problem) for f in _failures(config))


PROBE_IN_NAMESPACE = """
import socket, sys
from infra.eksa.preflight import ip_in_use
print("refused:", ip_in_use("10.250.0.10"))
with socket.socket() as listener:
    listener.bind(("10.250.0.10", 80))
    listener.listen()
    print("accepted:", ip_in_use("10.250.0.10"))
print("nobody:", ip_in_use("10.250.0.11"))
"""


def test_ip_in_use_counts_accepted_and_refused_connections_in_a_private_namespace() -> None:
    """pkg/networkutils/networkutils.go IsIPInUse: dial port 80 for 500 ms; "If we establish a
    connection or we receive a response assume that address is in use" (err == nil, ECONNREFUSED,
    ECONNRESET). Runs in a network namespace of its own: 10.250.0.10 exists only on its loopback."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -rn (user and network namespaces)")
    setup = 'ip link set lo up && ip addr add 10.250.0.10/32 dev lo && exec "$0" -c "$1"'
    result = subprocess.run(
        [unshare, "-rn", "sh", "-c", setup, sys.executable, PROBE_IN_NAMESPACE],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refused: a host there refuses TCP connections on port 80",
        "accepted: it accepts TCP connections on port 80",
        "nobody: None",
    ]


@pytest.mark.parametrize(
    ("raised", "verdict"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), "a host there resets TCP connections on port 80"),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
            "a host there refuses TCP connections on port 80",
        ),
        (TimeoutError("timed out"), None),
        (OSError(errno.EHOSTUNREACH, "no route"), None),
    ],
)
def test_ip_in_use_reads_the_dial_error_as_is_ip_in_use_does(
    monkeypatch: pytest.MonkeyPatch, raised: OSError, verdict: str | None
) -> None:
    """IsIPInUse: ECONNRESET counts as in use like ECONNREFUSED; a timeout or no route is free."""
    dialed: list[tuple] = []

    def dial(address, timeout):
        dialed.append((address, timeout))
        raise raised

    monkeypatch.setattr(preflight.socket, "create_connection", dial)
    assert REAL_PROBE("192.0.2.7") == verdict
    assert dialed == [(("192.0.2.7", 80), 0.5)]
