"""Which pools of a cluster target serve ``bench.precision``: the in-cluster Jobs and the recorded
endpoints are both chosen here, from what each pool's OVMS serves (workloads.k8s.ovms)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.config import ToolkitConfig
from contracts.errors import BenchError, DeployError
from workloads.k8s.ovms import served_precisions
from workloads.progress import Progress
from workloads.targets import ClusterTarget


def served_by_pool(config: ToolkitConfig, cluster: ClusterTarget) -> dict[str, tuple[str, ...]]:
    """Each configured pool → the variants its OVMS serves, as its deploy renders them; a BenchError
    when ``bench.precision`` is served on none."""
    try:
        served = served_precisions(config, target=cluster.name, pools=cluster.node_pools(config))
    except DeployError as exc:
        raise BenchError(str(exc)) from None
    precision = config.bench.precision
    if not any(precision in precisions for precisions in served.values()):
        raise BenchError(
            f"bench.precision {precision} is served on no pool of {cluster.name}: add it to "
            f"serving.precisions ({', '.join(config.serving.precisions)})"
        )
    return served


def pools_serving(
    config: ToolkitConfig,
    cluster: ClusterTarget,
    candidates: Sequence[str],
    *,
    asked: str | None,
    progress: Progress,
) -> list[str]:
    """Of ``candidates`` (``asked``: the one ``--pool`` named, else all), those serving
    ``bench.precision``. A pool ``--pool`` names that does not serve it is a BenchError; without
    ``--pool`` such pools are skipped and said so. A candidate the configuration no longer has
    (recorded by an earlier `invoke up`) is kept: its server answers for itself."""
    served = served_by_pool(config, cluster)
    precision = config.bench.precision

    def serves(pool: str) -> bool:
        return pool not in served or precision in served[pool]

    serving = [pool for pool in candidates if serves(pool)]
    if asked is not None:
        if not serves(asked):
            elsewhere = [pool for pool, variants in served.items() if precision in variants]
            raise BenchError(
                f"pool {asked} of {cluster.name} does not serve bench.precision {precision} "
                f"(it serves {', '.join(served[asked])}); pools serving it: {', '.join(elsewhere)}"
            )
        return [asked]
    for pool in candidates:
        if not serves(pool):
            progress(f"skipping pool {pool}: it does not serve bench.precision {precision}")
    return serving
