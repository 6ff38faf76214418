"""`invoke bench --in-cluster`: the Job's result read back from its log, against a fake API server."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from moto_aws import MotoSession, moto_session  # noqa: F401  (the fixture)
from test_bench_results import document
from test_k8s_apply import Clock, FakeApi
from test_tasks import invoke

from contracts.config import load_config
from contracts.errors import BenchError, DeployError
from workloads.bench.in_cluster import (
    artifacts_source,
    dry_run,
    kubeconfig_for,
    results_location,
    run_in_cluster,
)
from workloads.bench.result_frame import RESULT_BEGIN, RESULT_END, extract_result, framed_result
from workloads.bench.results import CSV_FILE
from workloads.bench.run import bench_targets
from workloads.deploy.bench_pool import scale_nodegroup, wait_for_ready_node
from workloads.k8s.bench_job import (
    RESULTS,
    BenchJobSpec,
    PvcArtifacts,
    bench_command,
    pod_config,
    render_bench_job,
)
from workloads.k8s.model_source import S3ModelSource, SecretS3ModelSource
from workloads.k8s.render import parse_and_validate

ROOT = Path(__file__).resolve().parents[1]
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


def test_recorded_pools_that_do_not_serve_the_precision_are_skipped_as_the_jobs_are(tmp_path: Path) -> None:
    from workloads.k8s.endpoints import record_endpoints

    config = load_config(
        {
            "artifacts_dir": str(tmp_path),
            "serving": {"precisions": ["fp32", "int8", "bf16"]},
            "bench": {"precision": "bf16"},
        }
    )
    endpoints = {
        pool: {"rest": f"http://{pool}.example.test:8000", "grpc": f"{pool}.example.test:9000"}
        for pool in ("c5", "c6i", "c7i")
    }
    record_endpoints(config, target="aws", endpoints=endpoints)
    lines: list[str] = []
    # c5 (Cascade Lake) and c6i (Ice Lake) serve no bf16 variant: only c7i is measured.
    assert bench_targets(config, target="aws", endpoint=None, pool=None, progress=lines.append) == (
        "aws",
        [("c7i", "c7i.example.test:9000")],
    )
    assert lines == [
        "skipping pool c5: it does not serve bench.precision bf16",
        "skipping pool c6i: it does not serve bench.precision bf16",
    ]
    with pytest.raises(BenchError) as refused:
        bench_targets(config, target="aws", endpoint=None, pool="c5")
    assert str(refused.value) == (
        "pool c5 of aws does not serve bench.precision bf16 (it serves fp32, int8); pools serving it: c7i"
    )
    int8 = load_config({"artifacts_dir": str(tmp_path), "serving": {"precisions": ["fp32", "int8", "bf16"]}})
    assert [pool for pool, _ in bench_targets(int8, target="aws", endpoint=None, pool=None)[1]] == [
        "c5",
        "c6i",
        "c7i",
    ]


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


# --- the flow against a fake API server (and moto's EKS for the aws node group) ------------------

BENCH_LABELS = {"bone-marrow.ml/pool": "bench", "bone-marrow.ml/cpu-generation": "icelake"}
EKSA_CLUSTER = ("Cluster", "bone-marrow-onprem", "default")


def node(name: str, *, ready: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {
        "metadata": {"name": name, "labels": dict(BENCH_LABELS if labels is None else labels)},
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }


class JobApi(FakeApi):
    """FakeApi plus Jobs that finish after ``job_polls`` reads (succeeded, or failed for ``failing``
    pools), a pod log per Job (label job-name=<name>), written by the "bench container", Nodes
    listed by label selector, and the EKS Anywhere Cluster object (replaced under its
    resourceVersion). A Ready bench node joins ``join_after`` lists after ``scaled()`` holds
    (default: the Cluster object's bench worker group counts at least one node)."""

    def __init__(
        self,
        logs: dict[str, str],
        *,
        failing: frozenset[str] = frozenset(),
        job_polls: int = 2,
        scaled: Callable[[], bool] | None = None,
        join_after: int = 2,
    ):
        super().__init__()
        self.logs = logs  # pool -> log
        self.failing = failing
        self.job_polls = job_polls
        self.log_reads: list[tuple[str, str]] = []
        self.nodes: list[dict[str, Any]] = [node("ovms-node", labels={"bone-marrow.ml/pool": "c5"})]
        self.scaled = scaled or self._eksa_scaled
        self.join_after = join_after
        self.lists_while_scaled = 0
        self.counts: list[int] = []  # the bench group's count, each time the Cluster was replaced
        self.objects[("Namespace", "bone-marrow", None)] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "bone-marrow", "generation": 1},
        }
        self.objects[EKSA_CLUSTER] = {
            "apiVersion": "anywhere.eks.amazonaws.com/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": "bone-marrow-onprem", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "workerNodeGroupConfigurations": [
                    {"name": "icelake", "count": 2, "labels": {"bone-marrow.ml/pool": "icelake"}},
                    {"name": "bench", "count": 0, "labels": BENCH_LABELS},
                ]
            },
            "status": {"reconciledGeneration": 1},
        }

    def _eksa_scaled(self) -> bool:
        groups = self.objects[EKSA_CLUSTER]["spec"]["workerNodeGroupConfigurations"]
        return any(g["name"] == "bench" and g["count"] >= 1 for g in groups)

    def _pool(self, name: str) -> str:
        job = self.objects[("Job", name, "bone-marrow")]
        return job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"].split("-")[1]

    def get(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        obj = self.objects.get(self._key(kind, name, namespace))
        if kind == "Job" and obj is not None:
            if not any(n["metadata"]["name"] == "bench-node" for n in self.nodes):
                raise AssertionError("a Job was applied before the bench node was Ready")
            self.polls[name] = self.polls.get(name, 0) + 1
            if self.polls[name] >= self.job_polls:
                obj["status"] = {"failed": 1} if self._pool(name) in self.failing else {"succeeded": 1}
        return copy.deepcopy(obj) if obj is not None else None

    def replace(self, document: dict[str, Any]) -> dict[str, Any]:
        key = self._key(document["kind"], document["metadata"]["name"], document["metadata"]["namespace"])
        stored = self.objects[key]
        if document["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]:
            raise DeployError("updating Cluster failed (409): the object has been modified")
        assert "status" not in document  # the status subresource is not ours to write
        replaced = copy.deepcopy(document)
        replaced["metadata"]["resourceVersion"] = str(int(stored["metadata"]["resourceVersion"]) + 1)
        self.objects[key] = replaced
        groups = replaced["spec"]["workerNodeGroupConfigurations"]
        self.counts.append(next(g["count"] for g in groups if g["name"] == "bench"))
        return copy.deepcopy(replaced)

    def list(
        self, *, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]:
        assert (api_version, kind, namespace) == ("v1", "Node", None)
        if self.scaled():
            self.lists_while_scaled += 1
            if self.lists_while_scaled == self.join_after:
                self.nodes.append(node("bench-node"))
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(","))
        return [copy.deepcopy(n) for n in self.nodes if wanted.items() <= n["metadata"]["labels"].items()]

    def job_log(self, *, name: str, namespace: str, container: str) -> str:
        if ("Job", name, namespace) not in self.objects:
            raise AssertionError(f"log of a Job that was never applied: {name}")
        self.log_reads.append((name, container))
        return self.logs[self._pool(name)]


class RecordingEks:
    """moto's EKS client, recording the desired sizes asked for."""

    def __init__(self, real: Any, desired: list[int]) -> None:
        self.real, self.desired = real, desired

    def update_nodegroup_config(self, **kwargs: Any) -> Any:
        self.desired.append(kwargs["scalingConfig"]["desiredSize"])
        return self.real.update_nodegroup_config(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@dataclasses.dataclass
class AwsCluster:
    """The stacks `invoke up --target aws` recorded, and the bench node group in moto's EKS."""

    session: MotoSession
    desired: list[int]

    def nodegroup(self) -> dict[str, Any]:
        eks = self.session.client("eks")
        group: dict[str, Any] = eks.describe_nodegroup(
            clusterName="bone-marrow-eks", nodegroupName="bm-bench"
        )
        return group["nodegroup"]

    def scaled(self) -> bool:
        return bool(self.nodegroup()["scalingConfig"]["desiredSize"] >= 1)


def record_outputs(root: Path) -> None:
    outputs = {
        "bone-marrow-cluster": {"ClusterName": "bone-marrow-eks", "NodegroupBench": "bm-bench"},
        "bone-marrow-data": {"ResultsBucketName": "bm-results", "ModelsBucketName": "bm-models"},
    }
    path = root / "deploy" / "aws" / "outputs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outputs))


@pytest.fixture
def aws_cluster(tmp_path: Path, moto_session: MotoSession) -> AwsCluster:  # noqa: F811
    desired: list[int] = []
    moto_session.overrides["eks"] = lambda real: RecordingEks(real, desired)
    eks = moto_session.client("eks")
    eks.create_cluster(
        name="bone-marrow-eks",
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
    )
    eks.create_nodegroup(
        clusterName="bone-marrow-eks",
        nodegroupName="bm-bench",
        nodeRole="arn:aws:iam::123456789012:role/node",
        subnets=["subnet-1"],
        scalingConfig={"minSize": 0, "maxSize": 1, "desiredSize": 0},
    )
    record_outputs(tmp_path)
    return AwsCluster(session=moto_session, desired=desired)


AWS_ARTIFACTS = S3ModelSource(
    bucket="bm-models", prefix="artifacts", region="us-east-1", service_account="bench-results"
)
AWS_RESULTS = S3ModelSource(
    bucket="bm-results", prefix="bench-results", region="us-east-1", service_account="bench-results"
)


def _run(
    tmp_path: Path,
    api: JobApi,
    *,
    target: str = "aws",
    pool: str | None = None,
    session: Any = None,
    progress: Callable[[str], None] = lambda _line: None,
    settings: dict[str, Any] | None = None,
) -> list[Path]:
    config = load_config({"artifacts_dir": str(tmp_path), **(settings or {})})
    clock = Clock()
    return run_in_cluster(
        config,
        target=target,
        pool=pool,
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/bm/bench:0.1.0",
        kubeconfig=tmp_path / "unused",
        artifacts=AWS_ARTIFACTS,
        results=AWS_RESULTS,
        progress=progress,
        api=api,
        session=session,
        now=lambda: NOW,
        clock=clock,
        sleep=clock.sleep,
    )


# The default aws.pools: Cascade Lake, Ice Lake and Sapphire Rapids (AMX).
POOLS = ("c5", "c6i", "c7i")


def test_every_pool_is_measured_on_the_scaled_bench_pool(tmp_path: Path, aws_cluster: AwsCluster) -> None:
    api = JobApi(
        {pool: log_with(result("aws", pool)) for pool in POOLS},
        scaled=aws_cluster.scaled,
    )
    paths = _run(tmp_path, api, session=aws_cluster.session)
    assert [p.parent for p in paths] == [tmp_path / "bench"] * 3
    written = [json.loads(p.read_text()) for p in paths]
    assert [(d["target"], d["pool"]) for d in written] == [("aws", pool) for pool in POOLS]
    rows = (tmp_path / "bench" / CSV_FILE).read_text().splitlines()
    assert len(rows) == 4 and [row.split(",")[:2] for row in rows[1:]] == [["aws", pool] for pool in POOLS]
    assert api.applied == [
        kind
        for pool in POOLS
        for kind in (
            "ServiceAccount/bench-results",
            f"ConfigMap/bench-{pool}-20250501100000-config",
            f"NetworkPolicy/bench-{pool}-20250501100000-egress",
            f"Job/bench-{pool}-20250501100000",
        )
    ]
    assert api.log_reads == [(f"bench-{pool}-20250501100000", "bench") for pool in POOLS]
    # Up to one node before the first Job, back to min_size (0) after the last, through the EKS API.
    assert aws_cluster.desired == [1, 0]
    assert aws_cluster.nodegroup()["scalingConfig"] == {"minSize": 0, "maxSize": 1, "desiredSize": 0}
    job = api.objects[("Job", "bench-c5-20250501100000", "bone-marrow")]
    pod = job["spec"]["template"]["spec"]
    bench = next(c for c in pod["initContainers"] if c["name"] == "bench")
    assert bench["command"][6:11] == ["--target", "aws", "--pool", "c5", "--print-result"]
    assert pod["nodeSelector"] == BENCH_LABELS
    (upload,) = pod["containers"]
    assert upload["args"][3] == "s3://bm-results/bench-results/aws/c5/bench-c5-20250501100000"


def test_one_pool_asked_for(tmp_path: Path, aws_cluster: AwsCluster) -> None:
    api = JobApi({"c6i": log_with(result("aws", "c6i"))}, scaled=aws_cluster.scaled)
    (path,) = _run(tmp_path, api, pool="c6i", session=aws_cluster.session)
    assert json.loads(path.read_text())["pool"] == "c6i"
    with pytest.raises(BenchError, match="aws has no pool 'icelake'; configured pools: c5, c6i, c7i"):
        _run(tmp_path, api, pool="icelake", session=aws_cluster.session)
    assert aws_cluster.desired == [1, 0]  # a pool that does not exist scales nothing


# bf16 served on c7i (Sapphire Rapids) only: the pools that do not serve bench.precision.
BF16 = {"serving": {"precisions": ["fp32", "int8", "bf16"]}, "bench": {"precision": "bf16"}}


def test_pools_that_do_not_serve_the_precision_are_skipped_and_said_so(
    tmp_path: Path, aws_cluster: AwsCluster
) -> None:
    api = JobApi({"c7i": log_with(result("aws", "c7i"))}, scaled=aws_cluster.scaled)
    lines: list[str] = []
    (path,) = _run(tmp_path, api, session=aws_cluster.session, progress=lines.append, settings=BF16)
    assert json.loads(path.read_text())["pool"] == "c7i"
    assert [kind for kind in api.applied if kind.startswith("Job/")] == ["Job/bench-c7i-20250501100000"]
    assert [line for line in lines if line.startswith("skipping")] == [
        "skipping pool c5: it does not serve bench.precision bf16",
        "skipping pool c6i: it does not serve bench.precision bf16",
    ]


def test_a_pool_asked_for_that_does_not_serve_the_precision_is_one_line(
    tmp_path: Path, aws_cluster: AwsCluster
) -> None:
    api = JobApi({}, scaled=aws_cluster.scaled)
    with pytest.raises(BenchError) as error:
        _run(tmp_path, api, pool="c5", session=aws_cluster.session, settings=BF16)
    assert str(error.value) == (
        "pool c5 of aws does not serve bench.precision bf16 (it serves fp32, int8); pools serving it: c7i"
    )
    assert aws_cluster.desired == [] and api.applied == []  # refused before anything is scaled


@pytest.mark.parametrize(
    ("target", "settings", "message"),
    [
        # serving.precisions leaves bf16 out: no pool serves it.
        (
            "aws",
            {"bench": {"precision": "bf16"}},
            r"^bench.precision bf16 is served on no pool of aws: add it",
        ),
        # bf16 listed, but EKS Anywhere's default pool (Ice Lake) cannot execute it: render refuses too.
        ("vsphere", BF16, r"^serving.precisions \(fp32, int8, bf16\) lists bf16, .* no pool of vsphere"),
    ],
)
def test_a_precision_no_pool_serves_is_one_line(
    tmp_path: Path, target: str, settings: dict[str, Any], message: str
) -> None:
    config = load_config({"artifacts_dir": str(tmp_path), **settings})
    artifacts = PvcArtifacts(claim="bench-artifacts")
    with pytest.raises(BenchError, match=message) as error:
        dry_run(config, target=target, pool=None, image="r/b:1", artifacts=artifacts, results=None)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "deploy").exists()


def test_a_failed_job_is_one_line_with_the_last_log_line(tmp_path: Path) -> None:
    api = JobApi(
        {"icelake": "== known answer\nerror: cannot reach ovms-icelake:9000 after 5 attempts\n"},
        failing=frozenset({"icelake"}),
    )
    with pytest.raises(BenchError) as info:
        _run_vsphere(tmp_path, api)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Job bench-icelake-20250501100000 failed")
    assert message.endswith("last log line: error: cannot reach ovms-icelake:9000 after 5 attempts")
    assert not (tmp_path / "bench").exists()
    assert api.counts == [1, 0]  # scaled back after the failure


class Interrupting(JobApi):
    def job_log(self, *, name: str, namespace: str, container: str) -> str:
        raise KeyboardInterrupt


def test_ctrl_c_still_scales_the_bench_pool_back(tmp_path: Path) -> None:
    api = Interrupting({"icelake": ""})
    with pytest.raises(KeyboardInterrupt):
        _run_vsphere(tmp_path, api)
    assert api.counts == [1, 0]


def test_no_bench_node_in_time_is_one_line_and_scales_back(tmp_path: Path) -> None:
    api = JobApi({"icelake": ""}, join_after=10**9)
    lines: list[str] = []
    with pytest.raises(DeployError, match=r"^no Ready node labelled bone-marrow.ml/cpu-generation=icelake,"):
        _run_vsphere(tmp_path, api, progress=lines.append)
    assert api.counts == [1, 0]
    assert not any(key[0] == "Job" for key in api.objects)


def test_a_pool_left_scaled_after_the_results_is_an_error(tmp_path: Path, aws_cluster: AwsCluster) -> None:
    api = JobApi({"c5": log_with(result("aws", "c5"))}, scaled=aws_cluster.scaled)

    def refuse_scale_down(real: Any) -> Any:
        class Refusing(RecordingEks):
            def update_nodegroup_config(self, **kwargs: Any) -> Any:
                if kwargs["scalingConfig"]["desiredSize"] == 0:
                    raise real.exceptions.ClientError(
                        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                        "UpdateNodegroupConfig",
                    )
                return super().update_nodegroup_config(**kwargs)

        return Refusing(real, aws_cluster.desired)

    aws_cluster.session.overrides["eks"] = refuse_scale_down
    with pytest.raises(BenchError) as info:
        _run(tmp_path, api, pool="c5", session=aws_cluster.session)
    assert str(info.value).startswith("the results are written, but the bench pool was not scaled back: ")
    assert (
        "scaling node group bm-bench of bone-marrow-eks to 0 failed (AccessDeniedException: not allowed)"
        in (str(info.value))
    )
    assert (tmp_path / "bench" / CSV_FILE).is_file()


def test_a_job_that_fails_after_printing_its_result_keeps_the_result(tmp_path: Path) -> None:
    # e.g. the archive upload of the results was refused after the benchmark had finished.
    api = JobApi({"icelake": log_with(result("vsphere", "icelake"))}, failing=frozenset({"icelake"}))
    lines: list[str] = []
    (path,) = _run_vsphere(tmp_path, api, progress=lines.append)
    assert json.loads(path.read_text())["pool"] == "icelake"
    assert any(line.startswith("warning: Job bench-icelake-20250501100000 failed") for line in lines)


def test_a_succeeded_job_without_a_result_or_with_the_wrong_label(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no '--- bmc-result-begin ---' line"):
        _run_vsphere(tmp_path, JobApi({"icelake": "done\n"}))
    with pytest.raises(
        BenchError, match="measured target 'aws' pool 'c6i', expected 'vsphere' pool 'icelake'"
    ):
        _run_vsphere(tmp_path, JobApi({"icelake": log_with(result("aws", "c6i"))}))
    assert not (tmp_path / "bench").exists()


def _run_vsphere(
    tmp_path: Path, api: JobApi, *, progress: Callable[[str], None] = lambda _line: None
) -> list[Path]:
    config = load_config({"artifacts_dir": str(tmp_path)})
    clock = Clock()
    return run_in_cluster(
        config,
        target="vsphere",
        pool=None,
        image="r/bench:1",
        kubeconfig=tmp_path / "unused",
        artifacts=PvcArtifacts(claim="bench-artifacts"),
        progress=progress,
        api=api,
        now=lambda: NOW,
        clock=clock,
        sleep=clock.sleep,
    )


def test_vsphere_flow_with_a_pvc(tmp_path: Path) -> None:
    api = JobApi({"icelake": log_with(result("vsphere", "icelake"))})
    (path,) = _run_vsphere(tmp_path, api)
    assert json.loads(path.read_text())["target"] == "vsphere"
    # The EKS Anywhere Cluster's bench group went to 1 and back to 0; the other group is untouched.
    assert api.counts == [1, 0]
    groups = api.objects[EKSA_CLUSTER]["spec"]["workerNodeGroupConfigurations"]
    assert [(g["name"], g["count"]) for g in groups] == [("icelake", 2), ("bench", 0)]
    manifest = tmp_path / "deploy" / "vsphere" / "bench-jobs" / "50-bench-icelake-20250501100000.yaml"
    (job,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "Job"]
    (bench,) = job["spec"]["template"]["spec"]["containers"]
    assert bench["command"][6:9] == ["--target", "vsphere", "--pool"]


def test_a_cluster_without_the_bench_group_is_one_line(tmp_path: Path) -> None:
    api = JobApi({"icelake": ""})
    api.objects[EKSA_CLUSTER]["spec"]["workerNodeGroupConfigurations"].pop()
    with pytest.raises(DeployError, match=r"has no worker group 'bench' \(has: icelake\); run `invoke up`"):
        _run_vsphere(tmp_path, api)


# --- the pieces of the scaling, alone -----------------------------------------------------------


def test_only_ready_schedulable_nodes_with_every_label_count() -> None:
    class Nodes:
        def __init__(self) -> None:
            self.rounds = [
                [node("a", ready=False)],
                [node("a", ready=False), {**node("b"), "spec": {"unschedulable": True}}],
                [node("a", ready=False), node("c")],
            ]

        def list(self, **kwargs: Any) -> list[dict[str, Any]]:
            assert kwargs["label_selector"] == (
                "bone-marrow.ml/cpu-generation=icelake,bone-marrow.ml/pool=bench"
            )
            return self.rounds.pop(0)

    clock, lines = Clock(), []
    found = wait_for_ready_node(
        Nodes(), labels=BENCH_LABELS, progress=lines.append, clock=clock, sleep=clock.sleep
    )
    assert found == "c"
    assert lines[-1] == "bench node c is Ready"


def test_scaling_a_node_group_that_is_already_there_changes_nothing(aws_cluster: AwsCluster) -> None:
    eks = aws_cluster.session.client("eks")
    pool = load_config().aws.bench_pool
    clock = Clock()
    scale = {"cluster": "bone-marrow-eks", "pool": pool, "progress": lambda _l: None, "clock": clock}
    scale_nodegroup(eks, nodegroup="bm-bench", nodes=0, sleep=clock.sleep, **scale)
    assert aws_cluster.desired == []
    with pytest.raises(DeployError, match=r"outside its sizes 0\.\.1"):
        scale_nodegroup(eks, nodegroup="bm-bench", nodes=2, sleep=clock.sleep, **scale)
    with pytest.raises(DeployError) as info:
        scale_nodegroup(eks, nodegroup="missing", nodes=1, sleep=clock.sleep, **scale)
    assert str(info.value).startswith("scaling node group missing of bone-marrow-eks to 1 failed (")
    assert "ResourceNotFoundException" in str(info.value)


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
    config = load_config({"artifacts_dir": str(tmp_path)})
    aws = artifacts_source(config, target="aws", s3_uri="s3://bm-models/artifacts/")
    assert isinstance(aws, S3ModelSource) and aws.uri == "s3://bm-models/artifacts"
    # Read under the bench Job's own identity, not the model sync's.
    assert aws.service_account == "bench-results"
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
    with pytest.raises(BenchError, match=r"exactly one of .*\(no stack outputs at "):
        artifacts_source(config, target="aws")
    with pytest.raises(BenchError, match=r"\(target vsphere has no default artifacts location\)$"):
        artifacts_source(config, target="vsphere")
    record_outputs(tmp_path)  # after `invoke up --target aws`: the models bucket's bench-artifacts/
    assert artifacts_source(config, target="aws") == S3ModelSource(
        bucket="bm-models", prefix="bench-artifacts", region="us-east-1", service_account="bench-results"
    )
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


# --- the Job's layout: its own pool, its own identity, the results alone uploaded --------------------


def _documents(path: Path) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}


def test_the_job_runs_on_the_bench_pool_and_uploads_only_its_results(tmp_path: Path) -> None:
    config = load_config()
    spec = BenchJobSpec(pool="c6i", image="r/b:1", artifacts=AWS_ARTIFACTS, results=AWS_RESULTS, target="aws")
    docs = _documents(render_bench_job(config, target="aws", spec=spec, out_dir=tmp_path))
    assert docs["ServiceAccount"]["metadata"]["name"] == "bench-results"
    assert docs["ServiceAccount"]["automountServiceAccountToken"] is False
    pod = docs["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bench-results"
    assert pod["nodeSelector"] == BENCH_LABELS
    assert pod["tolerations"] == [
        {"key": "bone-marrow.ml/dedicated", "operator": "Equal", "value": "bench", "effect": "NoSchedule"}
    ]
    sync, bench = pod["initContainers"]
    (upload,) = pod["containers"]
    assert [sync["name"], bench["name"], upload["name"]] == ["inputs-sync", "bench", "results-upload"]
    mounts = {
        c["name"]: {m["mountPath"]: m["name"] for m in c["volumeMounts"]} for c in (sync, bench, upload)
    }
    assert mounts["inputs-sync"] == {"/work/artifacts": "artifacts", "/tmp": "tmp"}
    assert mounts["bench"]["/work/artifacts"] == "artifacts"
    assert mounts["bench"][RESULTS] == "results"
    # The upload sees the results volume only: no models, no data.
    assert mounts["results-upload"] == {RESULTS: "results", "/tmp": "tmp"}
    assert sync["args"][2:4] == ["s3://bm-models/artifacts", "/work/artifacts"]
    assert upload["args"][2:4] == [RESULTS, "s3://bm-results/bench-results/aws/c6i/bench-c6i"]
    assert bench["resources"]["requests"] == {"cpu": "3", "memory": "4096Mi"}
    assert bench["resources"]["limits"] == bench["resources"]["requests"]
    # Pod Identity credentials for the two sync containers, none for the bench.
    annotations = docs["Job"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"eks.amazonaws.com/skip-containers": "bench"}
    egress = docs["NetworkPolicy"]["spec"]["egress"]
    assert [rule["ports"] for rule in egress] == [
        [{"port": 9000, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}],
        [{"port": 443, "protocol": "TCP"}],
        [{"port": 80, "protocol": "TCP"}],
    ]
    # Where the pod's `invoke bench` writes is the folder the results volume covers.
    assert pod_config(config).paths.bench_results == Path(RESULTS)


def test_on_vsphere_each_sync_has_its_own_keys(tmp_path: Path) -> None:
    config = load_config({"vsphere": {"bench_results_s3": "s3://lab-results/runs"}})
    artifacts = artifacts_source(
        config, target="vsphere", s3_uri="s3://lab-data/a", endpoint_url="http://minio.lab:9000"
    )
    results = results_location(config, target="vsphere", endpoint_url="http://minio.lab:9000")
    spec = BenchJobSpec(pool="icelake", image="r/b:1", artifacts=artifacts, results=results, name="bench-x")
    pod = _documents(render_bench_job(config, target="vsphere", spec=spec, out_dir=tmp_path))["Job"]
    sync, _bench = pod["spec"]["template"]["spec"]["initContainers"]
    (upload,) = pod["spec"]["template"]["spec"]["containers"]

    def secrets(container: dict[str, Any]) -> set[str]:
        return {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}

    assert secrets(sync) == {"models-s3-credentials"}
    assert secrets(upload) == {"bench-results-s3-credentials"}
    assert upload["args"][2:4] == [RESULTS, "s3://lab-results/runs/vsphere/icelake/bench-x"]
    assert upload["args"][-2:] == ["--endpoint-url", "http://minio.lab:9000"]


def test_a_job_that_does_not_fit_the_bench_node_is_refused(tmp_path: Path) -> None:
    config = load_config({"kubernetes": {"bench_job_cpus": 4}})
    spec = BenchJobSpec(pool="c5", image="r/b:1", artifacts=PvcArtifacts(claim="pvc"))
    with pytest.raises(DeployError) as info:
        render_bench_job(config, target="aws", spec=spec, out_dir=tmp_path)
    assert str(info.value) == (
        "the bench Job requests 4000m CPU / 4096Mi, but a c6i.xlarge node of the aws bench pool has "
        "3570m / 6444Mi beside kube-system: lower kubernetes.bench_job_cpus / bench_job_memory_mib or "
        "give the bench pool a larger machine"
    )
    assert not list(tmp_path.iterdir())
    with pytest.raises(DeployError, match="need a results location"):
        BenchJobSpec(pool="c5", image="r/b:1", artifacts=AWS_ARTIFACTS)
    with pytest.raises(DeployError, match="the results stay on it"):
        BenchJobSpec(pool="c5", image="r/b:1", artifacts=PvcArtifacts(claim="pvc"), results=AWS_RESULTS)


def test_results_location(tmp_path: Path) -> None:
    config = load_config({"artifacts_dir": str(tmp_path)})
    with pytest.raises(
        BenchError, match=r"no stack outputs at .*\(or give --results-s3 s3://BUCKET/PREFIX\)$"
    ):
        results_location(config, target="aws")
    record_outputs(tmp_path)
    aws = results_location(config, target="aws")
    assert isinstance(aws, S3ModelSource)
    assert (aws.uri, aws.service_account) == ("s3://bm-results/bench-results", "bench-results")
    assert results_location(config, target="aws", s3_uri="s3://other").uri == "s3://other/bench-results"
    with pytest.raises(BenchError, match=r"vsphere\.bench_results_s3 is empty"):
        results_location(config, target="vsphere")
    with pytest.raises(BenchError, match="must look like s3://bucket/prefix"):
        results_location(config, target="vsphere", s3_uri="lab-results/x")


# --- `invoke bench --in-cluster --dry-run`: a fresh clone, no kubeconfig, no credentials ------------

OFFLINE = {
    # Any AWS call would go to a closed loopback port, never out; no credentials, no kubeconfig.
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "KUBECONFIG": "/nonexistent",
}


def _offline(tmp_path: Path, *args: str) -> Any:
    env = {**OFFLINE, "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "home")}
    full = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "bench", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    return full


def test_dry_run_renders_every_pool_and_touches_nothing(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    run = _offline(
        tmp_path,
        "--target", "aws", "--in-cluster", "--dry-run", "--image", "r/bench:1",
        "--artifacts-s3", "s3://bm-models/artifacts", "--results-s3", "s3://bm-results",
        "--artifacts-dir", str(artifacts),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    jobs = artifacts / "deploy" / "aws" / "bench-jobs"
    paths = [jobs / "50-bench-c5.yaml", jobs / "50-bench-c6i.yaml"]
    for path in paths:
        assert f"rendered {path}" in run.stdout
        documents = parse_and_validate(path.read_text(), version="1.34", source=path.name)
        assert [d["kind"] for d in documents] == ["ServiceAccount", "ConfigMap", "NetworkPolicy", "Job"]
    assert "no cluster touched" in run.stdout
    assert not (artifacts / "bench").exists()
    # vsphere, from a PVC; and the one-line errors of a dry run that lacks what it needs.
    pvc = _offline(
        tmp_path, "--target", "vsphere", "--in-cluster", "--dry-run", "--image", "r/bench:1",
        "--artifacts-pvc", "bench-artifacts", "--artifacts-dir", str(artifacts),
    )  # fmt: skip
    assert pvc.returncode == 0, pvc.stderr
    assert (artifacts / "deploy" / "vsphere" / "bench-jobs" / "50-bench-icelake.yaml").is_file()
    no_results = _offline(
        tmp_path, "--target", "vsphere", "--in-cluster", "--dry-run", "--image", "r/bench:1",
        "--artifacts-s3", "s3://lab/a", "--artifacts-dir", str(artifacts),
    )  # fmt: skip
    assert no_results.returncode == 1
    assert no_results.stderr.strip() == (
        "error: vsphere.bench_results_s3 is empty: set it to s3://BUCKET/PREFIX "
        "(or give --results-s3 s3://BUCKET/PREFIX)"
    )
