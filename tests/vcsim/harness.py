"""Build and run vcsim (main.go next to this file) and create the inventory the EKS Anywhere tests use.

The binary is built once per source hash under build/vcsim/ (about 15 s the first time) from
Debian's golang-go and golang-github-vmware-govmomi-dev (GOPATH mode, no download).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

SOURCE = Path(__file__).with_name("main.go")
REPO = Path(__file__).resolve().parents[2]
GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src" / "github.com" / "vmware" / "govmomi" / "simulator"
INSTALL = "apt-get install -y golang-go golang-github-vmware-govmomi-dev"

USER, PASSWORD = "eksa@vsphere.local", "s3cret-pass"
RELEASE_131 = "kubernetes-1-34-eks-13"
# name → tags (category, tag name) of the templates under /DC0/vm/Templates
TEMPLATES = {
    "bottlerocket-1.34": (("os", "os:bottlerocket"), ("eksdRelease", f"eksdRelease:{RELEASE_131}")),
    "bottlerocket-1.33": (("os", "os:bottlerocket"), ("eksdRelease", "eksdRelease:kubernetes-1-33-eks-20")),
    "ubuntu-1.34": (("os", "os:ubuntu"), ("eksdRelease", f"eksdRelease:{RELEASE_131}")),
    "untagged": (),
}
POOL_LIMIT_MIB = 262144
# The second inventory shape (main.go -datacenters=2 -folders=1 -pools=1): DC1 sits in folder F0 and
# its items in F0 sub-folders; what create_site_inventory adds: templates (path under /F0/DC1/vm) and
# a pool named eksa twice (under the child pool DC1_C0_RP1 of the cluster, and on the standalone host).
SITE_OPTIONS = ("-datacenters=2", "-folders=1", "-pools=1")
SITE_TEMPLATES = {
    "F0/Templates/bottlerocket-1.34": TEMPLATES["bottlerocket-1.34"],
    "F0/Templates/ubuntu-1.34": TEMPLATES["ubuntu-1.34"],
    "F0/Templates/old/ubuntu-1.34": TEMPLATES["ubuntu-1.34"],
}


def build_vcsim() -> Path:
    """The simulator binary for the current main.go, built if needed (atomically)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    target = REPO / "build" / "vcsim" / f"vcsim-{digest}"
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None or not GOVMOMI.is_dir():
        pytest.fail(f"vcsim needs Go and govmomi from Debian: {INSTALL}", pytrace=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}")
    env = dict(os.environ, GOPATH=str(GOPATH), GO111MODULE="off", GOFLAGS="")
    env.setdefault("GOCACHE", str(REPO / "build" / "go-cache"))
    result = subprocess.run(
        [go, "build", "-o", str(staged), "./tests/vcsim"], cwd=REPO, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"building vcsim failed:\n{result.stderr}", pytrace=False)
    os.replace(staged, target)
    return target


@dataclass
class Vcsim:
    """A running simulator: ``server`` is host:port, ``thumbprint`` the SHA-1 of its certificate."""

    process: subprocess.Popen
    server: str
    thumbprint: str
    username: str = USER
    password: str = PASSWORD
    templates: dict[str, str] = field(default_factory=dict)  # name → moid

    @classmethod
    def start(
        cls, binary: Path, *, version: str = "7.0.3", icelake: bool = True, options: tuple[str, ...] = ()
    ) -> Vcsim:
        """``options``: more main.go flags, e.g. ("-datacenters=2", "-folders=1", "-pools=1")."""
        process = subprocess.Popen(
            [
                str(binary),
                f"-api-version={version}",
                f"-username={USER}",
                f"-password={PASSWORD}",
                f"-icelake={'true' if icelake else 'false'}",
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=30)
        if not first or not first[0].strip():
            process.kill()
            pytest.fail("vcsim did not start within 30 s", pytrace=False)
        started = json.loads(first[0])
        host_port = started["url"].split("//", 1)[1].split("/", 1)[0]
        return cls(process=process, server=host_port, thumbprint=started["thumbprint"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def env(self) -> dict[str, str]:
        return {"EKSA_VSPHERE_USERNAME": self.username, "EKSA_VSPHERE_PASSWORD": self.password}


def create_inventory(sim: Vcsim) -> None:
    """Folders, a resource pool with a memory limit, templates (clones marked as template) and their tags."""
    host, port = sim.server.rsplit(":", 1)
    si = SmartConnect(host=host, port=int(port), user=USER, pwd=PASSWORD, disableSslCertValidation=True)
    try:
        content = si.RetrieveContent()
        dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        dc.vmFolder.CreateFolder("eksa")
        templates_folder = dc.vmFolder.CreateFolder("Templates")
        cluster = next(e for e in dc.hostFolder.childEntity if e.name == "DC0_C0")
        allocation = vim.ResourceAllocationInfo(
            limit=POOL_LIMIT_MIB,
            reservation=0,
            expandableReservation=True,
            shares=vim.SharesInfo(level="normal"),
        )
        cpu = vim.ResourceAllocationInfo(
            limit=-1, reservation=0, expandableReservation=True, shares=vim.SharesInfo(level="normal")
        )
        cluster.resourcePool.CreateResourcePool(
            "eksa", vim.ResourceConfigSpec(cpuAllocation=cpu, memoryAllocation=allocation)
        )
        source = next(vm for vm in dc.vmFolder.childEntity if isinstance(vm, vim.VirtualMachine))
        for name in TEMPLATES:
            spec = vim.vm.CloneSpec(
                location=vim.vm.RelocateSpec(pool=cluster.resourcePool), template=True, powerOn=False
            )
            task = source.CloneVM_Task(folder=templates_folder, name=name, spec=spec)
            WaitForTask(task)
            sim.templates[name] = task.info.result._moId
    finally:
        Disconnect(si)
    _tag_templates(sim)


def _memory_limited(limit_mib: int) -> vim.ResourceConfigSpec:
    def allocation(limit: int) -> vim.ResourceAllocationInfo:
        return vim.ResourceAllocationInfo(
            limit=limit, reservation=0, expandableReservation=True, shares=vim.SharesInfo(level="normal")
        )

    return vim.ResourceConfigSpec(cpuAllocation=allocation(-1), memoryAllocation=allocation(limit_mib))


def _child(folder, name: str):
    return next(e for e in folder.childEntity if e.name == name)


def create_site_inventory(sim: Vcsim) -> None:
    """On a simulator started with SITE_OPTIONS: nested VM folders with templates in them, a pool
    with a memory limit inside the child pool DC1_C0_RP1, a second pool of that name elsewhere."""
    host, port = sim.server.rsplit(":", 1)
    si = SmartConnect(host=host, port=int(port), user=USER, pwd=PASSWORD, disableSslCertValidation=True)
    try:
        content = si.RetrieveContent()
        dc = _child(_child(content.rootFolder, "F0"), "DC1")
        vm_root = _child(dc.vmFolder, "F0")
        templates = vm_root.CreateFolder("Templates")
        folders = {"F0/Templates": templates, "F0/Templates/old": templates.CreateFolder("old")}
        cluster = _child(_child(dc.hostFolder, "F0"), "DC1_C0")
        standalone = _child(_child(dc.hostFolder, "F0"), "DC1_H0")
        child_pool = next(p for p in cluster.resourcePool.resourcePool if p.name == "DC1_C0_RP1")
        child_pool.CreateResourcePool("eksa", _memory_limited(POOL_LIMIT_MIB))
        standalone.resourcePool.CreateResourcePool("eksa", _memory_limited(POOL_LIMIT_MIB))
        source = next(vm for vm in vm_root.childEntity if isinstance(vm, vim.VirtualMachine))
        for path in SITE_TEMPLATES:
            folder, name = path.rsplit("/", 1)
            spec = vim.vm.CloneSpec(
                location=vim.vm.RelocateSpec(pool=cluster.resourcePool), template=True, powerOn=False
            )
            task = source.CloneVM_Task(folder=folders[folder], name=name, spec=spec)
            WaitForTask(task)
            sim.templates[path] = task.info.result._moId
    finally:
        Disconnect(si)
    _tag_templates(sim, SITE_TEMPLATES)


def _tag_templates(sim: Vcsim, templates: dict[str, tuple[tuple[str, str], ...]] = TEMPLATES) -> None:
    base = f"https://{sim.server}/rest/com/vmware/cis"
    with httpx.Client(verify=False, timeout=10) as http:
        session = http.post(f"{base}/session", auth=(USER, PASSWORD)).raise_for_status().json()["value"]
        headers = {"vmware-api-session-id": session}
        categories, tags = {}, {}
        for category, tag in {pair for pairs in templates.values() for pair in pairs}:
            if category not in categories:
                spec = {
                    "name": category,
                    "description": "",
                    "cardinality": "MULTIPLE",
                    "associable_types": [],
                }
                reply = http.post(f"{base}/tagging/category", json={"create_spec": spec}, headers=headers)
                categories[category] = reply.raise_for_status().json()["value"]
            spec = {"name": tag, "description": "", "category_id": categories[category]}
            reply = http.post(f"{base}/tagging/tag", json={"create_spec": spec}, headers=headers)
            tags[tag] = reply.raise_for_status().json()["value"]
        for name, pairs in templates.items():
            for _category, tag in pairs:
                http.post(
                    f"{base}/tagging/tag-association/id:{tags[tag]}",
                    params={"~action": "attach"},
                    json={"object_id": {"type": "VirtualMachine", "id": sim.templates[name]}},
                    headers=headers,
                ).raise_for_status()


def lab_settings(sim: Vcsim, **overrides: object) -> dict:
    """A `vsphere` config section that passes every preflight check against the simulator."""
    settings = {
        "server": sim.server,
        "thumbprint": sim.thumbprint,
        "datacenter": "DC0",
        "network": "VM Network",
        "datastore": "LocalDS_0",
        "folder": "eksa",
        "resource_pool": "DC0_C0/Resources/eksa",
        "template": "Templates/bottlerocket-1.34",
        "eksd_releases": {"1.34": RELEASE_131},
        "control_plane_endpoint": "10.250.0.10",
        "control_plane_count": 1,
        "etcd_count": 3,
    }
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    return build_vcsim()


@pytest.fixture(scope="module")
def lab(vcsim_binary: Path):
    """A 7.0.3 simulator with the test inventory (shared by a module's tests; treat as read-only)."""
    sim = Vcsim.start(vcsim_binary)
    try:
        create_inventory(sim)
        yield sim
    finally:
        sim.stop()


def site_settings(sim: Vcsim, **overrides: object) -> dict:
    """A `vsphere` section for the site inventory in the names the vSphere UI shows (no paths)."""
    settings = {
        "server": sim.server,
        "thumbprint": sim.thumbprint,
        "datacenter": "DC1",
        "network": "DC1_DVPG0",
        "datastore": "LocalDS_0",
        "folder": "F0/eksa",
        "resource_pool": "DC1_C0_RP1/eksa",
        "template": "bottlerocket-1.34",
        "eksd_releases": {"1.34": RELEASE_131},
        "control_plane_endpoint": "10.250.0.10",
        "control_plane_count": 1,
        "etcd_count": 3,
    }
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module")
def site(vcsim_binary: Path):
    """A simulator with the second inventory shape (see SITE_OPTIONS), read-only for the tests."""
    sim = Vcsim.start(vcsim_binary, options=SITE_OPTIONS)
    try:
        create_site_inventory(sim)
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def vsphere_env(lab: Vcsim, monkeypatch: pytest.MonkeyPatch) -> Vcsim:
    """The simulator's credentials in the environment, where the toolkit reads them."""
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    return lab
