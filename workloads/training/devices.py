"""Choose where training runs: Habana Gaudi (HPU), NVIDIA GPUs, several workers, or CPU.

``habana_frameworks`` is imported only when an HPU is asked for or auto-detection probes for
one, so this module works on machines without the Habana stack.

Several workers are one process each (``TF_CONFIG``, or one rank of a single-host ``mpirun -np
N``, from which TF_CONFIG is derived with ports ``train.worker_port`` + rank). Habana's order is
kept: TF_CONFIG is set before ``load_habana_module()``, which comes before ``HPUStrategy()``;
each rank then gets the Gaudi whose module id is its Open MPI local rank (the Habana bridge does
that itself), and on GPUs the GPU of its local rank. CPU cores are bound per rank by mpirun
(``--bind-to core --map-by socket:PE=…``, see workloads.training.remote).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from contracts.errors import TrainingError

HABANA_MODULE = "habana_frameworks.tensorflow"
# Rank r of a single-host mpirun launch listens on DEFAULT_WORKER_PORT + r (train.worker_port).
DEFAULT_WORKER_PORT = 12345


@dataclass(frozen=True)
class DeviceSetup:
    kind: str  # "hpu", "gpu" or "cpu"
    strategy: Any  # a tf.distribute.Strategy
    replicas: int
    precision_policy: str  # Keras mixed-precision policy name
    worker_index: int = 0
    workers: int = 1

    @property
    def is_chief(self) -> bool:
        """Only the chief writes the run directory in multi-worker training."""
        return self.worker_index == 0


def configure_cpu_threads_env(
    intra_op_threads: int, inter_op_threads: int, env: MutableMapping[str, str]
) -> None:
    """Intel-recommended OpenMP/oneDNN settings; must run before TensorFlow is imported."""
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    env.setdefault("KMP_BLOCKTIME", "1")
    env.setdefault("KMP_AFFINITY", "granularity=fine,compact,1,0")
    if intra_op_threads:
        env.setdefault("OMP_NUM_THREADS", str(intra_op_threads))


def cluster_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """(worker index, worker count) from TF_CONFIG, or from Open MPI's variables under mpirun."""
    raw = env.get("TF_CONFIG")
    if raw:
        try:
            tf_config = json.loads(raw)
            workers = tf_config["cluster"]["worker"]
            index = int(tf_config["task"]["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"TF_CONFIG is not valid multi-worker JSON: {exc}") from None
        return index, len(workers)
    if "OMPI_COMM_WORLD_SIZE" in env:
        return int(env.get("OMPI_COMM_WORLD_RANK", "0")), int(env["OMPI_COMM_WORLD_SIZE"])
    return 0, 1


def tf_config_for_mpi(env: Mapping[str, str], base_port: int = DEFAULT_WORKER_PORT) -> str | None:
    """TF_CONFIG for one rank of a single-host ``mpirun -np N`` launch (one process per Gaudi card).

    Rank r gets ``127.0.0.1:<base_port + r>``; None when TF_CONFIG is already set or there is no
    mpirun (a single process).
    """
    if "TF_CONFIG" in env or "OMPI_COMM_WORLD_SIZE" not in env:
        return None
    size = int(env["OMPI_COMM_WORLD_SIZE"])
    rank = int(env.get("OMPI_COMM_WORLD_RANK", "0"))
    if size > 1 and base_port + size - 1 > 65535:
        raise TrainingError(
            f"train.worker_port {base_port} leaves no room for {size} ranks "
            f"(they would need ports up to {base_port + size - 1})"
        )
    workers = [f"127.0.0.1:{base_port + i}" for i in range(size)]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}})


def local_rank(env: Mapping[str, str]) -> tuple[int, int]:
    """(this process's rank on its host, ranks on the host) under mpirun, else (0, 1)."""
    try:
        rank = int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", "0"))
        return rank, int(env.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1"))
    except ValueError:
        return 0, 1


def load_habana(importer: Callable[[str], ModuleType] = importlib.import_module) -> ModuleType | None:
    """Import and initialise the Habana TensorFlow module, or return None when it is absent.

    Call it after TF_CONFIG is set (Habana's multi-worker order: TF_CONFIG, load_habana_module,
    HPUStrategy).
    """
    try:
        habana = importer(HABANA_MODULE)
    except ImportError:
        return None
    habana.load_habana_module()
    return habana


def select_device(
    tf: ModuleType,
    requested: str,
    *,
    intra_op_threads: int = 0,
    inter_op_threads: int = 0,
    worker_port: int = DEFAULT_WORKER_PORT,
    env: MutableMapping[str, str] | None = None,
    importer: Callable[[str], ModuleType] = importlib.import_module,
) -> DeviceSetup:
    """Pick the device and distribution strategy for ``requested`` ("auto", "hpu", "gpu", "cpu").

    The same path for 1 process, N CPU workers, N GPUs and 8 Gaudi cards: with more than one
    worker the strategy is multi-worker (MultiWorkerMirroredStrategy, HPUStrategy on Gaudi), and
    creating it waits until every worker has joined the cluster: what each worker checks before
    this call (the run directory), no worker has written yet.
    """
    env = os.environ if env is None else env
    # First of all (before Habana loads): the cluster of a single-host mpirun launch.
    generated = tf_config_for_mpi(env, worker_port)
    if generated:
        env["TF_CONFIG"] = generated
    worker_index, workers = cluster_from_env(env)
    if requested in ("auto", "hpu"):
        habana = load_habana(importer)
        if habana is not None:
            return _hpu_setup(tf, worker_index, workers, importer)
        if requested == "hpu":
            raise TrainingError(
                f"device 'hpu' requested but {HABANA_MODULE} is not importable: "
                "run inside the Habana TensorFlow image (SynapseAI 1.14, TF 2.15)"
            )
    gpus = tf.config.list_physical_devices("GPU")
    if requested in ("auto", "gpu") and gpus:
        rank, ranks_here = local_rank(env)
        if workers > 1 and ranks_here > 1:
            # One GPU per rank of this host (mpirun), as Gaudi does with its cards.
            gpus = [gpus[rank % len(gpus)]]
            tf.config.set_visible_devices(gpus, "GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        if workers > 1:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        elif len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
        else:
            strategy = tf.distribute.get_strategy()
        return DeviceSetup(
            "gpu", strategy, strategy.num_replicas_in_sync, "mixed_float16", worker_index, workers
        )
    if requested == "gpu":
        raise TrainingError(
            "device 'gpu' requested but TensorFlow sees no GPU (check drivers and tensorflow[and-cuda])"
        )
    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if workers > 1 else tf.distribute.get_strategy()
    return DeviceSetup("cpu", strategy, strategy.num_replicas_in_sync, "float32", worker_index, workers)


def _hpu_setup(
    tf: ModuleType, worker_index: int, workers: int, importer: Callable[[str], ModuleType]
) -> DeviceSetup:
    if workers > 1:
        distribute = importer(f"{HABANA_MODULE}.distribute")
        strategy = distribute.HPUStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    # Gaudi computes natively in bf16; fp16 is not its fast path.
    return DeviceSetup(
        "hpu", strategy, strategy.num_replicas_in_sync, "mixed_bfloat16", worker_index, workers
    )
