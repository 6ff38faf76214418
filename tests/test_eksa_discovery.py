"""vSphere discovery and certificate pinning against a real vCenter simulator (vcsim)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from vcsim import harness
from vcsim.harness import TEMPLATES, Vcsim

from infra.eksa.client import Credentials, VsphereClient, credentials_from_env, split_server
from infra.eksa.cpu import describe, from_model_name
from infra.eksa.errors import VsphereLoginError, VsphereTlsError, VsphereUnreachableError
from infra.eksa.inventory import discover
from infra.eksa.tls import normalize_thumbprint

# The simulator fixtures: a binary built once per session, a lab simulator per module.
lab, vcsim_binary = harness.lab, harness.vcsim_binary


def _client(sim: Vcsim, **overrides) -> VsphereClient:
    settings = {
        "server": sim.server,
        "credentials": Credentials(sim.username, sim.password),
        "thumbprint": sim.thumbprint,
    }
    settings.update(overrides)
    return VsphereClient(**settings)


@pytest.fixture(scope="module")
def inventory(lab: Vcsim):
    with _client(lab) as client:
        return discover(client)


def test_discovery_returns_full_inventory_paths(inventory) -> None:
    assert inventory.version == "7.0.3"
    assert inventory.datacenters == ("/DC0",)
    assert "/DC0/network/VM Network" in [n.path for n in inventory.networks]
    assert ("/DC0/network/DC0_DVPG0", "DistributedVirtualPortgroup") in [
        (n.path, n.kind) for n in inventory.networks
    ]
    assert inventory.folders == ("/DC0/vm", "/DC0/vm/Templates", "/DC0/vm/eksa")
    pool = inventory.resource_pool("/DC0/host/DC0_C0/Resources/eksa")
    assert pool is not None and pool.cluster == "/DC0/host/DC0_C0" and pool.memory_limit_mib == 262144
    datastore = inventory.datastore("/DC0/datastore/LocalDS_0")
    assert datastore is not None and datastore.capacity_bytes == 4096 * 1024**3
    assert 2047 * 1024**3 < datastore.free_bytes < 2048 * 1024**3  # the template clones took a little
    cluster = next(c for c in inventory.clusters if c.path == "/DC0/host/DC0_C0")
    assert cluster.is_cluster and len(cluster.hosts) == 3
    assert cluster.hosts[0].path == "/DC0/host/DC0_C0/DC0_C0_H0"


def test_hosts_report_ice_lake_and_vnni_from_cpuid(inventory) -> None:
    hosts = [h for c in inventory.clusters for h in c.hosts]
    assert hosts and all(h.is_icelake and h.avx512_vnni for h in hosts)
    assert "Platinum 8380" in hosts[0].cpu_model


def test_templates_carry_their_tags(inventory) -> None:
    templates = {t.path.rsplit("/", 1)[1]: t for t in inventory.templates}
    assert set(templates) == set(TEMPLATES)
    assert templates["bottlerocket-1.34"].path == "/DC0/vm/Templates/bottlerocket-1.34"
    assert set(templates["bottlerocket-1.34"].tag_names) == {
        "os:bottlerocket",
        "eksdRelease:kubernetes-1-34-eks-13",
    }
    assert {t.category for t in templates["ubuntu-1.34"].tags} == {"os", "eksdRelease"}
    assert templates["untagged"].tags == ()


def test_pinning_accepts_the_print_in_any_case_and_colon_form(lab: Vcsim) -> None:
    pin = normalize_thumbprint(lab.thumbprint).lower()  # aa:bb:… form
    with _client(lab, thumbprint=pin) as client:
        assert client.version == "7.0.3"


def test_pinning_rejects_a_wrong_print_before_logging_in(lab: Vcsim) -> None:
    wrong = "00" * 20
    with pytest.raises(VsphereTlsError, match=r"presents certificate thumbprint .* not the configured"):
        _client(lab, thumbprint=wrong).connect()


def test_missing_thumbprint_needs_the_explicit_insecure_flag(lab: Vcsim) -> None:
    with pytest.raises(VsphereTlsError, match=r"vsphere.thumbprint is empty"):
        _client(lab, thumbprint="").connect()
    with _client(lab, thumbprint="", insecure=True) as client:
        assert client.version == "7.0.3"


def test_bad_password_is_a_login_error(lab: Vcsim) -> None:
    with pytest.raises(VsphereLoginError, match=r"rejected the login of 'eksa@vsphere.local'") as info:
        _client(lab, credentials=Credentials(lab.username, "wrong")).connect()
    assert "wrong" not in str(info.value) and lab.password not in str(info.value)


def test_unreachable_host_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects
    client = VsphereClient(
        server=f"127.0.0.1:{port}", credentials=Credentials("u", "p"), thumbprint="ab" * 20
    )
    with pytest.raises(VsphereUnreachableError, match=f"cannot reach vCenter at 127.0.0.1:{port}"):
        client.connect()


def test_credentials_come_only_from_the_eksctl_variables() -> None:
    with pytest.raises(VsphereLoginError, match=r"set EKSA_VSPHERE_USERNAME and EKSA_VSPHERE_PASSWORD"):
        credentials_from_env({"EKSA_VSPHERE_USERNAME": "u"})
    creds = credentials_from_env({"EKSA_VSPHERE_USERNAME": "u", "EKSA_VSPHERE_PASSWORD": "hidden"})
    assert "hidden" not in repr(creds)


def test_server_forms() -> None:
    assert split_server("vc.example.com") == ("vc.example.com", 443)
    assert split_server("10.0.0.5:8443") == ("10.0.0.5", 8443)
    assert split_server("[fd00::5]:443") == ("fd00::5", 443)


@pytest.mark.parametrize(
    ("model", "generation", "vnni"),
    [
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "icelake", True),  # c6i
        ("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", "cascadelake", True),  # c5
        ("Intel(R) Xeon(R) Gold 6354 CPU @ 3.00GHz", "icelake", True),
        ("Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz", "cooperlake", True),
        ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "skylake", False),
        ("AMD EPYC 7763 64-Core Processor", None, None),
    ],
)
def test_cpu_generation_from_the_model_name(model: str, generation: str | None, vnni: bool | None) -> None:
    info = from_model_name(model)
    assert (info.generation, info.avx512_vnni) == (generation, vnni)


def test_cpuid_wins_over_the_model_name() -> None:
    def leaf(level: int, eax: int = 0, ecx: int = 0) -> SimpleNamespace:
        return SimpleNamespace(level=level, eax=format(eax, "032b"), ecx=format(ecx, "032b"))

    cascade = [leaf(0, 0x16), leaf(1, 0x00050657), leaf(7, ecx=1 << 11)]  # model 0x55 stepping 7
    assert describe(model="Intel(R) Xeon(R) Platinum 8380 CPU", cpuid=cascade).generation == "cascadelake"
    no_vnni = [leaf(0, 0x16), leaf(1, 0x000606A6), leaf(7, ecx=0)]
    assert describe(model="", cpuid=no_vnni).avx512_vnni is False
