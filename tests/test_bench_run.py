"""run_bench's one-line errors that need no model server: bad arguments, nothing recorded, endpoint down."""

import json
import time

import pytest
from loopback import free_ports

from contracts.config import load_config
from contracts.errors import BenchError
from workloads.bench.clients import RetryPolicy
from workloads.bench.run import run_bench

RETRY = RetryPolicy(
    connect_attempts=3, backoff_seconds=0.05, max_backoff_seconds=0.1, ready_deadline_seconds=1.0
)
UP_HINT = "(is the server up? `invoke up --target local`)"


def quiet(line: str) -> None:
    pass


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_an_endpoint_that_is_down_fails_after_bounded_retries(tmp_path, protocol):
    port = free_ports(1)[0]
    endpoint = f"http://127.0.0.1:{port}" if protocol == "rest" else f"127.0.0.1:{port}"
    config = load_config({"artifacts_dir": str(tmp_path), "bench": {"protocol": protocol}})
    started = time.monotonic()
    with pytest.raises(BenchError) as err:
        run_bench(config, target="aws", endpoint=endpoint, progress=quiet, retry=RETRY)
    message = str(err.value)
    assert message.startswith(f"cannot reach {endpoint} after 3 tries: ")
    assert message.endswith("(is the server up? `invoke up --target aws`)")
    assert "\n" not in message
    assert time.monotonic() - started < 10


def test_a_recorded_local_server_that_is_gone(tmp_path):
    config = load_config({"artifacts_dir": str(tmp_path), "bench": {"protocol": "rest"}})
    port = free_ports(1)[0]
    config.paths.local_server.mkdir(parents=True)
    (config.paths.local_server / "endpoints.json").write_text(
        json.dumps({"http_url": f"http://127.0.0.1:{port}", "grpc_target": f"127.0.0.1:{port}", "models": {}})
    )
    with pytest.raises(BenchError) as err:
        run_bench(config, target="local", progress=quiet, retry=RETRY)
    assert str(err.value).startswith(f"cannot reach http://127.0.0.1:{port} after 3 tries: ")
    assert str(err.value).endswith(UP_HINT)


def test_no_local_server_recorded(tmp_path):
    config = load_config({"artifacts_dir": str(tmp_path)})
    with pytest.raises(BenchError, match=r"^no local server recorded in .*; run `invoke up --target local`$"):
        run_bench(config, target="local", progress=quiet)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"scenarios": ("batch", "offline")},
            "unknown scenario offline; choose from batch, realtime, sweep, rate, max-rate",
        ),
        ({"scenarios": ()}, "unknown scenario (none); choose from batch, realtime, sweep, rate, max-rate"),
        ({"runtime": "onnx"}, "unknown runtime 'onnx'; choose from server, openvino, tensorflow"),
        ({"target": "gcp"}, "unknown target 'gcp'; choose local, aws, vsphere or endpoint"),
        (
            {"target": "endpoint"},
            "target endpoint needs an endpoint (the server's REST URL or gRPC host:port)",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, kwargs, message):
    config = load_config({"artifacts_dir": str(tmp_path)})
    with pytest.raises(BenchError) as err:
        run_bench(config, progress=quiet, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_in_process_without_a_published_model(tmp_path, runtime):
    config = load_config({"artifacts_dir": str(tmp_path)})
    with pytest.raises(BenchError, match=r"^model repository .* does not exist; run `invoke optimize`"):
        run_bench(config, runtime=runtime, progress=quiet)
    (tmp_path / "models" / "bone-marrow-int8").mkdir(parents=True)
    with pytest.raises(
        BenchError, match=r"^no published bone-marrow-int8 in .*; run `invoke optimize` with int8"
    ):
        run_bench(config, runtime=runtime, progress=quiet)


def test_cluster_targets_bench_every_recorded_pool_or_the_one_asked_for(tmp_path):
    from workloads.bench.run import deployed_endpoints
    from workloads.k8s.endpoints import record_endpoints

    grpc = load_config({"artifacts_dir": str(tmp_path)})
    rest = load_config({"artifacts_dir": str(tmp_path), "bench": {"protocol": "rest"}})
    record_endpoints(
        grpc,
        target="aws",
        endpoints={
            "c6i": {"rest": "http://10.0.0.7:8000", "grpc": "10.0.0.7:9000"},
            "c5": {"rest": "http://10.0.0.5:8000", "grpc": "10.0.0.5:9000"},
        },
    )
    assert deployed_endpoints(grpc, target="aws") == [("c5", "10.0.0.5:9000"), ("c6i", "10.0.0.7:9000")]
    assert deployed_endpoints(rest, target="aws", pool="c6i") == [("c6i", "http://10.0.0.7:8000")]
    with pytest.raises(BenchError, match=r"aws has no pool 'icelake'; recorded pools: c5, c6i"):
        deployed_endpoints(grpc, target="aws", pool="icelake")
    with pytest.raises(BenchError, match=r"no endpoints recorded for vsphere .*`invoke up --target vsphere`"):
        deployed_endpoints(grpc, target="vsphere")
