"""`invoke bench --in-cluster`: the Job's result read back from its log, against a fake API server."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_bench_results import document
from test_k8s_apply import Clock, FakeApi
from test_tasks import invoke

from contracts.config import load_config
from contracts.errors import BenchError
from workloads.bench.in_cluster import (
    RESULT_BEGIN,
    RESULT_END,
    artifacts_source,
    extract_result,
    framed_result,
    kubeconfig_for,
    run_in_cluster,
)
from workloads.bench.results import CSV_FILE
from workloads.bench.run import bench_targets
from workloads.k8s.bench_job import BenchJobSpec, PvcArtifacts, bench_command, render_bench_job
from workloads.k8s.model_source import S3ModelSource, SecretS3ModelSource

NOW = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)


def result(target: str = "aws", pool: str = "c5") -> dict[str, Any]:
    doc = document()
    doc["target"], doc["pool"] = target, pool
    doc["endpoint"] = f"ovms-{pool}.bone-marrow.svc.cluster.local:9000"
    return doc


def log_with(doc: dict[str, Any]) -> str:
    return f"== 1/2 batch\nbench: results → /work/artifacts/bench/x.json\n{framed_result(doc)}\n"


# --- the result between the markers -------------------------------------------------------------


def test_extract_result_round_trips_and_takes_the_last_block() -> None:
    doc = result()
    assert extract_result(log_with(doc)) == doc
    older = result(pool="c6i")
    assert extract_result(log_with(older) + log_with(doc)) == doc


@pytest.mark.parametrize(
    ("log", "message"),
    [
        (
            "just progress\nerror: the endpoint is down\n",
            "no '--- bmc-result-begin ---' line.*the endpoint is down",
        ),
        (f'{RESULT_BEGIN}\n{{"a": 1', "cut off"),
        (f"{RESULT_BEGIN}\n{{not json}}\n{RESULT_END}\n", "not valid JSON"),
        (f"{RESULT_BEGIN}\n[1, 2]\n{RESULT_END}\n", "not a JSON object"),
        (f'{RESULT_BEGIN}\n{{"schema_version": 1}}\n{RESULT_END}\n', "does not follow schema_version 1"),
    ],
)
def test_extract_result_errors_are_one_line(log: str, message: str) -> None:
    with pytest.raises(BenchError, match=message) as info:
        extract_result(log)
    assert "\n" not in str(info.value)


def test_a_schema_invalid_result_names_where() -> None:
    doc = result()
    doc["target"] = "gcp"
    with pytest.raises(BenchError, match="at target:"):
        extract_result(log_with(doc))


# --- labels: --endpoint with --target aws|vsphere keeps the target and the pool -------------------


def test_bench_targets_maps_the_flags(tmp_path: Path) -> None:
    config = load_config({"artifacts_dir": str(tmp_path)})
    url = "ovms-c5.bone-marrow.svc.cluster.local:9000"
    assert bench_targets(config, target="aws", endpoint=url, pool="c5") == ("aws", [("c5", url)])
    assert bench_targets(config, target="vsphere", endpoint=url, pool="icelake") == (
        "vsphere",
        [("icelake", url)],
    )
    # The old behaviour without a cluster target: an anonymous endpoint.
    assert bench_targets(config, target="local", endpoint=url, pool=None) == ("endpoint", [(None, url)])
    with pytest.raises(BenchError, match="no local server recorded"):
        bench_targets(config, target="local", endpoint=None, pool=None)
    local = tmp_path / "serving" / "local" / "endpoints.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps({"http_url": "http://127.0.0.1:8000", "grpc_target": "127.0.0.1:8001"}))
    # The local server is the local target's one pool, measured like a cluster's recorded pools.
    assert bench_targets(config, target="local", endpoint=None, pool=None) == (
        "local",
        [("local", "127.0.0.1:8001")],
    )
    assert bench_targets(config, target="local", endpoint=None, pool=None, runtime="openvino") == (
        "local",
        [(None, None)],
    )
    with pytest.raises(BenchError, match="--endpoint with --target aws needs --pool"):
        bench_targets(config, target="aws", endpoint=url, pool=None)
    with pytest.raises(BenchError, match="no endpoints recorded for aws"):
        bench_targets(config, target="aws", endpoint=None, pool=None)
    with pytest.raises(BenchError, match="unknown target 'gcp'"):
        bench_targets(config, target="gcp", endpoint=url, pool=None)


def test_the_job_command_labels_the_result_and_prints_it(tmp_path: Path) -> None:
    config = load_config()
    command = bench_command(config, "c5", target="aws")
    assert command[:6] == [
        "invoke",
        "--config",
        "/etc/bmc/invoke.yaml",
        "bench",
        "--endpoint",
        "ovms-c5.bone-marrow.svc.cluster.local:9000",
    ]
    assert command[6:] == ["--target", "aws", "--pool", "c5", "--print-result"]
    assert "--target" not in bench_command(config, "c5")  # the plain Job as before
    with pytest.raises(Exception, match="does not run on vsphere"):
        render_bench_job(
            config,
            target="vsphere",
            spec=BenchJobSpec(
                pool="icelake", image="r/b:1", artifacts=PvcArtifacts(claim="pvc"), target="aws"
            ),
            out_dir=tmp_path,
        )


# --- the flow against a fake API server -----------------------------------------------------------


class JobApi(FakeApi):
    """FakeApi plus Jobs that finish after ``job_polls`` reads (succeeded, or failed for ``failing``
    pools) and a pod log per Job (label job-name=<name>), written by the "bench container"."""

    def __init__(self, logs: dict[str, str], *, failing: frozenset[str] = frozenset(), job_polls: int = 2):
        super().__init__()
        self.logs = logs  # pool -> log
        self.failing = failing
        self.job_polls = job_polls
        self.log_reads: list[tuple[str, str]] = []
        self.objects[("Namespace", "bone-marrow", None)] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "bone-marrow", "generation": 1},
        }

    def _pool(self, name: str) -> str:
        job = self.objects[("Job", name, "bone-marrow")]
        return job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"].split("-")[1]

    def get(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        obj = self.objects.get(self._key(kind, name, namespace))
        if kind == "Job" and obj is not None:
            self.polls[name] = self.polls.get(name, 0) + 1
            if self.polls[name] >= self.job_polls:
                obj["status"] = {"failed": 1} if self._pool(name) in self.failing else {"succeeded": 1}
        return copy.deepcopy(obj) if obj is not None else None

    def job_log(self, *, name: str, namespace: str, container: str) -> str:
        if ("Job", name, namespace) not in self.objects:
            raise AssertionError(f"log of a Job that was never applied: {name}")
        self.log_reads.append((name, container))
        return self.logs[self._pool(name)]


def _run(tmp_path: Path, api: JobApi, *, target: str = "aws", pool: str | None = None) -> list[Path]:
    config = load_config({"artifacts_dir": str(tmp_path)})
    clock = Clock()
    return run_in_cluster(
        config,
        target=target,
        pool=pool,
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/bm/bench:0.1.0",
        kubeconfig=tmp_path / "unused",
        artifacts=S3ModelSource(
            bucket="bm-models", prefix="artifacts", region="us-east-1", service_account="sa"
        ),
        progress=lambda _line: None,
        api=api,
        now=lambda: NOW,
        clock=clock,
        sleep=clock.sleep,
    )


def test_every_pool_is_measured_and_written_like_a_local_run(tmp_path: Path) -> None:
    api = JobApi({"c5": log_with(result("aws", "c5")), "c6i": log_with(result("aws", "c6i"))})
    paths = _run(tmp_path, api)
    assert [p.parent for p in paths] == [tmp_path / "bench"] * 2
    written = [json.loads(p.read_text()) for p in paths]
    assert [(d["target"], d["pool"]) for d in written] == [("aws", "c5"), ("aws", "c6i")]
    rows = (tmp_path / "bench" / CSV_FILE).read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("aws,c5,") and rows[2].startswith("aws,c6i,")
    assert api.applied == [
        "ConfigMap/bench-c5-20250501100000-config",
        "NetworkPolicy/bench-c5-20250501100000-egress",
        "Job/bench-c5-20250501100000",
        "ConfigMap/bench-c6i-20250501100000-config",
        "NetworkPolicy/bench-c6i-20250501100000-egress",
        "Job/bench-c6i-20250501100000",
    ]
    assert api.log_reads == [("bench-c5-20250501100000", "bench"), ("bench-c6i-20250501100000", "bench")]
    # The applied Job runs the labelled, printing command.
    job = api.objects[("Job", "bench-c5-20250501100000", "bone-marrow")]
    bench = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "bench")
    assert bench["command"][6:11] == ["--target", "aws", "--pool", "c5", "--print-result"]


def test_one_pool_asked_for(tmp_path: Path) -> None:
    api = JobApi({"c6i": log_with(result("aws", "c6i"))})
    (path,) = _run(tmp_path, api, pool="c6i")
    assert json.loads(path.read_text())["pool"] == "c6i"
    with pytest.raises(BenchError, match="aws has no pool 'icelake'; configured pools: c5, c6i"):
        _run(tmp_path, api, pool="icelake")


def test_a_failed_job_is_one_line_with_the_last_log_line(tmp_path: Path) -> None:
    api = JobApi(
        {"c5": "== known answer\nerror: cannot reach ovms-c5:9000 after 5 attempts\n"},
        failing=frozenset({"c5"}),
    )
    with pytest.raises(BenchError) as info:
        _run(tmp_path, api, pool="c5")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Job bench-c5-20250501100000 failed")
    assert message.endswith("last log line: error: cannot reach ovms-c5:9000 after 5 attempts")
    assert not (tmp_path / "bench").exists()


def test_a_job_that_fails_after_printing_its_result_keeps_the_result(tmp_path: Path) -> None:
    # e.g. the archive upload of the results was refused after the benchmark had finished.
    api = JobApi({"c5": log_with(result("aws", "c5"))}, failing=frozenset({"c5"}))
    lines: list[str] = []
    config = load_config({"artifacts_dir": str(tmp_path)})
    clock = Clock()
    (path,) = run_in_cluster(
        config,
        target="aws",
        pool="c5",
        image="r/bench:1",
        kubeconfig=tmp_path / "unused",
        artifacts=S3ModelSource(bucket="bm-models", prefix="a", region="us-east-1", service_account="sa"),
        progress=lines.append,
        api=api,
        now=lambda: NOW,
        clock=clock,
        sleep=clock.sleep,
    )
    assert json.loads(path.read_text())["pool"] == "c5"
    assert any(line.startswith("warning: Job bench-c5-20250501100000 failed") for line in lines)


def test_a_succeeded_job_without_a_result_or_with_the_wrong_label(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no '--- bmc-result-begin ---' line"):
        _run(tmp_path, JobApi({"c5": "done\n"}), pool="c5")
    with pytest.raises(BenchError, match="measured target 'aws' pool 'c6i', expected 'aws' pool 'c5'"):
        _run(tmp_path, JobApi({"c5": log_with(result("aws", "c6i"))}), pool="c5")
    assert not (tmp_path / "bench").exists()


def test_vsphere_flow_with_a_pvc(tmp_path: Path) -> None:
    api = JobApi({"icelake": log_with(result("vsphere", "icelake"))})
    config = load_config({"artifacts_dir": str(tmp_path)})
    clock = Clock()
    (path,) = run_in_cluster(
        config,
        target="vsphere",
        pool=None,
        image="r/bench:1",
        kubeconfig=tmp_path / "unused",
        artifacts=PvcArtifacts(claim="bench-artifacts"),
        progress=lambda _line: None,
        api=api,
        now=lambda: NOW,
        clock=clock,
        sleep=clock.sleep,
    )
    assert json.loads(path.read_text())["target"] == "vsphere"
    manifest = tmp_path / "deploy" / "vsphere" / "bench-jobs" / "50-bench-icelake-20250501100000.yaml"
    (job,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "Job"]
    (bench,) = job["spec"]["template"]["spec"]["containers"]
    assert bench["command"][6:9] == ["--target", "vsphere", "--pool"]


# --- inputs: kubeconfig and artifacts source --------------------------------------------------------


def test_kubeconfig_must_exist(tmp_path: Path) -> None:
    config = load_config({"artifacts_dir": str(tmp_path)})
    with pytest.raises(BenchError, match=r"no kubeconfig for aws at .*; run `invoke up --target aws` first"):
        kubeconfig_for(config, "aws")
    path = tmp_path / "deploy" / "aws" / "kubeconfig"
    path.parent.mkdir(parents=True)
    path.write_text("apiVersion: v1\n")
    assert kubeconfig_for(config, "aws") == path
    with pytest.raises(BenchError, match="run `invoke up --target vsphere` first"):
        kubeconfig_for(config, "vsphere")


def test_artifacts_source(tmp_path: Path) -> None:
    config = load_config()
    aws = artifacts_source(config, target="aws", s3_uri="s3://bm-models/artifacts/")
    assert isinstance(aws, S3ModelSource) and aws.uri == "s3://bm-models/artifacts"
    on_prem = artifacts_source(
        config, target="vsphere", s3_uri="s3://bm-data/a", endpoint_url="http://minio:9000"
    )
    assert isinstance(on_prem, SecretS3ModelSource) and on_prem.endpoint_url == "http://minio:9000"
    assert artifacts_source(config, target="vsphere", pvc="bench-artifacts") == PvcArtifacts(
        "bench-artifacts"
    )
    with pytest.raises(BenchError, match=r"^--artifacts-pvc: artifacts claim must be a PVC name"):
        artifacts_source(config, target="vsphere", pvc="Bench_Artifacts")
    with pytest.raises(BenchError, match=r"^--in-cluster needs --target aws or vsphere, not 'local'$"):
        artifacts_source(config, target="local", s3_uri="s3://b/p")
    with pytest.raises(BenchError, match="exactly one of"):
        artifacts_source(config, target="aws")
    with pytest.raises(BenchError, match="exactly one of"):
        artifacts_source(config, target="aws", s3_uri="s3://b/p", pvc="x")
    with pytest.raises(BenchError, match="must look like s3://bucket/prefix"):
        artifacts_source(config, target="aws", s3_uri="bm-models/artifacts")


# --- the task's flags ------------------------------------------------------------------------------


def test_bad_flag_combinations_exit_2_with_one_line(tmp_path: Path) -> None:
    artifacts = str(tmp_path / "a")
    local = invoke("bench", "--in-cluster", "--image", "r/b:1", "--artifacts-dir", artifacts)
    assert local.returncode == 2
    assert local.stderr.strip() == (
        "error: --in-cluster needs --target aws or vsphere, no --endpoint, runtime server"
    )
    no_image = invoke("bench", "--target", "aws", "--in-cluster", "--artifacts-dir", artifacts)
    assert no_image.returncode == 2 and "--image" in no_image.stderr
    stray = invoke("bench", "--target", "aws", "--image", "r/b:1", "--artifacts-dir", artifacts)
    assert stray.returncode == 2 and "apply only with --in-cluster" in stray.stderr
    no_cluster = invoke(
        "bench", "--target", "aws", "--in-cluster", "--image", "r/b:1",
        "--artifacts-pvc", "bench-artifacts", "--artifacts-dir", artifacts,
    )  # fmt: skip
    assert no_cluster.returncode == 1
    assert no_cluster.stderr.strip().startswith("error: no kubeconfig for aws")
