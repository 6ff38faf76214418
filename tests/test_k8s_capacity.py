"""Rendered OVMS pods fit the configured nodes beside kube-system, and their rollouts complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.config import Resources, eks_kube_reserved_cpu, load_config
from contracts.errors import ConfigError, DeployError
from workloads.k8s.capacity import NodeAllocatable, fits, plan_rollout, pod_requests, pods_per_node
from workloads.k8s.model_source import S3ModelSource, SecretS3ModelSource
from workloads.k8s.render import parse_and_validate, render_serving
from workloads.targets import cluster_target

SOURCES = {
    "aws": S3ModelSource(bucket="bm-models", prefix="models", region="us-east-1", service_account="ovms-s3"),
    "vsphere": SecretS3ModelSource(bucket="bm-models", prefix="models", region="us-east-1", secret_name="s3"),
}


def _render(tmp_path: Path, target: str, overrides: dict[str, Any] | None = None) -> tuple[list[dict], Any]:
    config = load_config(overrides or {})
    documents = []
    for path in render_serving(config, target=target, model_source=SOURCES[target], out_dir=tmp_path):
        documents += parse_and_validate(path.read_text(), version=config.kubernetes.version, source=path.name)
    return documents, config


def _by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def _rollout_completes(*, replicas: int, slots: int, max_surge: int, max_unavailable: int) -> bool:
    """The Deployment controller and the scheduler, step by step: old pods replaced by new ones,
    never more than ``replicas + max_surge`` pods, never fewer than ``replicas - max_unavailable``
    available, new pods Pending while the pool's ``slots`` are taken. False when it stalls."""
    old, running, pending = replicas, 0, 0
    while old or running < replicas:
        create = min(replicas + max_surge - (old + running + pending), replicas - running - pending)
        pending += max(create, 0)
        scheduled = min(slots - old - running, pending)
        running, pending = running + scheduled, pending - scheduled
        removable = min(old, old + running - (replicas - max_unavailable))
        if create <= 0 and scheduled <= 0 and removable <= 0:
            return False
        old -= max(removable, 0)
    return True


def test_the_rollout_model_stalls_on_a_surge_without_room() -> None:
    # The strategy rendered before: a surge pod that never fits, no old pod allowed to go first.
    assert not _rollout_completes(replicas=1, slots=1, max_surge=1, max_unavailable=0)
    assert _rollout_completes(replicas=1, slots=1, max_surge=0, max_unavailable=1)
    assert _rollout_completes(replicas=2, slots=3, max_surge=1, max_unavailable=0)


def test_eks_kube_reserved_cpu_follows_the_eks_tiers() -> None:
    assert [eks_kube_reserved_cpu(n) for n in (1, 2, 4, 8, 16, 32)] == [60, 70, 80, 90, 110, 150]
    table = load_config().kubernetes.node_allocatable
    # 2 vCPU, 4 GiB, 29 pods: 2000 - 70; 4096 × 0.925 - (255 + 11 × 29) - 100.
    for name in ("c5.large", "c6i.large", "c7i.large"):
        assert table[name] == Resources(cpu_millicores=1930, memory_mib=3114)
    assert table["c6i.xlarge"] == Resources(cpu_millicores=3920, memory_mib=6584)


@pytest.mark.parametrize("pool", ["c5", "c6i"])
def test_the_default_ovms_pod_fits_c5_and_c6i_large_beside_the_daemonsets(tmp_path: Path, pool: str) -> None:
    documents, config = _render(tmp_path, "aws")
    pod = _by_kind(documents, "Deployment")[f"ovms-{pool}"]["spec"]["template"]["spec"]
    node = cluster_target("aws").node_allocatable(config, pool, config.aws.pools[pool])
    assert node.instance_type in ("c5.large", "c6i.large")
    requests = pod_requests(pod)
    assert requests == Resources(cpu_millicores=1000, memory_mib=1536)  # OVMS; the sync init is smaller
    assert fits(requests, node)
    assert not fits(requests, node, count=2), "no room for a surge pod on one large node"
    # kube-system: aws-node + network policy agent, kube-proxy, pod identity agent, 2 CoreDNS.
    assert node.system_pods == Resources(cpu_millicores=350, memory_mib=140)


ROLLOUT_CASES = [
    # target, overrides, {pool: (maxSurge, maxUnavailable)}
    ("aws", {}, {"c5": (0, 1), "c6i": (0, 1), "c7i": (0, 1)}),
    ("vsphere", {}, {"icelake": (1, 0)}),
    (
        "aws",
        {
            "aws": {
                "pools": {
                    "c5": {
                        "instance_type": "c5.large",
                        "cpu_generation": "x",
                        "desired_size": 3,
                        "max_size": 3,
                    }
                }
            }
        },
        {"c5": (1, 0)},  # surges at most one pod per replica
    ),
    (
        "aws",
        {
            "ovms": {"replicas": 2},
            "aws": {
                "pools": {"c6i": {"instance_type": "c6i.large", "cpu_generation": "x", "desired_size": 2}}
            },
        },
        {"c6i": (0, 1)},
    ),
    (
        "aws",
        {
            "ovms": {"replicas": 1, "hpa_max_replicas": 3},
            "aws": {
                "pools": {"c5": {"instance_type": "c5.xlarge", "cpu_generation": "x", "desired_size": 2}}
            },
        },
        # 2 nodes × 3 pods (3570m free each): 6 slots, 3 beside the autoscaler's peak.
        {"c5": (1, 0)},
    ),
    ("vsphere", {"ovms": {"cpus": 4, "memory_mib": 4096, "replicas": 2}}, {"icelake": (0, 1)}),
    (
        "vsphere",
        {
            "ovms": {"cpus": 4, "memory_mib": 4096, "replicas": 2},
            "vsphere": {"worker_machine": {"cpus": 16, "memory_mib": 16384, "disk_gib": 50}},
        },
        {"icelake": (2, 0)},
    ),
]


@pytest.mark.parametrize(("target", "overrides", "expected"), ROLLOUT_CASES)
def test_the_rollout_strategy_completes_on_the_configured_pools(
    tmp_path: Path, target: str, overrides: dict, expected: dict
) -> None:
    documents, config = _render(tmp_path, target, overrides)
    cluster = cluster_target(target)
    deployments = _by_kind(documents, "Deployment")
    pdbs = _by_kind(documents, "PodDisruptionBudget")
    assert set(deployments) == {f"ovms-{p}" for p in expected}
    for pool, (surge, unavailable) in expected.items():
        deployment = deployments[f"ovms-{pool}"]
        update = deployment["spec"]["strategy"]["rollingUpdate"]
        assert (update["maxSurge"], update["maxUnavailable"]) == (surge, unavailable)
        node_pool = cluster.node_pools(config)[pool]
        node = cluster.node_allocatable(config, pool, node_pool)
        slots = node_pool.desired_size * pods_per_node(
            pod_requests(deployment["spec"]["template"]["spec"]), node
        )
        for replicas in {config.ovms.replicas, config.ovms.hpa_max_replicas or config.ovms.replicas}:
            assert _rollout_completes(
                replicas=replicas, slots=slots, max_surge=surge, max_unavailable=unavailable
            )
        # A drain may always evict one pod, so even a single replica's node can be drained.
        assert pdbs[f"ovms-{pool}"]["spec"] == {
            "maxUnavailable": 1,
            "selector": deployment["spec"]["selector"],
        }


def test_plan_rollout_surges_only_into_spare_slots() -> None:
    assert plan_rollout(replicas=1, peak_replicas=1, nodes=1, per_node=1).max_surge == 0
    assert plan_rollout(replicas=2, peak_replicas=4, nodes=2, per_node=2).max_unavailable == 1
    rollout = plan_rollout(replicas=2, peak_replicas=2, nodes=2, per_node=3)
    assert (rollout.max_surge, rollout.max_unavailable) == (2, 0)
    with pytest.raises(DeployError, match=r"3 replica\(s\) do not fit: 1 node\(s\) hold 2 pod\(s\) each"):
        plan_rollout(replicas=3, peak_replicas=3, nodes=1, per_node=2)


def test_pods_that_cannot_run_are_refused_at_render(tmp_path: Path) -> None:
    with pytest.raises(
        DeployError, match=r"an OVMS pod \(2000m CPU, 1536 MiB\) does not fit a c5.large node"
    ):
        _render(tmp_path / "a", "aws", {"ovms": {"cpus": 2}})
    with pytest.raises(DeployError, match=r"ovms.replicas on pool c5: 2 replica"):
        _render(tmp_path / "b", "aws", {"ovms": {"replicas": 2}})
    assert not list(tmp_path.rglob("*.yaml")), "nothing written"


def test_an_instance_type_missing_from_the_table_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    pools = {"c5": {"instance_type": "m7i.large", "cpu_generation": "sapphirerapids"}}
    config = load_config({"aws": {"pools": pools}})
    message = r"kubernetes.node_allocatable has no entry for m7i.large \(aws.pools.c5.instance_type\)"
    with pytest.raises(ConfigError, match=message):
        cluster_target("aws").node_allocatable(config, "c5", config.aws.pools["c5"])
    with pytest.raises(ConfigError, match=message):
        _render(tmp_path, "aws", {"aws": {"pools": pools}})
    bench = load_config(
        {"aws": {"bench_pool": {"instance_type": "m7i.large", "cpu_generation": "x", "min_size": 0}}}
    )
    with pytest.raises(ConfigError, match=r"\(aws.bench_pool.instance_type\)"):
        cluster_target("aws").node_allocatable(bench, "bench", bench.aws.bench_pool)
    table = {"m7i.large": {"cpu_millicores": 1930, "memory_mib": 7000}}
    config = load_config({"aws": {"pools": pools}, "kubernetes": {"node_allocatable": table}})
    node = cluster_target("aws").node_allocatable(config, "c5", config.aws.pools["c5"])
    assert node.allocatable == Resources(cpu_millicores=1930, memory_mib=7000)


def test_vsphere_nodes_are_their_machine_minus_the_reserve() -> None:
    config = load_config({"vsphere": {"node_reserved": {"cpu_millicores": 250, "memory_mib": 1024}}})
    vsphere = cluster_target("vsphere")
    worker = vsphere.node_allocatable(config, "icelake", config.vsphere.pools["icelake"])
    assert worker.allocatable == Resources(cpu_millicores=8000 - 250, memory_mib=16384 - 1024)
    bench = vsphere.node_allocatable(config, "bench", config.vsphere.bench_pool)
    assert bench.allocatable == Resources(cpu_millicores=4000 - 250, memory_mib=8192 - 1024)
    assert worker.system_pods == Resources(cpu_millicores=400, memory_mib=268)
    odd = load_config(
        {"vsphere": {"pools": {"icelake": {"instance_type": "c6i.large", "cpu_generation": "x"}}}}
    )
    with pytest.raises(ConfigError, match=r"vsphere.pools.icelake.instance_type must be vsphere-vm"):
        vsphere.node_allocatable(odd, "icelake", odd.vsphere.pools["icelake"])
    with pytest.raises(ConfigError, match=r"vsphere.node_reserved must leave room on vsphere.bench_machine"):
        load_config({"vsphere": {"node_reserved": {"cpu_millicores": 4000}}})


def test_pod_requests_count_the_largest_init_container_or_the_sum_of_the_others() -> None:
    def container(cpu: str, memory: str, *, limits_only: bool = False) -> dict:
        amount = {"cpu": cpu, "memory": memory}
        return {"resources": {"limits": amount} if limits_only else {"requests": amount, "limits": amount}}

    pod = {
        "initContainers": [container("2", "256Mi"), container("500m", "1Gi")],
        "containers": [container("1", "512Mi"), container("250m", "0.25Gi", limits_only=True)],
    }
    assert pod_requests(pod) == Resources(cpu_millicores=2000, memory_mib=1024)
    node = NodeAllocatable(
        pool="p",
        instance_type="t",
        allocatable=Resources(cpu_millicores=2400, memory_mib=2000),
        system_pods=Resources(cpu_millicores=400, memory_mib=0),
    )
    assert fits(pod_requests(pod), node) and not fits(Resources(cpu_millicores=2001), node)
    assert pods_per_node(Resources(cpu_millicores=1000, memory_mib=600), node) == 2
