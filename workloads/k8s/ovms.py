"""OVMS's own settings: the multi-model config.json and the command line, from the typed config."""

from __future__ import annotations

from typing import Any

from contracts.config import OvmsTuning, ToolkitConfig, openvino_properties
from contracts.errors import ModelRepositoryError
from contracts.model_repository import SERVER_MOUNT, ModelRepository, served_name

CONFIG_MOUNT = "/config"
MODELS_MOUNT = SERVER_MOUNT
# The OVMS image's own user (USER ovms in its Dockerfile); the pod runs as this uid explicitly
# because runAsNonRoot cannot verify a user name.
OVMS_UID = 5000


def plugin_config(tuning: OvmsTuning) -> dict[str, Any]:
    return openvino_properties(tuning.performance_hint, tuning.num_streams, tuning.inference_threads)


def server_config(config: ToolkitConfig) -> dict[str, Any]:
    """config.json: every served precision with the tuning of ``ovms.use``; metrics on.

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
    for precision in config.serving.precisions:
        name = served_name(config.optimize.model_name, precision)
        entry: dict[str, Any] = {
            "name": name,
            "base_path": f"{MODELS_MOUNT}/{name}",
            "target_device": "CPU",
            "plugin_config": plugin_config(tuning),
        }
        if tuning.nireq:
            entry["nireq"] = tuning.nireq
        if committed is not None:
            if precision not in committed:  # refused here as `up --target local` refuses it
                raise ModelRepositoryError(
                    f"{name} is not in the committed version set in {repository.root}; "
                    f"run `invoke optimize` with {precision} in optimize.precisions"
                )
            entry["model_version_policy"] = {"specific": {"versions": [committed[precision]]}}
        models.append({"config": entry})
    return {"model_config_list": models, "monitoring": {"metrics": {"enable": True}}}


def server_args(config: ToolkitConfig) -> list[str]:
    ovms = config.ovms
    return [
        f"--config_path={CONFIG_MOUNT}/config.json",
        f"--port={ovms.grpc_port}",
        f"--rest_port={ovms.rest_port}",
        f"--file_system_poll_wait_seconds={ovms.file_system_poll_wait_seconds}",
        f"--log_level={ovms.log_level}",
    ]
