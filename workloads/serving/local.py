"""Run the model server in the background on this machine (`invoke up|down --target local`).

Files in ``config.paths.local_server``: ``server.pid`` (a :class:`ServerState`: the pid, this
folder resolved, the ports and a random start token), ``server.log`` (the server's stdout and
stderr; the previous ones are kept as ``server.log.1`` … ``server.log.<LOG_KEEP>``) and
``endpoints.json`` (a :class:`ServerInfo`; ``invoke bench --target local`` reads its endpoints
there). Starting is idempotent: a healthy server with the same models and settings is left alone;
one with other settings is restarted; files of a server that died are cleaned up.

A server is this folder's own only when the pid file was written for this folder, the process runs
the server module with this start token in its environment, and (for "ready") its own endpoint
reports the token (``GET /v2`` lists ``bmc-instance/<token>``). The state of a copied or moved
artifacts folder never matches: ``down`` there leaves the other folder's server running, ``up``
starts a server of its own (or stops at the port clash with one line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import workloads
from contracts.config import ToolkitConfig
from contracts.errors import ServingError
from contracts.files import atomic_write_text
from contracts.model_repository import ModelRepository, ModelVersion
from workloads.progress import Progress, print_progress
from workloads.serving.limits import RequestLimits
from workloads.serving.repository import find_model, find_models, served_entry, verify_models

PID_FILE = "server.pid"
LOG_FILE = "server.log"
ENDPOINTS_FILE = "endpoints.json"
SERVER_MODULE = "workloads.serving.server"
RUNTIME = "kserve-openvino"
STOP_GRACE_SECONDS = 15.0
PROGRESS_EVERY_SECONDS = 5.0
LOG_KEEP = 3  # previous server logs kept as server.log.1 (newest) … server.log.3
# The start token reaches the server in this variable; it lists it in its V2 server metadata.
INSTANCE_ENV = "BMC_SERVER_INSTANCE"
INSTANCE_EXTENSION_PREFIX = "bmc-instance/"


@dataclass(frozen=True)
class ServerState:
    """``server.pid``: which server this folder started (JSON; a bare pid is an older toolkit's)."""

    pid: int
    folder: str = ""  # the state folder (config.paths.local_server) resolved, when it was started
    artifacts_dir: str = ""  # resolved
    token: str = ""  # random, per start
    host: str = ""
    http_port: int = 0
    grpc_port: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    http_url: str  # e.g. http://127.0.0.1:8000 (V2 REST under /v2)
    grpc_target: str  # e.g. 127.0.0.1:8001
    # {served name: {"version", "sha256" (model.bin), "model_card_sha256", "precision", "image_size", "path"}}
    models: dict[str, dict[str, Any]]
    log_path: str
    started_at: str  # ISO 8601 UTC
    runtime: str = RUNTIME
    versions: dict[str, str | None] = dataclasses.field(default_factory=dict)  # kserve, openvino
    # What the server was started with (the idempotence check compares these).
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    folder: str = ""  # the state folder that started it, resolved (a copied endpoints.json names another)
    token: str = ""  # its start token (see ServerState)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def start(config: ToolkitConfig, *, progress: Progress = print_progress) -> ServerInfo:
    """Start the local model server (or find it running) and wait until it is ready."""
    serving = config.serving
    folder = config.paths.local_server
    served = find_models(config.paths.model_repository, config.optimize.model_name, serving.precisions)
    repository = ModelRepository(config.paths.model_repository)
    if leftovers := repository.uncommitted_names(config.optimize.model_name, serving.precisions):
        progress(
            f"not serving {', '.join(leftovers)}: left by an interrupted publish, never committed "
            "(the next `invoke optimize` removes them); serving the committed version set"
        )
    verify_models(served)  # the sha256 recorded at publish, before anything is (re)started
    settings = _settings(config)
    wanted_models = {m.name: served_entry(m) for m in served}

    kind, state = _identify(folder)
    if kind in ("foreign", "unconfirmed") and state is not None:
        progress(f"ignoring {folder / PID_FILE}: {_not_ours(kind, state, folder)}")
    running = _running_server(folder, kind, state)
    if running is not None:
        info, healthy = running
        if healthy and info.settings == settings and _same_models(info.models, wanted_models):
            progress(f"local model server already running (pid {info.pid}): {_describe(info)}")
            return info
        reason = "it is not ready" if not healthy else "its models or settings differ"
        progress(f"restarting the local model server (pid {info.pid}): {reason}")
        _terminate(info.pid, progress)
    _remove_state(folder)

    host = serving.host
    for key, port in (("http_port", serving.http_port), ("grpc_port", serving.grpc_port)):
        _ensure_port_free(host, port, key)

    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG_FILE
    kept = _rotate_logs(folder)
    if kept:
        progress(f"kept the previous server log as {kept}")
    token = secrets.token_hex(16)
    process = _spawn(config, log_path, token)
    state = ServerState(
        pid=process.pid,
        folder=str(folder.resolve()),
        artifacts_dir=str(Path(config.artifacts_dir).resolve()),
        token=token,
        host=host,
        http_port=serving.http_port,
        grpc_port=serving.grpc_port,
    )
    atomic_write_text(folder / PID_FILE, json.dumps(state.as_dict()) + "\n")
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    progress(
        f"starting the local model server (pid {process.pid}) for {', '.join(m.name for m in served)} · "
        f"{serving.performance_hint} · log {log_path}"
    )
    http_url = f"http://{_client_host(host)}:{serving.http_port}"
    grpc_target = f"{_client_host(host)}:{serving.grpc_port}"
    try:
        _wait_until_ready(
            process, http_url, grpc_target, token, serving.start_timeout_seconds, log_path, progress
        )
        models = _confirm_models(http_url, served, config)
    except BaseException:
        _kill(process)
        _remove_state(folder)
        raise
    info = ServerInfo(
        pid=process.pid,
        http_url=http_url,
        grpc_target=grpc_target,
        models=models,
        log_path=str(log_path),
        started_at=started_at,
        versions={"kserve": _version("kserve"), "openvino": _version("openvino")},
        settings=settings,
        folder=state.folder,
        token=token,
    )
    atomic_write_text(folder / ENDPOINTS_FILE, json.dumps(info.as_dict(), indent=2) + "\n")
    progress(f"local model server ready (pid {info.pid}): {_describe(info)}")
    return info


def stop(config: ToolkitConfig, *, progress: Progress = print_progress) -> bool:
    """Stop the local model server; False (and a line saying so) when none was running."""
    folder = config.paths.local_server
    kind, state = _identify(folder)
    if state is None or kind != "ours":
        _remove_state(folder)
        if state is not None and kind in ("foreign", "unconfirmed"):
            progress(f"did not stop pid {state.pid}: {_not_ours(kind, state, folder)}")
        else:
            stale = f" (removed the stale pid file of pid {state.pid})" if state is not None else ""
            progress(f"the local model server is not running{stale}")
        return False
    pid = state.pid
    _terminate(pid, progress)
    _remove_state(folder)
    progress(f"stopped the local model server (pid {pid})")
    return True


def status(config: ToolkitConfig) -> ServerInfo | None:
    """The running, ready local server's info, or None."""
    running = _running_server(config.paths.local_server)
    if running is None or not running[1]:
        return None
    return running[0]


def _settings(config: ToolkitConfig) -> dict[str, Any]:
    serving = config.serving
    return {
        "model_repository": str(config.paths.model_repository.resolve()),
        "model_name": config.optimize.model_name,
        "precisions": list(dict.fromkeys(serving.precisions)),
        "host": serving.host,
        "http_port": serving.http_port,
        "grpc_port": serving.grpc_port,
        "performance_hint": serving.performance_hint,
        "num_streams": serving.num_streams,
        "inference_threads": serving.inference_threads,
        "nireq": serving.nireq,
        **RequestLimits.from_config(serving).as_dict(),
    }


def _same_models(running: dict[str, dict[str, Any]], wanted: dict[str, dict[str, Any]]) -> bool:
    def key(models: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
        return {name: (m.get("version"), m.get("sha256")) for name, m in models.items()}

    return key(running) == key(wanted)


def _describe(info: ServerInfo) -> str:
    models = ", ".join(f"{name} v{m['version']}" for name, m in info.models.items())
    return f"REST {info.http_url} · gRPC {info.grpc_target} · {models} · log {info.log_path}"


def _running_server(
    folder: Path, kind: str | None = None, state: ServerState | None = None
) -> tuple[ServerInfo, bool] | None:
    """(info, ready) of a live server this folder started; None when there is none."""
    if kind is None:
        kind, state = _identify(folder)
    if kind != "ours" or state is None:
        return None
    pid = state.pid
    try:
        info = ServerInfo.from_dict(json.loads((folder / ENDPOINTS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        # Alive but without endpoints: a start that never finished. Report it as not ready.
        return ServerInfo(pid, "", "", {}, str(folder / LOG_FILE), ""), False
    if info.pid != pid or info.token != state.token:
        return info, False
    return info, _http_ready(info.http_url) and _endpoint_token(info.http_url) == state.token


def _identify(folder: Path) -> tuple[str, ServerState | None]:
    """Whose server ``folder``'s pid file names, with the state read from it.

    ``none`` (no pid file), ``stale`` (its process is gone, or is not a model server),
    ``foreign`` (written for another folder: a copied or moved artifacts folder),
    ``unconfirmed`` (a model server that does not carry the recorded start token), ``ours``.
    """
    state = _read_state(folder)
    if state is None:
        return "none", None
    if not _is_our_server(state.pid):
        return "stale", state
    if not state.token:
        return "unconfirmed", state
    if state.folder != str(folder.resolve()):
        return "foreign", state
    carried = _process_token(state.pid)
    if carried is not None:
        # The process's own environment is authoritative; a different token is another server
        # that got the pid of ours after it died.
        return ("ours", state) if carried == state.token else ("stale", state)
    # No procfs: the server must confirm the token over its own endpoint.
    url = f"http://{_client_host(state.host)}:{state.http_port}"
    return ("ours" if _endpoint_token(url) == state.token else "unconfirmed"), state


def _not_ours(kind: str, state: ServerState, folder: Path) -> str:
    if kind == "foreign":
        return (
            f"that server (pid {state.pid}) was started from {state.folder or 'another folder'}, "
            f"not from {folder.resolve()} (a copied artifacts folder?); it is left running — stop it "
            "with `invoke down --target local` in the folder that started it"
        )
    return (
        f"pid {state.pid} runs a model server that does not confirm this folder's start token; "
        f"it is left running — stop it from the folder that started it, or with `kill {state.pid}`"
    )


def _rotate_logs(folder: Path) -> Path | None:
    """server.log → server.log.1 → … → server.log.<LOG_KEEP> (the oldest is dropped)."""
    log = folder / LOG_FILE
    if not log.exists():
        return None
    for n in range(LOG_KEEP, 0, -1):
        source = log if n == 1 else folder / f"{LOG_FILE}.{n - 1}"
        if source.exists():
            os.replace(source, folder / f"{LOG_FILE}.{n}")
    return folder / f"{LOG_FILE}.1"


def _spawn(config: ToolkitConfig, log_path: Path, token: str) -> subprocess.Popen:
    serving = config.serving
    command = [
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--model-repository",
        str(config.paths.model_repository.resolve()),
        "--model-name",
        config.optimize.model_name,
        "--precisions",
        ",".join(dict.fromkeys(serving.precisions)),
        "--host",
        serving.host,
        "--http-port",
        str(serving.http_port),
        "--grpc-port",
        str(serving.grpc_port),
        "--performance-hint",
        serving.performance_hint,
        "--num-streams",
        str(serving.num_streams),
        "--inference-threads",
        str(serving.inference_threads),
        "--nireq",
        str(serving.nireq),
        *RequestLimits.from_config(serving).arguments(),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[INSTANCE_ENV] = token
    # The server imports this checkout's workloads package even when it is not installed.
    project_root = str(Path(workloads.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH", "")) if p)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the terminal or the invoke process
            env=env,
            close_fds=True,
        )


def _wait_until_ready(
    process: subprocess.Popen,
    http_url: str,
    grpc_target: str,
    token: str,
    timeout: float,
    log_path: Path,
    progress: Progress,
) -> None:
    started = time.monotonic()
    next_report = started + PROGRESS_EVERY_SECONDS
    while True:
        code = process.poll()
        if code is not None:
            raise ServingError(
                f"the local model server exited with code {code} while starting: {_log_summary(log_path)} "
                f"(full log: {log_path})"
            )
        if _http_ready(http_url) and _tcp_open(grpc_target) and _endpoint_token(http_url) == token:
            return
        now = time.monotonic()
        if now - started > timeout:
            raise ServingError(
                f"the local model server was not ready after {timeout:g} s "
                f"(serving.start_timeout_seconds); last log line: {_log_summary(log_path)} "
                f"(full log: {log_path})"
            )
        if now >= next_report:
            progress(f"waiting for the model server to load its models… {now - started:.0f} s")
            next_report = now + PROGRESS_EVERY_SECONDS
        time.sleep(0.2)


def _confirm_models(
    http_url: str, served: list[ModelVersion], config: ToolkitConfig
) -> dict[str, dict[str, Any]]:
    """The versions the server reports; a version published while it started is looked up again."""
    models = {}
    for model in served:
        reported = _http_json(f"{http_url}/v2/models/{model.name}") or {}
        version = int((reported.get("versions") or [model.version])[0])
        if version != model.version:
            model = find_model(
                config.paths.model_repository, config.optimize.model_name, model.precision, version
            )
        models[model.name] = served_entry(model)
    return models


def _log_summary(log_path: Path, limit: int = 300) -> str:
    """One line from the end of the log: the server's own error line, else the last exception or line."""
    try:
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log written"
    lines = [line for line in lines if line]
    if not lines:
        return "the log is empty"
    tail = lines[-40:]
    chosen = next((line for line in reversed(tail) if line.startswith("error:")), None)
    if chosen is None:
        chosen = next((line for line in reversed(tail) if _looks_like_exception(line)), tail[-1])
    return chosen if len(chosen) <= limit else chosen[: limit - 1] + "…"


def _looks_like_exception(line: str) -> bool:
    head = line.split(":", 1)[0]
    return " " not in head and (head.endswith(("Error", "Exception", "Exit")) or "ERROR" in line)


def _http_ready(http_url: str) -> bool:
    data = _http_json(f"{http_url}/v2/health/ready")
    return bool(data and data.get("ready") is True)


def _endpoint_token(http_url: str) -> str | None:
    """The start token the server at ``http_url`` reports in its V2 server metadata, if any."""
    data = _http_json(f"{http_url}/v2")
    extensions = (data or {}).get("extensions")
    if not isinstance(extensions, list):
        return None
    return next(
        (
            str(e)[len(INSTANCE_EXTENSION_PREFIX) :]
            for e in extensions
            if str(e).startswith(INSTANCE_EXTENSION_PREFIX)
        ),
        None,
    )


def _http_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    # No proxies: the server is on this machine, and HTTP(S)_PROXY must not reroute loopback calls.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tcp_open(target: str, timeout: float = 1.0) -> bool:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


# A multi-threaded server killed a moment ago can already look gone (its main thread exited) while
# its other threads still hold the sockets: give the ports this long to come free before refusing.
PORT_RELEASE_SECONDS = 3.0


def _ensure_port_free(host: str, port: int, key: str, *, wait_seconds: float = PORT_RELEASE_SECONDS) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + wait_seconds
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the servers do: a port in TIME_WAIT after a previous server is reusable.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise ServingError(
                        f"cannot serve on {host}:{port}: {exc.strerror or exc} — another process uses the "
                        f"port; stop it or choose another port with serving.{key}"
                    ) from None
        time.sleep(0.1)


def _client_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _read_state(folder: Path) -> ServerState | None:
    """The pid file's state; a bare pid (an older toolkit's pid file) carries no folder or token."""
    try:
        data = json.loads((folder / PID_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        if isinstance(data, int) and not isinstance(data, bool):
            state = ServerState(pid=data)
        elif isinstance(data, dict):
            names = {f.name for f in dataclasses.fields(ServerState)}
            state = ServerState(**{k: v for k, v in data.items() if k in names})
            state = dataclasses.replace(
                state, pid=int(state.pid), http_port=int(state.http_port), grpc_port=int(state.grpc_port)
            )
        else:
            return None
    except (TypeError, ValueError):
        return None
    return state if state.pid > 0 else None


def _process_token(pid: int) -> str | None:
    """The start token in the process's environment ("" for none); None without procfs."""
    try:
        environ = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = f"{INSTANCE_ENV}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return ""


def _is_our_server(pid: int) -> bool:
    """Alive, not a zombie, and running our server module (a reused pid is someone else's)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: the pid was reused
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():
        return True  # no procfs (macOS): trust the pid file
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state != "Z" and SERVER_MODULE.encode() in cmdline


def _terminate(pid: int, progress: Progress) -> None:
    """SIGTERM, then SIGKILL after a grace period; returns once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while _is_our_server(pid):
        if time.monotonic() > deadline:
            progress(f"the model server (pid {pid}) ignored SIGTERM for {STOP_GRACE_SECONDS:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
        time.sleep(0.1)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _reap(pid: int) -> None:
    # A server started by this very process stays a zombie until reaped.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _remove_state(folder: Path) -> None:
    for name in (ENDPOINTS_FILE, PID_FILE):
        (folder / name).unlink(missing_ok=True)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
