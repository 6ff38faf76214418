import json
import types

import pytest

from contracts.errors import TrainingError
from workloads.training import devices


class FakeStrategy:
    def __init__(self, replicas=1):
        self.num_replicas_in_sync = replicas


def fake_tf(gpus=0):
    calls = {}
    tf = types.SimpleNamespace()
    tf.config = types.SimpleNamespace(
        list_physical_devices=lambda kind: [f"gpu{i}" for i in range(gpus)] if kind == "GPU" else [],
        set_visible_devices=lambda devices, kind: calls.__setitem__("visible", (devices, kind)),
        experimental=types.SimpleNamespace(
            set_memory_growth=lambda gpu, on: calls.setdefault("growth", []).append(gpu)
        ),
        threading=types.SimpleNamespace(
            set_intra_op_parallelism_threads=lambda n: calls.__setitem__("intra", n),
            set_inter_op_parallelism_threads=lambda n: calls.__setitem__("inter", n),
        ),
    )
    tf.distribute = types.SimpleNamespace(
        get_strategy=lambda: FakeStrategy(1),
        MirroredStrategy=lambda: FakeStrategy(gpus),
        MultiWorkerMirroredStrategy=lambda: FakeStrategy(2),
    )
    return tf, calls


def no_habana(name):
    raise ImportError(name)


def fake_habana_importer(loaded):
    def importer(name):
        if name == devices.HABANA_MODULE:
            return types.SimpleNamespace(load_habana_module=lambda: loaded.append(True))
        if name == devices.HABANA_MODULE + ".distribute":
            return types.SimpleNamespace(HPUStrategy=lambda: FakeStrategy(8))
        raise ImportError(name)

    return importer


def test_cpu_fallback_sets_threads():
    tf, calls = fake_tf()
    setup = devices.select_device(
        tf, "auto", intra_op_threads=2, inter_op_threads=1, env={}, importer=no_habana
    )
    assert (setup.kind, setup.precision_policy, setup.replicas) == ("cpu", "float32", 1)
    assert calls == {"intra": 2, "inter": 1}


def test_gpus_get_mirrored_strategy_and_mixed_float16():
    tf, calls = fake_tf(gpus=2)
    setup = devices.select_device(tf, "auto", env={}, importer=no_habana)
    assert (setup.kind, setup.replicas, setup.precision_policy) == ("gpu", 2, "mixed_float16")
    assert calls["growth"] == ["gpu0", "gpu1"]


def test_hpu_is_imported_lazily_and_uses_bf16():
    loaded = []
    tf, _ = fake_tf(gpus=1)
    setup = devices.select_device(tf, "auto", env={}, importer=fake_habana_importer(loaded))
    assert loaded == [True]
    assert (setup.kind, setup.precision_policy) == ("hpu", "mixed_bfloat16")


def test_eight_gaudi_ranks_under_mpirun_get_tf_config_and_hpu_strategy():
    env = {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "3"}
    tf, _ = fake_tf()
    setup = devices.select_device(tf, "hpu", env=env, importer=fake_habana_importer([]))
    assert setup.replicas == 8 and setup.worker_index == 3 and not setup.is_chief
    tf_config = json.loads(env["TF_CONFIG"])
    assert len(tf_config["cluster"]["worker"]) == 8 and tf_config["task"]["index"] == 3


def test_tf_config_is_set_before_the_habana_module_loads():
    """Habana's multi-worker order: TF_CONFIG, then load_habana_module(), then HPUStrategy()."""
    env = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}
    seen = []

    def importer(name):
        if name == devices.HABANA_MODULE:
            return types.SimpleNamespace(load_habana_module=lambda: seen.append(env.get("TF_CONFIG")))
        return fake_habana_importer([])(name)

    tf, _ = fake_tf()
    devices.select_device(tf, "hpu", env=env, worker_port=7850, importer=importer)
    assert json.loads(seen[0])["cluster"]["worker"] == ["127.0.0.1:7850", "127.0.0.1:7851"]


def test_mpirun_ranks_on_cpu_get_a_cluster_from_the_configured_port():
    env = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}
    tf, _ = fake_tf()
    setup = devices.select_device(tf, "auto", env=env, worker_port=20000, importer=no_habana)
    assert (setup.kind, setup.workers, setup.worker_index, setup.is_chief) == ("cpu", 2, 0, True)
    assert json.loads(env["TF_CONFIG"])["cluster"]["worker"][1] == "127.0.0.1:20001"
    with pytest.raises(TrainingError, match=r"train\.worker_port 65535 leaves no room for 2 ranks"):
        devices.tf_config_for_mpi({"OMPI_COMM_WORLD_SIZE": "2"}, 65535)


def test_each_gpu_rank_under_mpirun_sees_the_gpu_of_its_local_rank():
    env = {
        "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_LOCAL_RANK": "3",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
    }
    tf, calls = fake_tf(gpus=4)
    setup = devices.select_device(tf, "gpu", env=env, importer=no_habana)
    assert calls["visible"] == (["gpu3"], "GPU") and calls["growth"] == ["gpu3"]
    assert (setup.kind, setup.workers, setup.worker_index) == ("gpu", 4, 3)


def test_hpu_requested_without_habana_is_a_clear_error():
    tf, _ = fake_tf()
    with pytest.raises(TrainingError, match=r"habana_frameworks\.tensorflow is not importable"):
        devices.select_device(tf, "hpu", env={}, importer=no_habana)


def test_gpu_requested_without_gpu_is_a_clear_error():
    tf, _ = fake_tf()
    with pytest.raises(TrainingError, match="sees no GPU"):
        devices.select_device(tf, "gpu", env={}, importer=no_habana)


def test_multi_worker_tf_config_selects_multi_worker_strategy():
    env = {
        "TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
        )
    }
    tf, _ = fake_tf()
    setup = devices.select_device(tf, "cpu", env=env, importer=no_habana)
    assert (setup.workers, setup.worker_index, setup.replicas) == (2, 1, 2)


def test_bad_tf_config_is_reported():
    with pytest.raises(TrainingError, match="TF_CONFIG is not valid"):
        devices.cluster_from_env({"TF_CONFIG": "{"})


def test_cpu_env_defaults_do_not_override_user_settings():
    env = {"KMP_BLOCKTIME": "0"}
    devices.configure_cpu_threads_env(4, 1, env)
    assert env["KMP_BLOCKTIME"] == "0" and env["OMP_NUM_THREADS"] == "4"
