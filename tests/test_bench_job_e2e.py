"""The rendered bench Job, run here: its exact containers against the local server and a moto S3.

What `invoke bench --target aws|vsphere --in-cluster --dry-run` renders is parsed from its YAML, and
each container runs in order as the pod would: the init container's sync command (the AWS CLI, from
requirements-awscli.txt) copies an artifacts tree that was built in another folder, since deleted,
from the moto server into this "pod's" volume; the bench container's command and environment run in
.venv-bench (the bench image's own requirement set: no TensorFlow) against the local model server;
the upload container syncs the results back. Only the mount paths (each volume → a folder of this
test) and the in-cluster Service host (→ the local server's loopback port) are substituted; the
credentials the cluster injects (Pod Identity on aws, a Secret on vsphere) are static test keys.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from loopback import serving
from moto_aws import REGION, moto_session  # noqa: F401 (fixture)
from test_bench_server import FAST_BENCH

from contracts.config import ToolkitConfig, load_config
from contracts.errors import BenchError
from workloads.bench import in_cluster, result_frame
from workloads.bench.inputs import load_bench_images
from workloads.bench.results import validate_results
from workloads.data.layout import scan_dataset
from workloads.data.manifest import SplitManifest
from workloads.data.split import build_manifest
from workloads.serving.local import ServerInfo
from workloads.targets import cluster_target

REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".venv-bench"
AWS_CLI_VENV = REPO / "build" / "awscli"
BUCKET = "bmc-e2e-artifacts"
TREE_PREFIX = "trees/laptop"
RESULTS_PREFIX = "bench-results"
TEST_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
CONTAINER_TIMEOUT_S = 180


def _built(stamp: Path, what: str) -> Path:
    """The folder of a `make test` prerequisite; outside CI a missing one skips, in CI it fails."""
    if stamp.is_file():
        return stamp.parent
    reason = f"{stamp} is missing ({what}); `make test` builds it"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _current(app: Path) -> Path:
    """The bench venv's copy of the image's build context, if it is this checkout's source (the
    packages `invoke bench` runs; infra/, copied too, is the CDK app)."""
    sources = ["tasks.py", "pyproject.toml", "requirements.lock"]
    for package in ("contracts", "workloads"):
        sources += [
            str(path.relative_to(REPO))
            for path in (REPO / package).rglob("*")
            if path.is_file() and path.suffix in {".py", ".j2", ".yaml"} and "__pycache__" not in path.parts
        ]
    stale = [name for name in sources if not _same(REPO / name, app / name)]
    if stale:
        reason = f"{app} is older than {stale[0]} (and {len(stale) - 1} more); `make test` rebuilds it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return app


def _same(source: Path, copy: Path) -> bool:
    return copy.is_file() and copy.read_bytes() == source.read_bytes()


def _entrypoint(dockerfile: Path) -> list[str]:
    """The image's ENTRYPOINT (exec form), what a container without ``command`` runs."""
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            return list(json.loads(line.removeprefix("ENTRYPOINT ")))
    raise AssertionError(f"{dockerfile} has no exec-form ENTRYPOINT")


# --- the pod, here ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    bin_dir: Path  # where its executables are (the image's PATH)
    workdir: Path


@dataclass
class LocalPod:
    """A pod's volumes as folders, its Secrets and the in-cluster Service ports mapped to loopback."""

    volumes: dict[str, Path]
    secrets: Mapping[str, Mapping[str, str]]
    service_ports: Mapping[int, int]  # Service port → the local server's port
    images: Mapping[str, Image]
    injected_env: Mapping[str, str]  # what the cluster adds to the sync containers (credentials)

    def mounts(self, container: dict[str, Any]) -> dict[str, Path]:
        return {
            mount["mountPath"]: self.volumes[mount["name"]] / mount.get("subPath", "")
            for mount in container.get("volumeMounts", [])
        }

    def localise(self, text: str, mounts: Mapping[str, Path]) -> str:
        """``text`` with each mount path (at a path boundary) and Service host:port replaced, once."""
        if mounts:
            paths = sorted(mounts, key=len, reverse=True)
            pattern = r"(?<![\w./-])(" + "|".join(map(re.escape, paths)) + r")(?=/|$|[^\w.-])"
            text = re.sub(pattern, lambda m: str(mounts[m.group(1)]), text)

        def service(match: re.Match[str]) -> str:
            return f"127.0.0.1:{self.service_ports[int(match.group(2))]}"

        return re.sub(r"\b([a-z0-9-]+(?:\.[a-z0-9-]+)*\.svc\.cluster\.local):(\d+)", service, text)

    def env(self, container: dict[str, Any], mounts: Mapping[str, Path]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = self.localise(str(item["value"]), mounts)
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
        return env

    def run(self, container: dict[str, Any], *, sync: bool) -> subprocess.CompletedProcess[str]:
        mounts = self.mounts(container)
        links = _nest(mounts)
        try:
            return self._run(container, mounts, sync=sync)
        finally:
            for link in links:
                link.unlink()

    def _run(
        self, container: dict[str, Any], mounts: Mapping[str, Path], *, sync: bool
    ) -> subprocess.CompletedProcess[str]:
        image = self.images[container["image"]]
        argv = container.get("command") or image.entrypoint
        argv = [self.localise(arg, mounts) for arg in [*argv, *container.get("args", [])]]
        env = {
            # The image's PATH; the pod's /tmp (a volume) as the system temp folder.
            "PATH": f"{image.bin_dir}:/usr/bin:/bin",
            **({"TMPDIR": str(mounts["/tmp"])} if "/tmp" in mounts else {}),
            **self.env(container, mounts),
            **(self.injected_env if sync else {}),
        }
        workdir = container.get("workingDir")
        cwd = self.localise(workdir, mounts) if workdir else image.workdir
        return subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=CONTAINER_TIMEOUT_S
        )


def _nest(mounts: Mapping[str, Path]) -> list[Path]:
    """A mount inside another (results at /work/artifacts/bench): a symlink in the outer volume's
    folder, so that what the process writes under the outer path lands in the inner volume."""
    links = []
    for outer, outer_folder in mounts.items():
        for inner, inner_folder in mounts.items():
            if inner.startswith(outer.rstrip("/") + "/"):
                link = outer_folder / inner[len(outer) :].strip("/")
                assert not link.exists(), f"{link} would be hidden by the volume mounted at {inner}"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(inner_folder, target_is_directory=True)
                links.append(link)
    return links


def _documents(paths: list[Path]) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def _materialise(pod_spec: dict[str, Any], documents: list[dict[str, Any]], root: Path) -> dict[str, Path]:
    """A folder per volume: emptyDirs empty, configMaps holding their items as files."""
    config_maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
    volumes = {}
    for volume in pod_spec["volumes"]:
        folder = root / "volumes" / volume["name"]
        folder.mkdir(parents=True)
        if "configMap" in volume:
            data = config_maps[volume["configMap"]["name"]]["data"]
            for item in volume["configMap"]["items"]:
                (folder / item["path"]).write_text(data[item["key"]])
        else:
            assert set(volume) & {"emptyDir", "projected"}, f"volume {volume['name']} is not pod-local"
        volumes[volume["name"]] = folder
    return volumes


def _localise_config_files(pod: LocalPod, pod_spec: dict[str, Any], bench: dict[str, Any]) -> None:
    """The mounted config file names the pod's mount paths too (artifacts_dir: /work/artifacts)."""
    mounts = pod.mounts(bench)
    for mount in bench["volumeMounts"]:
        volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
        if "configMap" in volume:
            for file in pod.volumes[mount["name"]].iterdir():
                file.write_text(pod.localise(file.read_text(), mounts))


# --- fixtures -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tools:
    bench_venv: Path
    app: Path
    aws_cli: Path


@pytest.fixture(scope="session")
def tools() -> Tools:
    """Checked first (session scope, first argument): a skip costs no model training."""
    bench_venv = _built(BENCH_VENV / ".installed", "the bench image's requirement set")
    return Tools(bench_venv, _current(bench_venv / "app"), _built(AWS_CLI_VENV / ".installed", "the AWS CLI"))


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory, served_repository: Path) -> Iterator[ServerInfo]:
    with serving(tmp_path_factory.mktemp("server"), served_repository) as info:
        yield info


def _laptop_tree(root: Path, served_repository: Path) -> Path:
    """An artifacts tree (data/ with its split, models/) built in ``root``, as on a laptop."""
    shutil.copytree(served_repository / "data" / "synthetic", root / "data" / "synthetic")
    shutil.copytree(served_repository / "models", root / "models")
    scan = scan_dataset(root / "data" / "synthetic", workers=2, progress=lambda line: None)
    manifest = build_manifest(scan, seed=42, val_fraction=0.15, test_fraction=0.15, source="synthetic")
    manifest.save(root / "data" / "split.json")
    return root


def _aws(cli: Path, *args: str, endpoint: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION, **TEST_KEYS}
    done = subprocess.run([str(cli / "bin" / "aws"), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _objects(s3: Any, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _rendered(config: ToolkitConfig, target: str, pool: str, moto_url: str) -> list[Path]:
    """What `invoke bench --target T --pool P --in-cluster --dry-run --artifacts-s3 … --results-s3 …`
    writes."""
    endpoint = moto_url if target == "vsphere" else ""  # aws: AWS S3 itself (moto stands in below)
    artifacts = in_cluster.artifacts_source(
        config, target=target, s3_uri=f"s3://{BUCKET}/{TREE_PREFIX}", endpoint_url=endpoint
    )
    results = in_cluster.results_location(
        config, target=target, s3_uri=f"s3://{BUCKET}/{RESULTS_PREFIX}", endpoint_url=endpoint
    )
    return in_cluster.dry_run(
        config,
        target=target,
        pool=pool,
        image="registry.example/bench:e2e",
        artifacts=artifacts,
        results=results,
        progress=lambda line: None,
    )


# --- the test -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("target", "protocol"), [("aws", "grpc"), ("vsphere", "rest")])
def test_the_rendered_bench_job_runs_and_prints_a_valid_result(
    tools: Tools,
    target: str,
    protocol: str,
    tmp_path: Path,
    served_repository: Path,
    local_server: ServerInfo,
    moto_session,  # noqa: F811 (fixture)
) -> None:
    bench_venv, app, aws_cli = tools.bench_venv, tools.app, tools.aws_cli
    no_tf = subprocess.run(
        [str(bench_venv / "bin" / "python"), "-c", "import tensorflow"], capture_output=True, text=True
    )
    assert no_tf.returncode != 0, "the bench image's requirement set must not hold TensorFlow"

    s3 = moto_session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    # Built on a "laptop", synced to S3 as the README says, then the laptop's folder is gone.
    laptop = _laptop_tree(tmp_path / "laptop" / "artifacts", served_repository)
    _aws(aws_cli, "s3", "sync", str(laptop), f"s3://{BUCKET}/{TREE_PREFIX}", endpoint=moto_session.url)
    shutil.rmtree(laptop)

    config = load_config(
        {"artifacts_dir": str(tmp_path / "here"), "bench": {**FAST_BENCH, "protocol": protocol}}
    )
    pool = next(iter(cluster_target(target).pools(config)))
    documents = _documents(_rendered(config, target, pool, moto_session.url))
    (job,) = [d for d in documents if d["kind"] == "Job"]
    pod_spec = job["spec"]["template"]["spec"]
    containers = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
    by_name = {c["name"]: c for c in containers}
    bench = by_name[in_cluster.BENCH_CONTAINER]
    syncs = [c for c in containers if c["image"] == config.ovms.sync_image]
    assert syncs and containers.index(syncs[0]) < containers.index(bench) < containers.index(syncs[-1])

    pod = LocalPod(
        volumes=_materialise(pod_spec, documents, tmp_path / "pod"),
        secrets={
            ref["name"]: TEST_KEYS
            for c in containers
            for item in c.get("env", [])
            if (ref := item.get("valueFrom", {}).get("secretKeyRef"))
        },
        service_ports={
            config.ovms.grpc_port: int(local_server.grpc_target.rsplit(":", 1)[1]),
            config.ovms.rest_port: int(local_server.http_url.rsplit(":", 1)[1]),
        },
        images={
            config.ovms.sync_image: Image(["aws"], aws_cli / "bin", tmp_path),
            # The image's WORKDIR /app: the build context the Makefile copied beside the venv.
            bench["image"]: Image(
                _entrypoint(REPO / "images" / "bench" / "Dockerfile"), bench_venv / "bin", app
            ),
        },
        # aws: what Pod Identity hands the pod, and moto standing in for S3; vsphere: all in the Job.
        injected_env={**TEST_KEYS, "AWS_ENDPOINT_URL": moto_session.url} if target == "aws" else {},
    )
    _localise_config_files(pod, pod_spec, bench)

    outputs = {}
    for container in containers:
        done = pod.run(container, sync=container in syncs)
        assert done.returncode == 0, f"container {container['name']} failed:\n{done.stdout}\n{done.stderr}"
        outputs[container["name"]] = done.stdout

    document = result_frame.extract_result(outputs[bench["name"]])  # what `--in-cluster` reads from the log
    validate_results(document)
    assert (document["target"], document["pool"]) == (target, pool)
    assert document["protocol"] == protocol
    assert document["endpoint"] == {"grpc": local_server.grpc_target, "rest": local_server.http_url}[protocol]
    assert document["known_answer"]["before"] == document["known_answer"]["after"] == "pass"
    # The known answer was checked against the answers stored in the synced models/ (found by the
    # synced test images' sha256), and the bench read its inputs through the relocated split.
    assert document["known_answer"]["images"] == FAST_BENCH["known_answer_images"]

    # The upload carries the results alone, under <results prefix>/<target>/<pool>/<job>/.
    job_prefix = f"{RESULTS_PREFIX}/{target}/{pool}/{job['metadata']['name']}/"
    uploaded = _objects(s3, f"{RESULTS_PREFIX}/")
    assert uploaded and all(key.startswith(job_prefix) for key in uploaded)
    names = [key.removeprefix(job_prefix) for key in uploaded]
    assert "results.csv" in names and not any(n.startswith(("models/", "data/")) for n in names)
    (result_key,) = [key for key in uploaded if key.endswith(".json")]
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=result_key)["Body"].read()) == document


def test_a_tree_synced_without_its_images_is_one_line_naming_where_they_were_expected(
    tmp_path: Path, write_image
) -> None:
    laptop = tmp_path / "laptop" / "artifacts"
    for code in ("ABE", "NGS"):
        for i in range(3):
            write_image(laptop / "data" / "synthetic" / code / f"{code}_{i:05d}.jpg", seed=i)
    scan = scan_dataset(laptop / "data" / "synthetic", workers=1, progress=lambda line: None)
    build_manifest(scan, seed=1, val_fraction=0.15, test_fraction=0.3, source="synthetic").save(
        laptop / "data" / "split.json"
    )
    pod = tmp_path / "pod" / "work" / "artifacts"
    (pod / "data").mkdir(parents=True)
    shutil.copy(laptop / "data" / "split.json", pod / "data" / "split.json")  # the images left behind
    shutil.rmtree(laptop)

    manifest = SplitManifest.load(pod / "data" / "split.json")
    with pytest.raises(BenchError) as err:
        load_bench_images(manifest, 4, 32)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"test image {pod / 'data' / 'synthetic'}/")
    assert "sync the whole artifacts tree" in message
