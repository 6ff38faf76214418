"""`invoke up|down --target local`: the background model server's life cycle and its failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from loopback import free_ports
from test_integrity import reseal

from contracts.config import load_config
from contracts.errors import ServingError
from workloads.serving import local
from workloads.serving.repository import find_model
from workloads.targets.local import LocalTarget

pytestmark = pytest.mark.slow


def make_config(artifacts, **serving):
    http_port, grpc_port = free_ports()
    settings = {"http_port": http_port, "grpc_port": grpc_port, "start_timeout_seconds": 60.0, **serving}
    return load_config({"artifacts_dir": str(artifacts), "serving": settings})


@pytest.fixture
def artifacts(tmp_path, served_repository):
    """An artifacts folder of its own (pid/log/endpoints files) that serves the shared repository."""
    (tmp_path / "models").symlink_to(served_repository / "models")
    return tmp_path


@pytest.fixture
def lines():
    return []


def ready(info: local.ServerInfo) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{info.http_url}/v2/health/ready", timeout=5) as response:
        return json.loads(response.read()) == {"ready": True}


def alive(pid: int) -> bool:
    return local._is_our_server(pid)


def test_start_is_idempotent_and_stop_stops(artifacts, lines):
    config = make_config(artifacts)
    info = local.start(config, progress=lines.append)
    try:
        folder = config.paths.local_server
        assert ready(info) and alive(info.pid)
        assert set(info.models) == {"bone-marrow-fp32", "bone-marrow-int8"}
        assert info.http_url == f"http://127.0.0.1:{config.serving.http_port}"
        assert info.grpc_target == f"127.0.0.1:{config.serving.grpc_port}"
        for name, model in info.models.items():
            bin_path = artifacts / "models" / name / str(model["version"]) / "model.bin"
            assert (
                model["sha256"] == find_model(artifacts / "models", "bone-marrow", model["precision"]).sha256
            )
            assert bin_path.is_file() and model["image_size"] == 64
        state = json.loads((folder / "server.pid").read_text())
        assert state["pid"] == info.pid and state["token"] == info.token and len(info.token) == 32
        assert state["folder"] == info.folder == str(folder.resolve())
        assert (state["http_port"], state["grpc_port"]) == (
            config.serving.http_port,
            config.serving.grpc_port,
        )
        assert local.ServerInfo.from_dict(json.loads((folder / "endpoints.json").read_text())) == info
        assert any("starting the local model server" in line for line in lines)

        lines.clear()
        again = local.start(config, progress=lines.append)
        assert again.pid == info.pid
        assert lines and "already running" in lines[0]
        assert local.status(config) == info
    finally:
        assert local.stop(config, progress=lines.append) is True
    assert not alive(info.pid)
    assert not (folder / "server.pid").exists() and not (folder / "endpoints.json").exists()
    assert (folder / "server.log").is_file()
    assert local.status(config) is None
    lines.clear()
    assert local.stop(config, progress=lines.append) is False
    assert lines == ["the local model server is not running"]


def test_other_settings_restart_the_running_server(artifacts, lines):
    config = make_config(artifacts, precisions=["int8"])
    first = local.start(config, progress=lines.append)
    try:
        tuned = {"performance_hint": "LATENCY", "num_streams": 1, "inference_threads": 1, "nireq": 3}
        latency = load_config({"artifacts_dir": str(artifacts), "serving": {**_serving(config), **tuned}})
        second = local.start(latency, progress=lines.append)
        assert second.pid != first.pid and not alive(first.pid)
        assert second.settings["performance_hint"] == "LATENCY"
        assert any("restarting the local model server" in line for line in lines)
        # OVMS-style settings reach OpenVINO: what the compiled model reports is logged.
        log = (config.paths.local_server / "server.log").read_text()
        assert "bone-marrow-int8 version 1" in log
        assert "LATENCY · streams 1 · inference threads 1 · nireq 3" in log
    finally:
        local.stop(config, progress=lines.append)


def test_stale_pid_file_is_cleaned_up(artifacts, lines):
    config = make_config(artifacts, precisions=["int8"])
    folder = config.paths.local_server
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "server.pid").write_text(f"{dead.pid}\n")
    (folder / "endpoints.json").write_text(json.dumps({"pid": dead.pid, "http_url": "http://127.0.0.1:1"}))
    assert local.status(config) is None
    info = local.start(config, progress=lines.append)
    try:
        assert info.pid != dead.pid and ready(info)
    finally:
        local.stop(config, progress=lines.append)

    # A pid file naming a live process that is not our server (a reused pid) is stale too: that
    # process is left alone.
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.pid").write_text(f"{os.getpid()}\n")
    lines.clear()
    assert local.stop(config, progress=lines.append) is False
    assert "stale pid file" in lines[0]
    assert not (folder / "server.pid").exists()


def test_port_in_use_is_a_clear_error_before_spawning(artifacts):
    config = make_config(artifacts)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", config.serving.http_port))
        busy.listen()
        with pytest.raises(
            ServingError, match=r"another process uses the port; .*serving\.http_port"
        ) as error:
            local.start(config, progress=lambda line: None)
    assert "\n" not in str(error.value)
    assert not (config.paths.local_server / "server.pid").exists()


def test_missing_repository_fails_before_spawning(tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(ServingError, match="run `invoke optimize`"):
        local.start(config, progress=lambda line: None)
    assert not (config.paths.local_server / "server.pid").exists()


def test_a_server_that_dies_while_starting_is_reported_in_one_line(tmp_path, served_repository):
    shutil.copytree(served_repository / "models", tmp_path / "models")
    for xml in (tmp_path / "models").glob("bone-marrow-int8/*/model.xml"):
        xml.write_text("<net>not an IR")
        reseal(xml.parent)  # past `up`'s sha256 check: the server process itself must fail
    config = make_config(tmp_path, precisions=["int8"])
    with pytest.raises(
        ServingError, match="exited with code 1 while starting: error: OpenVINO cannot load"
    ) as error:
        local.start(config, progress=lambda line: None)
    assert "\n" not in str(error.value) and "server.log" in str(error.value)
    assert not (config.paths.local_server / "server.pid").exists()
    assert not (config.paths.local_server / "endpoints.json").exists()


def test_a_server_that_is_not_ready_in_time_is_killed(artifacts):
    config = make_config(artifacts, start_timeout_seconds=0.3)
    lines = []
    with pytest.raises(ServingError, match=r"not ready after 0\.3 s \(serving\.start_timeout_seconds\)"):
        local.start(config, progress=lines.append)
    pid = int(lines[0].split("(pid ")[1].split(")")[0])
    assert not alive(pid)
    assert not (config.paths.local_server / "server.pid").exists()


def _serving(config):
    serving = config.serving
    return {
        "http_port": serving.http_port,
        "grpc_port": serving.grpc_port,
        "precisions": list(serving.precisions),
        "start_timeout_seconds": serving.start_timeout_seconds,
    }


def test_a_newly_published_version_restarts_the_server_on_it(tmp_path, served_repository):
    shutil.copytree(served_repository / "models", tmp_path / "models")
    config = make_config(tmp_path, precisions=["int8"])
    lines = []
    first = local.start(config, progress=lines.append)
    try:
        old = first.models["bone-marrow-int8"]["version"]
        model_dir = tmp_path / "models" / "bone-marrow-int8"
        shutil.copytree(model_dir / str(old), model_dir / str(old + 1))
        # ... and committed, as a publish does last (an uncommitted folder is never served).
        version_set = tmp_path / "models" / "version_set.json"
        record = json.loads(version_set.read_text())
        record["models"]["bone-marrow"]["versions"]["int8"] = old + 1
        version_set.write_text(json.dumps(record))
        second = local.start(config, progress=lines.append)
        assert second.pid != first.pid
        assert second.models["bone-marrow-int8"]["version"] == old + 1
        assert any("its models or settings differ" in line for line in lines)
    finally:
        local.stop(config, progress=lines.append)


def _wait_gone(pid: int) -> None:
    for _ in range(300):  # bounded: a SIGKILLed process is gone (and reaped) within moments
        if not alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive after SIGKILL")


def test_a_copied_artifacts_folder_never_takes_the_original_server_for_its_own(
    artifacts, tmp_path_factory, lines
):
    config = make_config(artifacts, precisions=["int8"])
    info = local.start(config, progress=lines.append)
    copy = tmp_path_factory.mktemp("copy") / "artifacts"
    state = config.paths.local_server
    try:
        shutil.copytree(artifacts, copy, symlinks=True)  # as `cp -r`, serving/local/ state included
        copy_state = copy / state.relative_to(artifacts)
        same_ports = load_config({"artifacts_dir": str(copy), "serving": _serving(config)})
        assert local.status(same_ports) is None
        # `invoke bench --target local` in the copy does not bench the original's server.
        with pytest.raises(ServingError, match=r"was copied from .*not started from this folder"):
            LocalTarget().server_record(same_ports)

        # `down` in the copy: one line, the original's server keeps serving.
        lines.clear()
        assert local.stop(same_ports, progress=lines.append) is False
        assert len(lines) == 1
        assert f"did not stop pid {info.pid}" in lines[0] and str(state.resolve()) in lines[0]
        assert alive(info.pid) and ready(info)
        assert local.status(config) == info

        # `up` in the copy on the same ports: the copied state is not its server; the port clash is one line.
        shutil.copytree(state, copy_state, dirs_exist_ok=True)
        lines.clear()
        with pytest.raises(ServingError, match="another process uses the port") as error:
            local.start(same_ports, progress=lines.append)
        assert "\n" not in str(error.value)
        assert any(line.startswith("ignoring") and f"pid {info.pid}" in line for line in lines)
        assert alive(info.pid) and ready(info)

        # `up` in the copy on ports of its own: a server of its own, which `down` there stops alone.
        shutil.copytree(state, copy_state, dirs_exist_ok=True)
        own = make_config(copy, precisions=["int8"])
        mine = local.start(own, progress=lines.append)
        try:
            assert mine.pid != info.pid and mine.token != info.token
            assert mine.folder == str(copy_state.resolve()) and ready(mine)
        finally:
            assert local.stop(own, progress=lines.append) is True
        assert not alive(mine.pid)
        assert alive(info.pid) and ready(info) and local.status(config) == info
    finally:
        assert local.stop(config, progress=lines.append) is True
    assert not alive(info.pid)


def test_a_restart_after_sigkill_keeps_the_dead_servers_log(artifacts, lines):
    config = make_config(artifacts, precisions=["int8"])
    folder = config.paths.local_server
    first = local.start(config, progress=lines.append)
    try:
        os.kill(first.pid, signal.SIGKILL)
        _wait_gone(first.pid)
        dead_log = (folder / "server.log").read_text()
        assert f" {first.pid} INFO loaded bone-marrow-int8" in dead_log
        lines.clear()
        second = local.start(config, progress=lines.append)
        assert second.pid != first.pid
        assert (folder / "server.log.1").read_text() == dead_log
        assert f" {first.pid} INFO" not in (folder / "server.log").read_text()
        assert any("kept the previous server log as" in line for line in lines)
    finally:
        local.stop(config, progress=lines.append)


def test_a_truncated_model_bin_reports_openvinos_real_cause(tmp_path, served_repository):
    shutil.copytree(served_repository / "models", tmp_path / "models")
    for model_bin in (tmp_path / "models").glob("bone-marrow-int8/*/model.bin"):
        data = model_bin.read_bytes()
        model_bin.write_bytes(data[: len(data) // 2])
    # The server process itself (`up` may refuse the file earlier on its recorded sha256).
    http_port, grpc_port = free_ports()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "workloads.serving.server"),
            *("--model-repository", str(tmp_path / "models"), "--precisions", "int8"),
            *("--http-port", str(http_port), "--grpc-port", str(grpc_port)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: OpenVINO cannot load") and "model.xml" in error
    assert error.endswith("Incorrect weights in bin file!")
    assert "core.cpp" not in error
    log = tmp_path / "server.log"
    log.write_text(result.stdout + result.stderr)
    assert local._log_summary(log) == error
