"""OVMS's own settings: the multi-model config.json and the command line, from the typed config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contracts.config import NodePoolConfig, OvmsTuning, ToolkitConfig, openvino_properties
from contracts.errors import DeployError, ModelRepositoryError
from contracts.model_repository import (
    SERVER_MOUNT,
    ModelRepository,
    execution_precision,
    ir_precision,
    served_name,
)

CONFIG_MOUNT = "/config"
MODELS_MOUNT = SERVER_MOUNT
# The OVMS image's own user (USER ovms in its Dockerfile); the pod runs as this uid explicitly
# because runAsNonRoot cannot verify a user name.
OVMS_UID = 5000


def plugin_config(tuning: OvmsTuning, cpus: int, precision: str = "fp32") -> dict[str, Any]:
    """OpenVINO's CPU properties for one served variant, sized to the pod's CPU limit (``cpus``).

    INFERENCE_PRECISION_HINT is pinned to the variant's execution precision (f32; bf16 for bf16):
    OVMS would otherwise run an FP32 IR in bf16 on nodes with AVX512_BF16 or AMX.

    OpenVINO sizes threads and streams from the host's cores, not the container's CPU limit, so
    a 1-CPU pod on a bigger node would run more threads than it has CPU time for. Unset (0)
    values are derived here: one inference thread per CPU of the limit; LATENCY one stream,
    THROUGHPUT one stream per thread (single-thread streams suit small CNNs such as this one),
    no more than ``nireq`` requests can keep busy. Given values stay as given (validated <= cpus).
    """
    threads = tuning.inference_threads or cpus
    streams = tuning.num_streams
    if not streams:
        streams = 1 if tuning.performance_hint == "LATENCY" else min(threads, tuning.nireq or threads)
    return openvino_properties(tuning.performance_hint, streams, threads, execution_precision(precision))


def pool_precisions(config: ToolkitConfig, node_pool: NodePoolConfig) -> tuple[str, ...]:
    """The variants a pool serves: ``serving.precisions`` in order, less those executing in bf16
    when the pool's cpu_generation has no bf16 in ``kubernetes.cpu_generations``.

    The one place that decides what a pool serves: its config.json, its probes, its model sync
    and which pools the in-cluster bench measures all follow it.
    """
    native_bf16 = config.kubernetes.supports_bf16(node_pool.cpu_generation)
    return tuple(
        precision
        for precision in dict.fromkeys(config.serving.precisions)
        if native_bf16 or execution_precision(precision) != "bf16"
    )


def served_precisions(
    config: ToolkitConfig, *, target: str, pools: Mapping[str, NodePoolConfig]
) -> dict[str, tuple[str, ...]]:
    """Each pool of ``target`` → the variants it serves (:func:`pool_precisions`).

    A DeployError when a listed variant is served on no pool (bf16 on a target without a bf16
    generation) or a pool would serve nothing (only bf16 listed, a pool without bf16).
    """
    served = {pool: pool_precisions(config, node_pool) for pool, node_pool in sorted(pools.items())}
    listed = ", ".join(config.serving.precisions)
    kubernetes = config.kubernetes
    capable = ", ".join(sorted(n for n, g in kubernetes.cpu_generations.items() if g.bf16))
    for precision in dict.fromkeys(config.serving.precisions):
        if not any(precision in precisions for precisions in served.values()):
            generations = ", ".join(f"{p}: {pools[p].cpu_generation}" for p in served)
            raise DeployError(
                f"serving.precisions ({listed}) lists {precision}, a variant executed in bf16, but no "
                f"pool of {target} has a cpu_generation with bf16 in kubernetes.cpu_generations "
                f"({generations}; bf16: {capable}): add such a pool or drop {precision}"
            )
    for pool, precisions in served.items():
        if not precisions:
            raise DeployError(
                f"serving.precisions ({listed}) leaves pool {pool} nothing to serve: its "
                f"cpu_generation {pools[pool].cpu_generation} has no bf16 (bf16 runs on {capable}); "
                "add a variant that executes in f32 (fp32, fp16, int8)"
            )
    return served


def server_config(config: ToolkitConfig, precisions: Sequence[str]) -> dict[str, Any]:
    """config.json serving exactly ``precisions`` (a pool's: :func:`pool_precisions`) with the tuning
    of ``ovms.use``; metrics on.

    Metrics are enabled here and not with --metrics_enable: OVMS refuses both at once. When the
    local model repository has a committed version set (``version_set.json``, written last by
    ``invoke optimize``), each model is pinned to its committed version
    (``model_version_policy: specific``): a version folder a killed publish left above it is never
    served, whatever was synced. Without one (rendering offline, no repository), OVMS serves the
    highest version folder.
    """
    tuning = config.ovms.tuning()
    repository = ModelRepository(config.paths.model_repository)
    committed = repository.committed(config.optimize.model_name)
    models = []
    for precision in precisions:
        name = served_name(config.optimize.model_name, precision)
        ir = ir_precision(precision)  # bf16 serves the fp32 IR's folder under its own name
        entry: dict[str, Any] = {
            "name": name,
            "base_path": f"{MODELS_MOUNT}/{served_name(config.optimize.model_name, ir)}",
            "target_device": "CPU",
            "plugin_config": plugin_config(tuning, config.ovms.cpus, precision),
        }
        if tuning.nireq:
            entry["nireq"] = tuning.nireq
        if committed is not None:
            if ir not in committed:  # refused here as `up --target local` refuses it
                raise ModelRepositoryError(
                    f"{served_name(config.optimize.model_name, ir)} is not in the committed version set "
                    f"in {repository.root}; run `invoke optimize` with {ir} in optimize.precisions"
                )
            entry["model_version_policy"] = {"specific": {"versions": [committed[ir]]}}
        models.append({"config": entry})
    return {"model_config_list": models, "monitoring": {"metrics": {"enable": True}}}


def model_ready_paths(served: Mapping[str, int | None]) -> list[str]:
    """KServe v2 Model Ready of each served model (of its pinned version when one is pinned)."""
    return [
        f"/v2/models/{name}/ready" if version is None else f"/v2/models/{name}/versions/{version}/ready"
        for name, version in served.items()
    ]


def model_ready_command(rest_port: int, served: Mapping[str, int | None]) -> list[str]:
    """An exec probe that succeeds only when every served model answers 200 on Model Ready.

    /v2/health/ready turns 200 once the model manager starts, even when a model failed to load;
    a probe has one httpGet, so this one asks each model in turn. The OVMS release image (Ubuntu,
    Dockerfile.ubuntu's release stage) installs curl and has /bin/sh.
    """
    script = (
        'for path in "$@"; do '
        "curl --fail --silent --show-error --max-time 2 --output /dev/null "
        f'"http://127.0.0.1:{rest_port}$path" '
        '|| { echo "model-ready: $path is not ready" >&2; exit 1; }; '
        "done"
    )
    return ["/bin/sh", "-c", script, "model-ready", *model_ready_paths(served)]


def server_args(config: ToolkitConfig) -> list[str]:
    ovms = config.ovms
    return [
        f"--config_path={CONFIG_MOUNT}/config.json",
        f"--port={ovms.grpc_port}",
        f"--rest_port={ovms.rest_port}",
        f"--file_system_poll_wait_seconds={ovms.file_system_poll_wait_seconds}",
        f"--log_level={ovms.log_level}",
    ]
