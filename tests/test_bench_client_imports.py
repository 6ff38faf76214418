"""The bench's client path imports no server code: kserve parses ``sys.argv`` when imported (`invoke
bench --protocol grpc` died with ``invalid choice: 'grpc'``), and the bench image has neither kserve
nor TensorFlow. Each check runs in a fresh interpreter, so nothing earlier in the session counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import free_ports

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"
SERVER_PACKAGES = ("kserve", "tensorflow", "tf_keras", "fastapi", "uvicorn")

# Runs invoke's own program with the given argv in this interpreter, then writes what was imported.
RUN_INVOKE = """
import json, sys
report, root, args = sys.argv[1:]
sys.argv = ["invoke", "--search-root", root, *json.loads(args)]
from invoke.main import program
code = 0
try:
    program.run()
except SystemExit as exc:
    code = exc.code or 0
with open(report, "w") as out:
    json.dump({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules})}, out)
"""


def run_invoke(args: list[str], tmp_path: Path, python: str = sys.executable) -> tuple[int, list[str], str]:
    report = tmp_path / "imports.json"
    result = subprocess.run(
        [python, "-c", RUN_INVOKE, str(report), str(ROOT), json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert report.is_file(), output[-3000:]
    data = json.loads(report.read_text())
    return data["code"], data["loaded"], output


def test_bench_help_imports_no_server_code(tmp_path):
    code, loaded, output = run_invoke(["bench", "--help"], tmp_path)
    assert code == 0 and "--protocol" in output
    assert not set(SERVER_PACKAGES) & set(loaded)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_a_bench_with_either_protocol_gets_to_the_endpoint_and_imports_no_server_code(tmp_path, protocol):
    """With ``--protocol grpc`` in sys.argv, the bench runs up to its first request: one `error:` line
    naming the unreachable endpoint, not kserve's argparse error; kserve was never imported."""
    (port,) = free_ports(1)
    endpoint = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    args = ["bench", "--artifacts-dir", str(tmp_path / "artifacts"), "--protocol", protocol]
    code, loaded, output = run_invoke([*args, "--endpoint", endpoint], tmp_path)
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [line for line in output.splitlines() if line.strip()][-1:], output
    assert errors[0].startswith(f"error: cannot reach {endpoint} after 3 tries: "), output
    assert "invalid choice" not in output and "Traceback" not in output
    assert "tritonclient" in loaded
    assert not set(SERVER_PACKAGES) & set(loaded)


IMPORT_CLIENTS = """
import json, sys
sys.argv = ["invoke", "bench", "--protocol", "grpc"]  # what kserve's import-time argparse choked on
import workloads.bench.run
from workloads.bench.clients import GrpcClient, RestClient
GrpcClient("127.0.0.1:1", "m", timeout_seconds=1).close()
RestClient("http://127.0.0.1:1", "m", timeout_seconds=1).close()
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_importing_the_clients_with_protocol_grpc_in_argv_imports_no_server_code():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CLIENTS], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert "tritonclient" in loaded
    assert not set(SERVER_PACKAGES) & loaded


KSERVE_STUBS = (
    "from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb; pb.ModelInferRequest(model_name='m')"
)
TRITON_STUBS = (
    "from workloads.bench.clients import tritonclient_grpc; "
    "tritonclient_grpc().service_pb2.ModelInferRequest(model_name='m')"
)


@pytest.mark.parametrize("first", ["kserve", "tritonclient"])
def test_kserves_and_tritonclients_kserve_v2_messages_load_in_one_process_in_either_order(first):
    """Both define ``inference.ModelInferRequest`` and the rest; the tests and `invoke pipeline` run the
    server's modules and the bench in one process. A second definition in one protobuf pool fails."""
    steps = [KSERVE_STUBS, TRITON_STUBS] if first == "kserve" else [TRITON_STUBS, KSERVE_STUBS]
    result = subprocess.run(
        [sys.executable, "-c", "; ".join(steps)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


# --- the bench image's requirement set (.venv-bench, built by `make test`) ----------------------


@pytest.fixture(scope="module")
def bench_python() -> Path:
    python = BENCH_VENV / "bin" / "python"
    assert (BENCH_VENV / ".installed").is_file(), (
        f"{BENCH_VENV} is not built: `make .venv-bench/.installed` (make test does)"
    )
    return python


@pytest.mark.parametrize(
    "module", ["tensorflow", "kserve", "nncf", "aws_cdk", "boto3", "pyVmomi", "kubernetes"]
)
def test_the_bench_requirement_set_has_no_server_training_or_cloud_packages(bench_python, module):
    result = subprocess.run(
        [str(bench_python), "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and f"No module named '{module}'" in result.stderr


def test_invoke_lists_its_tasks_with_only_the_bench_requirement_set(bench_python):
    result = subprocess.run(
        [str(bench_python.parent / "invoke"), "--list"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "bench" in result.stdout and "pipeline" in result.stdout


def test_the_modules_of_the_jobs_command_load_with_only_the_bench_requirement_set(bench_python):
    """The Job's `invoke bench … --print-result` loads the bench engine, then the result framing
    (workloads.bench.result_frame, not the in-cluster driver with its Kubernetes client)."""
    modules = "tasks, workloads.bench.run, workloads.bench.result_frame, workloads.bench.clients"
    script = f"import {modules}; workloads.bench.clients.tritonclient_grpc(); import tritonclient.http"
    result = subprocess.run(
        [str(bench_python), "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_bench_runs_to_its_endpoint_with_only_the_bench_requirement_set(bench_python, tmp_path, protocol):
    (port,) = free_ports(1)
    endpoint = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    args = ["bench", "--artifacts-dir", str(tmp_path / "artifacts"), "--protocol", protocol]
    args += ["--endpoint", endpoint, "--print-result"]  # as the Job runs it
    code, loaded, output = run_invoke(args, tmp_path, python=str(bench_python))
    assert code != 0
    assert f"error: cannot reach {endpoint} after 3 tries: " in output, output
    assert "Traceback" not in output
    assert not set(SERVER_PACKAGES) & set(loaded)
