"""`invoke bench` end to end against the real local model server (workloads.serving) on loopback.

Tiny durations keep each run to a few seconds; the figures are not the point, the contract is:
results that follow the schema, repetitions that honour their minimums, known answers that
catch a swapped model, and one-line errors for every way the endpoint can be wrong.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from loopback import free_ports
from test_bench_clients import tiny_ir
from test_integrity import reseal

from contracts.config import load_config
from contracts.errors import BenchError
from contracts.files import sha256_file
from workloads.bench.clients import (
    BadRequest,
    GrpcClient,
    NotReady,
    RequestTimeout,
    RestClient,
    RetryPolicy,
    with_retries,
)
from workloads.bench.inprocess import AsyncOpenVinoClient
from workloads.bench.inputs import load_bench_images
from workloads.bench.results import CSV_COLUMNS, validate_results
from workloads.bench.run import run_bench
from workloads.data.manifest import SplitManifest
from workloads.serving import local

pytestmark = pytest.mark.slow

S = 64  # the served_repository model's image size
FAST_BENCH = {
    "batch_size": 4,
    "concurrency": 2,
    "warmup_seconds": 0.1,
    "min_duration_seconds": 0.2,
    "min_requests": 5,
    "repetitions": 3,
    "known_answer_images": 8,
    "request_timeout_seconds": 10,
}
RETRY = RetryPolicy(
    connect_attempts=3, backoff_seconds=0.05, max_backoff_seconds=0.1, ready_deadline_seconds=1.0
)
UP_HINT = "(is the server up? `invoke up --target local`)"


def artifacts_dir(root: Path, served_repository: Path, models: Path | None = None) -> Path:
    """An artifacts folder reading the shared data, runs and (by default) models; its own bench/serving."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("data", "runs"):
        (root / name).symlink_to(served_repository / name)
    (root / "models").symlink_to(models or served_repository / "models")
    return root


def make_config(artifacts: Path, ports: list[int], **bench):
    return load_config(
        {
            "artifacts_dir": str(artifacts),
            "serving": {"http_port": ports[0], "grpc_port": ports[1]},
            "bench": {**FAST_BENCH, **bench},
        }
    )


def start_server(config):
    return local.start(config, progress=lambda line: None)


@pytest.fixture(scope="module")
def server(tmp_path_factory, served_repository):
    artifacts = artifacts_dir(tmp_path_factory.mktemp("bench") / "artifacts", served_repository)
    config = make_config(artifacts, free_ports(2))
    info = start_server(config)
    yield config, info
    local.stop(config, progress=lambda line: None)


def bench_config(server, **bench):
    config, _ = server
    return make_config(
        Path(config.artifacts_dir), [config.serving.http_port, config.serving.grpc_port], **bench
    )


def test_rest_tensor_run_against_the_local_server(server):
    config = bench_config(server, protocol="rest", input_format="tensor", precision="int8")
    info = server[1]
    lines: list[str] = []
    document, path = run_bench(config, target="local", progress=lines.append, retry=RETRY)

    validate_results(document)
    assert path.parent == config.paths.bench_results
    assert path.name.rsplit("-", 1)[0].endswith("-local-kserve-openvino-int8")  # then a random token
    assert json.loads(path.read_text()) == document
    assert (document["target"], document["pool"], document["protocol"], document["runtime"]) == (
        "local",
        "local",
        "rest",
        "kserve-openvino",
    )
    assert document["endpoint"] == info.http_url
    served = info.models["bone-marrow-int8"]
    model_bin = config.paths.model_repository / "bone-marrow-int8" / str(served["version"]) / "model.bin"
    assert document["model"] == {
        "name": "bone-marrow-int8",
        "version": served["version"],
        "precision": "int8",
        "image_size": S,
        "sha256": sha256_file(model_bin),
    }
    assert document["server"] == document["client"]  # same machine
    assert document["versions"]["server"].startswith("kserve ")
    assert document["settings"]["performance_hint"] == "THROUGHPUT"
    assert document["known_answer"] == {"images": 8, "before": "pass", "after": "pass"}

    batch = document["scenarios"]["batch"]["repetitions"]
    realtime = document["scenarios"]["realtime"]["repetitions"]
    assert len(batch) == len(realtime) == 3
    for repetition in batch + realtime:
        assert repetition["requests"] >= 5 and repetition["seconds"] >= 0.2 and repetition["errors"] == 0
    for repetition in batch:
        assert repetition["images"] == 4 * repetition["requests"]
    for repetition in realtime:
        assert 0 < repetition["p50_ms"] <= repetition["p90_ms"] <= repetition["p99_ms"]
        assert repetition["requests"] >= 10  # at least the paper's 10 images

    rows = list(csv.DictReader((config.paths.bench_results / "results.csv").open()))
    assert list(rows[-1]) == list(CSV_COLUMNS)
    assert rows[-1]["runtime"] == "kserve-openvino" and rows[-1]["protocol"] == "rest"
    assert float(rows[-1]["batch_images_per_second"]) > 0

    prefixes = [line.split(":")[0] for line in lines]
    for expected in ("known answer before", "batch 1/3", "batch 3/3", "realtime 3/3", "known answer after"):
        assert expected in prefixes
    assert any(line.startswith("batch: ") and "images/s median (range" in line for line in lines)
    assert any(line.startswith("realtime: mean ") and "paper avg (10 images)" in line for line in lines)


def test_grpc_jpeg_realtime_only(server):
    config = bench_config(server, protocol="grpc", input_format="jpeg", precision="fp32")
    document, _ = run_bench(
        config, target="local", scenarios=("realtime",), progress=lambda line: None, retry=RETRY
    )
    assert set(document["scenarios"]) == {"realtime"}
    assert document["endpoint"] == server[1].grpc_target
    assert document["protocol"] == "grpc" and document["settings"]["input_format"] == "jpeg"
    assert document["model"]["name"] == "bone-marrow-fp32"
    assert document["known_answer"]["after"] == "pass"


def test_any_kserve_v2_endpoint_by_url(server):
    config = bench_config(server, protocol="rest", precision="fp32")
    document, path = run_bench(
        config,
        target="endpoint",
        endpoint=server[1].http_url,
        scenarios=("batch",),
        progress=lambda line: None,
        retry=RETRY,
    )
    assert (document["target"], document["pool"]) == ("endpoint", None)
    assert document["runtime"] == "kserve-openvino"  # from the server's metadata: kserve, platform OpenVINO
    assert document["model"]["sha256"] is None  # the endpoint's files are not ours to read
    assert document["model"]["version"] == server[1].models["bone-marrow-fp32"]["version"]
    assert document["server"] == document["client"]  # loopback: this machine
    assert path.name.rsplit("-", 1)[0].endswith("-endpoint-kserve-openvino-fp32")


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_model_the_server_does_not_have_is_a_404_listing_what_it_has(server, protocol):
    config = bench_config(server, protocol=protocol, precision="fp16")
    with pytest.raises(BenchError) as err:
        run_bench(config, target="local", progress=lambda line: None, retry=RETRY)
    message = str(err.value)
    assert message.startswith("model bone-marrow-fp16 is not served by ")
    assert "(it serves: bone-marrow-fp32, bone-marrow-int8)" in message


@pytest.mark.parametrize("client_class", [RestClient, GrpcClient])
def test_a_wrong_shaped_request_is_a_400_with_the_servers_message_and_no_retry(server, client_class):
    info = server[1]
    endpoint = info.http_url if client_class is RestClient else info.grpc_target
    client = client_class(endpoint, "bone-marrow-int8", timeout_seconds=10, retry=RETRY)
    calls = 0

    def call():
        nonlocal calls
        calls += 1
        return client.infer(np.zeros((2, 32, 32, 3), np.float32))

    try:
        with pytest.raises(BadRequest) as err:
            with_retries(call, RETRY)
    finally:
        client.close()
    assert calls == 1
    message = str(err.value)
    assert "HTTP 400" in message if client_class is RestClient else "INVALID_ARGUMENT" in message
    assert f"[N, {S}, {S}, 3]" in message and "[2, 32, 32, 3]" in message  # the server's own words


def test_a_server_serving_another_image_size_fails_the_metadata_check(tmp_path, server, served_repository):
    # This repository's model card says 32 px; the server serves the 64 px model.
    models = tmp_path / "models"
    shutil.copytree(served_repository / "models", models)
    for card in models.glob("*/*/model_card.json"):
        data = json.loads(card.read_text())
        card.write_text(json.dumps({**data, "image_size": 32}))
    config = make_config(
        artifacts_dir(tmp_path / "artifacts", served_repository, models), free_ports(2), protocol="rest"
    )
    with pytest.raises(BenchError) as err:
        run_bench(
            config, target="endpoint", endpoint=server[1].http_url, progress=lambda line: None, retry=RETRY
        )
    assert str(err.value).startswith(
        f"wrong input shape: model bone-marrow-int8 expects 'image' FP32 [-1, {S}, {S}, 3], "
        "the bench would send FP32 [4, 32, 32, 3] (image_size 32 from the model card)"
    )


# The real server with one model still loading: registered but not ready until the test says so.
LATE_SERVER = """
import sys, threading, time
from pathlib import Path
from workloads.serving.kserve_server import LoopbackModelServer, configure_quiet_logging
from workloads.serving.model import OpenVINOModel, RuntimeSettings
from workloads.serving.repository import find_model

repository, trigger = Path(sys.argv[1]), Path(sys.argv[4])
http_port, grpc_port = int(sys.argv[2]), int(sys.argv[3])
configure_quiet_logging()
ready = OpenVINOModel(find_model(repository, "bone-marrow", "fp32"), RuntimeSettings())
ready.load()
late = OpenVINOModel(find_model(repository, "bone-marrow", "int8"), RuntimeSettings())

def load_when_triggered():
    while not trigger.exists():
        time.sleep(0.05)
    late.load()

threading.Thread(target=load_when_triggered, daemon=True).start()
server = LoopbackModelServer("127.0.0.1", http_port, grpc_port)
server.register_model(late)  # known to the server, not ready: 503 / UNAVAILABLE until loaded
server.start([ready])
"""


@pytest.fixture
def late_server(tmp_path, served_repository):
    script = tmp_path / "late_server.py"
    script.write_text(LATE_SERVER)
    trigger = tmp_path / "load-now"
    http_port, grpc_port = free_ports(2)
    process = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(served_repository / "models"),
            str(http_port),
            str(grpc_port),
            str(trigger),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rest = RestClient(f"http://127.0.0.1:{http_port}", "bone-marrow-fp32", timeout_seconds=5)
        with_retries(
            rest.server_metadata,
            RetryPolicy(connect_attempts=100, backoff_seconds=0.2, max_backoff_seconds=0.2),
        )
        rest.close()
        yield f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", trigger
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_loading_model_is_retried_until_ready_or_the_deadline(late_server):
    http_url, grpc_target, trigger = late_server
    short = RetryPolicy(backoff_seconds=0.05, max_backoff_seconds=0.1, ready_deadline_seconds=0.5)
    rest = RestClient(http_url, "bone-marrow-int8", timeout_seconds=10, retry=short)
    grpc_client = GrpcClient(grpc_target, "bone-marrow-int8", timeout_seconds=10, retry=short)
    batch = np.zeros((1, S, S, 3), np.float32)
    try:
        started = time.monotonic()
        with pytest.raises(NotReady) as err:
            rest.wait_until_ready()
        assert 0.3 < time.monotonic() - started < 5
        assert str(err.value).startswith("bone-marrow-int8 is not ready (HTTP 503 from ")
        assert "still not ready after" in str(err.value)
        with pytest.raises(NotReady, match="ModelReady"):
            grpc_client.wait_until_ready()
        with pytest.raises(NotReady, match="HTTP 503"):
            rest.infer(batch)  # a measured request is not retried: it fails at once
        # (No gRPC infer here: kserve's gRPC path loads a not-ready model on the spot.)

        patient = RetryPolicy(backoff_seconds=0.1, max_backoff_seconds=0.2, ready_deadline_seconds=30)
        loader = threading.Timer(1.0, trigger.touch)
        loader.start()
        started = time.monotonic()
        with_retries(lambda: rest.infer(batch), patient)  # 503s, then the answer
        assert time.monotonic() - started >= 0.9
        grpc_client.wait_until_ready()
        assert grpc_client.infer(batch).shape == (1, 21)
    finally:
        rest.close()
        grpc_client.close()


@pytest.mark.parametrize("client_class", [RestClient, GrpcClient])
def test_a_request_past_its_timeout_is_a_bench_error(server, client_class):
    info = server[1]
    endpoint = info.http_url if client_class is RestClient else info.grpc_target
    client = client_class(endpoint, "bone-marrow-fp32", timeout_seconds=0.0005, retry=RETRY)
    try:
        with pytest.raises(RequestTimeout, match=r"within 0\.0005 s \(bench\.request_timeout_seconds\)"):
            client.infer(np.zeros((32, S, S, 3), np.float32))
    finally:
        client.close()


# --- a swapped model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swapped_server(tmp_path_factory, served_repository):
    """A local server whose bone-marrow-int8 and bone-marrow-fp32 are both other models.

    (The int8 slot once held the real fp32 IR; on CPUs that run FP32 in bf16 the tiny model's int8
    and fp32 agree within the tolerance, so that swap was not reliably detectable.)

    The bench reads the true repository but the swapped server's endpoints, as after someone
    replaced files under a running `invoke up --target local`.
    """
    root = tmp_path_factory.mktemp("swapped")
    models = root / "models"
    shutil.copytree(served_repository / "models", models)
    (int8,) = models.glob("bone-marrow-int8/[0-9]*")
    (fp32,) = models.glob("bone-marrow-fp32/[0-9]*")
    # "Another model": one class wins for every image — one the real model predicts for none of them.
    manifest = SplitManifest.load(served_repository / "data" / "split.json")
    images = load_bench_images(manifest, 8, S)
    real = AsyncOpenVinoClient(fp32 / "model.xml", model="real", image_size=S, compile_config={})
    predicted = set(np.argmax(real.infer(images.tensors), axis=1).tolist())
    unpredicted = sorted(set(range(21)) - predicted)
    for version, other_class in ((fp32, unpredicted[0]), (int8, unpredicted[1])):
        weights = np.zeros((3, 21), np.float32)
        weights[:, other_class] = 1.0
        tiny_ir(root / f"other-{other_class}", size=S, weights=weights)
        for name in ("model.xml", "model.bin"):
            shutil.copyfile(root / f"other-{other_class}" / name, version / name)
    for version in (int8, fp32):
        reseal(version)  # replaced with matching checksums: `up` serves them, the known answer must not pass

    server_artifacts = artifacts_dir(root / "served", served_repository, models)
    server_config = make_config(server_artifacts, free_ports(2))
    start_server(server_config)
    bench_artifacts = artifacts_dir(root / "bench", served_repository)
    (bench_artifacts / "serving").mkdir()
    (bench_artifacts / "serving" / "local").symlink_to(server_config.paths.local_server)
    yield bench_artifacts
    local.stop(server_config, progress=lambda line: None)


def test_int8_swapped_for_fp32_fails_the_known_answer_check(swapped_server):
    config = make_config(swapped_server, free_ports(2), precision="int8")
    lines: list[str] = []
    with pytest.raises(BenchError) as err:
        run_bench(config, target="local", progress=lines.append, retry=RETRY)
    message = str(err.value)
    assert message.startswith("known-answer check before the run failed: ")
    assert "of 8 images got another top-1 class from bone-marrow-int8" in message
    assert "allowed 0.001" in message
    assert not any(line.startswith("batch 1/3") for line in lines)  # nothing was measured
    assert not config.paths.bench_results.exists()


def test_another_model_under_the_name_fails_naming_how_many_disagreed(swapped_server):
    config = make_config(swapped_server, free_ports(2), precision="fp32", protocol="rest")
    with pytest.raises(
        BenchError, match=r"^known-answer check before the run failed: 8 of 8 images got another"
    ):
        run_bench(config, target="local", progress=lambda line: None, retry=RETRY)


# --- in process ---------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_in_process_runtimes_produce_results(tmp_path, served_repository, runtime):
    config = make_config(
        artifacts_dir(tmp_path / "artifacts", served_repository), free_ports(2), precision="int8"
    )
    document, path = run_bench(config, target="local", runtime=runtime, progress=lambda line: None)
    validate_results(document)
    assert (document["target"], document["protocol"], document["runtime"]) == (
        "in-process",
        "in-process",
        runtime,
    )
    assert (document["endpoint"], document["server"], document["versions"]["server"]) == (None, None, None)
    assert document["known_answer"] == {"images": 8, "before": "pass", "after": "pass"}
    assert document["scenarios"]["batch"]["summary"]["images_per_second"]["median"] > 0
    assert document["scenarios"]["realtime"]["summary"]["p99_ms"]["median"] > 0
    if runtime == "openvino":
        (version,) = (config.paths.model_repository / "bone-marrow-int8").iterdir()
        assert document["model"]["precision"] == "int8"
        assert document["model"]["sha256"] == sha256_file(version / "model.bin")
        assert document["settings"]["performance_hint"] == "THROUGHPUT"
        assert path.name.rsplit("-", 1)[0].endswith("-in-process-openvino-int8")  # then a random token
    else:
        run_id = document["model"]["run_id"]
        saved_model_pb = config.paths.runs / run_id / "saved_model" / "saved_model.pb"
        assert document["model"]["precision"] == "fp32" and document["model"]["version"] is None
        assert document["model"]["sha256"] == sha256_file(saved_model_pb)
        assert document["versions"]["tensorflow"].startswith("2.")
        assert path.name.rsplit("-", 1)[0].endswith("-in-process-tensorflow-fp32")  # then a random token


def test_a_second_bench_of_this_machine_refuses_while_the_first_holds_its_lock(server):
    from workloads.bench.conditions import THIS_MACHINE, HostLock, lock_dir

    config = bench_config(server, protocol="grpc", precision="int8")
    before = sorted(config.paths.bench_results.glob("*.json")) if config.paths.bench_results.exists() else []
    first = HostLock(
        THIS_MACHINE, endpoint="http://127.0.0.1:1", directory=lock_dir(), owner="the first bench"
    )
    with first, pytest.raises(BenchError) as err:
        run_bench(config, target="local", progress=lambda line: None, retry=RETRY)
    message = str(err.value)
    assert message.startswith("another bench is measuring this machine (pid ")
    assert "the first bench" in message and "\n" not in message
    after = sorted(config.paths.bench_results.glob("*.json")) if config.paths.bench_results.exists() else []
    assert after == before  # nothing recorded


def test_a_busy_machine_is_recorded_and_marked(server):
    from workloads.bench.conditions import LoadMonitor

    config = bench_config(server, protocol="grpc", precision="int8", known_answer_images=0)
    lines: list[str] = []
    document, path = run_bench(
        config,
        target="local",
        scenarios=("realtime",),
        progress=lines.append,
        retry=RETRY,
        load_monitor=lambda here: LoadMonitor(
            here, runnable_probe=lambda: 50.0, load_probe=lambda: 50.0, cpus=2
        ),
    )
    conditions = document["conditions"]
    assert conditions["machine"] == "busy" and conditions["server_on_this_machine"] is True
    assert conditions["reasons"] == ["runnable tasks before the scenarios 50.00 > 2 (1 per CPU × 2 CPUs)"]
    assert conditions["seconds"] > 0 and conditions["client_cpu_seconds"] >= 0
    assert json.loads(path.read_text())["conditions"] == conditions
    assert any(line.startswith("warning: measured on a busy machine — runnable tasks") for line in lines)
    rows = list(csv.DictReader((config.paths.bench_results / "results.csv").open()))
    assert rows[-1]["machine"] == "busy"


def test_sigint_ends_a_running_bench_with_one_line(server):
    """A real Ctrl-C to `invoke bench` in the middle of a scenario: exit 130, one line, no traceback."""
    config, _ = server
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        INVOKE_BMC_BENCH_WARMUP_SECONDS="0.1",
        INVOKE_BMC_BENCH_MIN_REQUESTS="5",
        INVOKE_BMC_BENCH_KNOWN_ANSWER_IMAGES="8",
        INVOKE_BMC_BENCH_REQUEST_TIMEOUT_SECONDS="10",
    )
    command = [sys.executable, "-m", "invoke", "--search-root", str(Path(__file__).resolve().parents[1])]
    command += ["bench", "--artifacts-dir", str(config.artifacts_dir), "--target", "local"]
    # 20 repetitions of >= 2 s: the interrupt lands while requests are in flight, long before the end.
    command += ["--scenario", "batch", "--protocol", "rest", "--precision", "int8", "--batch-size", "4"]
    command += ["--concurrency", "2", "--repetitions", "20", "--min-duration", "2"]
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert bench.stdout is not None
        seen = []
        for line in bench.stdout:  # bounded: the bench ends on its own after its 20 repetitions
            seen.append(line)
            if line.startswith("batch 1/20:"):
                break
        assert seen and seen[-1].startswith("batch 1/20:"), "".join(seen)
        bench.send_signal(signal.SIGINT)
        _, stderr = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert bench.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()][-1] == "error: interrupted"
    assert sum(line.startswith("error:") for line in stderr.splitlines()) == 1
