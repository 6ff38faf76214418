"""What else ran while a bench measured: a lock per measured host, and the machine's load.

Two guards keep contaminated figures out of the results:

* :class:`HostLock` — an advisory lock (``fcntl.flock``) per *measured host*, held for the whole
  run, in one lock folder per machine (the system temp folder by default, not the artifacts
  folder: two artifacts folders benching one server must collide too). The key is the host of
  the endpoint without its port, because the REST and gRPC ports of one server share its CPUs;
  a loopback endpoint and the in-process runtimes measure *this machine*, so they share one key.
  A second bench of the same host refuses with one line instead of recording half the throughput.
* :func:`assess` — the tasks runnable just before the scenarios, the 1-minute load average just
  after them, and this process's CPU time over them, decide whether the machine was busy with
  *other* work (see its docstring).
  A busy run is recorded, marked ``conditions.machine = "busy"`` with the reason, and the report
  shows the mark; the probes are injectable so the rule is tested with fixed readings.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from contracts.errors import BenchError

LOCK_DIR_ENV = "BONE_MARROW_BENCH_LOCK_DIR"
LOCK_DIR_NAME = "bone-marrow-bench-locks"
THIS_MACHINE = "this-machine"
# Other work is "busy" above this many runnable tasks per CPU: more than one means the bench's
# threads (or the local server's) had to queue for a CPU.
BUSY_LOAD_PER_CPU = 1.0

LoadProbe = Callable[[], float]  # runnable tasks, or the 1-minute load average
CpuClock = Callable[[], float]  # this process's CPU seconds (user + system, all threads)
WallClock = Callable[[], float]


def one_minute_load() -> float:
    return os.getloadavg()[0]


def runnable_now(*, samples: int = 10, interval: float = 0.1, read: Callable[[], str] | None = None) -> float:
    """Tasks running or runnable right now besides the reader: the median of ``samples`` readings.

    The before reading uses this, not the 1-minute average, which lags: right after a training run
    or a previous bench it still holds their load and would mark a quiet machine busy.
    """
    read = read or (lambda: Path("/proc/loadavg").read_text())
    counts = []
    for index in range(samples):
        try:
            running = int(read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return one_minute_load()  # no procfs: the average is all there is
        counts.append(max(running - 1, 0))  # the reader itself is running
        if index + 1 < samples:
            time.sleep(interval)
    return float(sorted(counts)[len(counts) // 2])


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --- the lock per measured host -----------------------------------------------------------------

_LOOPBACK = re.compile(r"^(localhost|127(\.\d{1,3}){3}|::1|0\.0\.0\.0|::)$")


def measured_host(endpoint: str | None) -> str:
    """The host whose CPUs a bench measures: the endpoint's host, or :data:`THIS_MACHINE`."""
    if not endpoint:
        return THIS_MACHINE  # in-process: the model runs here
    parsed = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
    host = (parsed.hostname or endpoint).strip().lower().rstrip(".")
    return THIS_MACHINE if _LOOPBACK.match(host) else host


def lock_dir() -> Path:
    """``$BONE_MARROW_BENCH_LOCK_DIR``, else ``<system temp>/bone-marrow-bench-locks``."""
    configured = os.environ.get(LOCK_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / LOCK_DIR_NAME


def lock_path(host: str, directory: Path) -> Path:
    slug = re.sub(r"[^a-z0-9.-]+", "_", host)[:60]
    return directory / f"{slug}-{hashlib.sha256(host.encode()).hexdigest()[:12]}.lock"


@dataclass
class HostLock:
    """Exclusive, non-blocking ``flock`` on the host's lock file, released on exit (or death)."""

    host: str  # measured_host(endpoint), or THIS_MACHINE for any server known to run here
    endpoint: str | None = None
    directory: Path = field(default_factory=lock_dir)
    owner: str = ""  # what the holder says about itself (artifacts folder, target)
    _fd: int | None = None
    _writable: bool = False

    @property
    def path(self) -> Path:
        return lock_path(self.host, self.directory)

    def acquire(self) -> HostLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # not ours to change: someone else's folder
            self.directory.chmod(0o1777)  # shared by every user of the machine, like /tmp
        nofollow = getattr(os, "O_NOFOLLOW", 0)  # a shared folder: never follow a planted link
        writable = True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | nofollow, 0o666)
        except PermissionError:
            writable = False  # another user's lock file: flock works on a read-only descriptor too
            try:
                fd = os.open(self.path, os.O_RDONLY | nofollow)
            except OSError as exc:
                raise BenchError(f"cannot open the bench lock {self.path}: {exc.strerror}") from None
        except OSError as exc:
            raise BenchError(f"cannot open the bench lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BenchError(f"cannot lock {self.path}: {exc.strerror}") from None
            where = "this machine" if self.host == THIS_MACHINE else self.host
            raise BenchError(
                f"another bench is measuring {where} ({holder}); two at once would each record "
                f"about half the throughput — wait for it to finish (lock {self.path})"
            ) from None
        holder_text = json.dumps(
            {
                "pid": os.getpid(),
                "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endpoint": self.endpoint,
                "owner": self.owner,
            }
        )
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_text.encode() + b"\n", 0)
        self._writable = writable
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self._writable:
                    os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing drops the flock

    def __enter__(self) -> HostLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "holder unknown"
    text = f"pid {info['pid']} since {info.get('since', '?')}"
    if info.get("endpoint"):
        text += f", endpoint {info['endpoint']}"
    if info.get("owner"):
        text += f", {info['owner']}"
    return text


# --- the machine's load -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    load: float
    cpu_seconds: float
    wall: float


@dataclass
class LoadMonitor:
    """Takes a :class:`Reading` before and after the scenarios; :meth:`conditions` assesses them."""

    server_on_this_machine: bool
    load_probe: LoadProbe = one_minute_load  # after the scenarios
    runnable_probe: LoadProbe = runnable_now  # before them
    cpu_clock: CpuClock = time.process_time
    wall_clock: WallClock = time.monotonic
    cpus: int = field(default_factory=usable_cpus)
    before: Reading | None = None

    def read(self) -> Reading:
        return Reading(self.load_probe(), self.cpu_clock(), self.wall_clock())

    def start(self) -> None:
        self.before = Reading(self.runnable_probe(), self.cpu_clock(), self.wall_clock())

    def conditions(self) -> dict[str, Any]:
        if self.before is None:
            raise RuntimeError("LoadMonitor.conditions() before start()")
        return assess(
            self.before, self.read(), cpus=self.cpus, server_on_this_machine=self.server_on_this_machine
        )


def assess(
    before: Reading,
    after: Reading,
    *,
    cpus: int,
    server_on_this_machine: bool,
    busy_load_per_cpu: float = BUSY_LOAD_PER_CPU,
) -> dict[str, Any]:
    """The ``conditions`` of a result: was the machine busy with work other than this bench's?

    * Before the scenarios nothing of the measurement runs yet, so every task running or runnable
      then (``runnable_now``) is other work.
    * After them the load average also holds this bench's own work: this process's CPU time over
      the span divided by its wall time (``client_load``; it includes the model for the
      in-process runtimes) is subtracted. A server on this machine (loopback endpoint) adds load
      that cannot be told apart from other work, so for it only the before reading counts (the
      host lock still keeps other benches of this machine out).
    * Busy when other work exceeds ``busy_load_per_cpu`` × CPUs at either reading.
    """
    seconds = max(after.wall - before.wall, 0.0)
    cpu_seconds = max(after.cpu_seconds - before.cpu_seconds, 0.0)
    client_load = cpu_seconds / seconds if seconds > 0 else 0.0
    limit = busy_load_per_cpu * cpus
    others = {"before": before.load}
    if not server_on_this_machine:
        others["after"] = max(after.load - client_load, 0.0)
    reasons = [
        f"{'1-minute load besides this bench' if when == 'after' else 'runnable tasks'} {when} the scenarios "
        f"{load:.2f} > {limit:g} ({busy_load_per_cpu:g} per CPU × {cpus} CPUs)"
        for when, load in others.items()
        if load > limit
    ]
    return {
        "machine": "busy" if reasons else "quiet",
        "reasons": reasons,
        "cpus": cpus,
        "load_before": round(before.load, 2),
        "load_after": round(after.load, 2),
        "seconds": round(seconds, 3),
        "client_cpu_seconds": round(cpu_seconds, 3),
        "client_load": round(client_load, 2),
        "server_on_this_machine": server_on_this_machine,
    }
