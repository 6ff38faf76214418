"""The bench's guards against contaminated figures: one bench per measured host, and busy-machine marks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contracts.errors import BenchError
from workloads.bench.conditions import (
    THIS_MACHINE,
    HostLock,
    LoadMonitor,
    Reading,
    assess,
    lock_dir,
    measured_host,
    runnable_now,
)


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("http://127.0.0.1:8000", THIS_MACHINE),
        ("127.0.0.1:8001", THIS_MACHINE),
        ("http://localhost:8000/", THIS_MACHINE),
        ("[::1]:8001", THIS_MACHINE),
        (None, THIS_MACHINE),  # in-process
        ("http://Bench-C6I.example.com:80", "bench-c6i.example.com"),
        ("bench-c6i.example.com:8001", "bench-c6i.example.com"),  # gRPC port of the same server
        ("10.0.3.7:9000", "10.0.3.7"),
    ],
)
def test_the_measured_host_ignores_the_port_and_folds_loopback_into_this_machine(endpoint, host):
    assert measured_host(endpoint) == host


def test_the_default_lock_folder_is_machine_wide_and_can_be_moved(monkeypatch, tmp_path):
    monkeypatch.delenv("BONE_MARROW_BENCH_LOCK_DIR")
    assert lock_dir().name == "bone-marrow-bench-locks"
    monkeypatch.setenv("BONE_MARROW_BENCH_LOCK_DIR", str(tmp_path))
    assert lock_dir() == tmp_path


def test_a_second_bench_of_the_same_host_refuses_in_one_line(tmp_path):
    first = HostLock(THIS_MACHINE, endpoint="http://127.0.0.1:8000", directory=tmp_path, owner="artifacts A")
    with first:
        # The REST and gRPC ports of one server, from another artifacts folder: the same host.
        second = HostLock(THIS_MACHINE, endpoint="127.0.0.1:8001", directory=tmp_path, owner="artifacts B")
        with pytest.raises(BenchError) as err:
            second.acquire()
        message = str(err.value)
        assert message.startswith("another bench is measuring this machine (pid ")
        assert "endpoint http://127.0.0.1:8000, artifacts A" in message and "wait for it to finish" in message
        assert "\n" not in message
        # Another host is not held.
        with HostLock("bench-c5.example.com", directory=tmp_path):
            pass
    with second:  # released on exit
        pass


def test_a_lock_held_by_another_process_refuses_and_its_death_releases_it(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from workloads.bench.conditions import HostLock
                lock = HostLock("bench-c6i", endpoint="bench-c6i:8001", directory=Path({str(tmp_path)!r}))
                lock.acquire()
                print("held", flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BenchError, match=rf"^another bench is measuring bench-c6i \(pid {holder.pid} "):
            HostLock("bench-c6i", endpoint="http://bench-c6i:8000", directory=tmp_path).acquire()
    finally:
        holder.kill()  # no clean release: the kernel drops the flock with the process
        holder.wait(timeout=30)
    with HostLock("bench-c6i", directory=tmp_path):
        pass


def reading(load: float, cpu: float = 0.0, wall: float = 0.0) -> Reading:
    return Reading(load=load, cpu_seconds=cpu, wall=wall)


def test_a_quiet_machine():
    conditions = assess(reading(0.4), reading(2.6, cpu=20.0, wall=10.0), cpus=4, server_on_this_machine=False)
    assert conditions == {
        "machine": "quiet",
        "reasons": [],
        "cpus": 4,
        "load_before": 0.4,
        "load_after": 2.6,
        "seconds": 10.0,
        "client_cpu_seconds": 20.0,
        "client_load": 2.0,
        "server_on_this_machine": False,
    }


def test_busy_before_the_scenarios():
    conditions = assess(reading(5.0), reading(5.0, cpu=1, wall=10), cpus=4, server_on_this_machine=True)
    assert conditions["machine"] == "busy"
    assert conditions["reasons"] == ["runnable tasks before the scenarios 5.00 > 4 (1 per CPU × 4 CPUs)"]


def test_the_bench_own_load_is_not_counted_after_the_scenarios():
    # 4 CPUs, load 6 after: 3 of it is this process (30 CPU-seconds in 10 s), so 3 is other work.
    quiet = assess(reading(0.5), reading(6.0, cpu=30.0, wall=10.0), cpus=4, server_on_this_machine=False)
    assert quiet["machine"] == "quiet" and quiet["client_load"] == 3.0
    # The same load with the bench idle (waiting on a remote server): 6 is other work.
    busy = assess(reading(0.5), reading(6.0, cpu=1.0, wall=10.0), cpus=4, server_on_this_machine=False)
    assert busy["machine"] == "busy"
    assert busy["reasons"] == [
        "1-minute load besides this bench after the scenarios 5.90 > 4 (1 per CPU × 4 CPUs)"
    ]


def test_a_server_on_this_machine_is_judged_by_the_before_reading_only():
    # Its own inference threads make the after reading high; that is the measurement, not others'.
    conditions = assess(reading(0.5), reading(9.0, cpu=5.0, wall=10.0), cpus=4, server_on_this_machine=True)
    assert conditions["machine"] == "quiet" and conditions["load_after"] == 9.0


def test_the_threshold_per_cpu_is_a_parameter():
    after = reading(3.0, cpu=0.0, wall=10.0)
    assert assess(reading(0.0), after, cpus=4, server_on_this_machine=False)["machine"] == "quiet"
    strict = assess(reading(0.0), after, cpus=4, server_on_this_machine=False, busy_load_per_cpu=0.5)
    assert strict["machine"] == "busy"


def test_the_load_monitor_reads_injected_probes():
    clock, cpu = iter([100.0, 110.0]), iter([3.0, 4.0])
    monitor = LoadMonitor(
        False,
        runnable_probe=lambda: 8.0,
        load_probe=lambda: 1.0,
        wall_clock=lambda: next(clock),
        cpu_clock=lambda: next(cpu),
        cpus=2,
    )
    with pytest.raises(RuntimeError):
        monitor.conditions()
    monitor.start()
    conditions = monitor.conditions()
    assert conditions["machine"] == "busy" and conditions["seconds"] == 10.0
    assert conditions["client_cpu_seconds"] == 1.0 and conditions["client_load"] == 0.1
    assert conditions["reasons"] == ["runnable tasks before the scenarios 8.00 > 2 (1 per CPU × 2 CPUs)"]


def test_runnable_now_is_the_median_of_instant_counts_without_the_reader():
    lines = iter(["0.50 2.10 1.90 3/400 9", "1.0 2.0 1.0 9/400 9", "1.0 2.0 1.0 2/400 9"])
    assert runnable_now(samples=3, interval=0.0, read=lambda: next(lines)) == 2.0
    # A lagging 1-minute average of 2.1 after earlier work does not count: only what runs now.
    assert runnable_now(samples=1, interval=0.0, read=lambda: "2.10 1.00 0.50 1/300 7") == 0.0
