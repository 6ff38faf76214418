"""Invoke CLI of the bone-marrow toolkit. `invoke --list` shows every task; `invoke --help TASK` its flags.

Configuration: typed defaults in contracts/config.py, overridden by `invoke.yaml` (key `bmc`),
then by `INVOKE_BMC_<SECTION>_<KEY>` environment variables (one naming no key is an error),
then by the flags below.
The tasks only parse arguments and report; the work happens in `workloads`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invoke import Collection, Context, Exit, task

from contracts.aws_names import MODEL_REPOSITORY_PREFIX
from contracts.config import (
    MAX_DATA_WORKERS,
    ToolkitConfig,
    available_cpus,
    defaults_mapping,
    load_config,
    replace,
)
from contracts.errors import ToolkitError, TrainingInterrupted
from workloads.config_environment import check_environment
from workloads.targets import (
    DEPLOY_TARGETS,
    TRAINING_TARGETS,
    ModelRequest,
    UpRequest,
    cluster_target,
    cluster_targets,
    deploy_target,
    describe,
    either,
    target_names,
    training_target,
)

# Settings of the local embedded demo (`invoke pipeline`): synthetic data, no download,
# a short CPU training run. Real runs use `invoke data/train/optimize` with the defaults.
DEMO_TRAIN = {
    "backbone": "mobilenet_v3_small",
    "weights": "none",
    "image_size": 128,
    "head_epochs": 2,
    "finetune_epochs": 4,
    "head_learning_rate": 2e-3,
    "finetune_learning_rate": 1e-3,
}
# The demo's synthetic test split holds 12 images per class (252 in all): one image moves accuracy
# 0.4 points and a class's recall 8.3 points, so the INT8 gate's production budgets would reject on
# the luck of a few images. The demo allows about one image's swing per rule; every figure and the
# verdict are still printed and recorded in optimization.json.
DEMO_OPTIMIZE = {
    "int8_max_accuracy_drop": 3.0,
    "int8_max_balanced_accuracy_drop": 3.0,
    "int8_max_protected_recall_drop": 9.0,
    "speed_seconds": 2.0,  # INT8 vs FP32 images/s on this machine, a sanity check (README)
}
# What the demo measures: the served INT8 and FP32 models, and TensorFlow in process as the baseline.
DEMO_BENCHES = (("int8", "server"), ("fp32", "server"), ("fp32", "tensorflow"))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping) or hasattr(value, "_config"):
        return {k: _plain(value[k]) for k in value}
    return value


def _as_strings(value: Any) -> Any:
    """Defaults as strings for Invoke's config tree.

    Invoke casts an environment variable to the type of the value it overrides, and its casts
    are lax (any non-empty string is a true bool, "abc" for an int is a traceback). As strings,
    every value reaches contracts.config, which parses and validates it with a one-line error.
    """
    if isinstance(value, dict):
        return {k: _as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _require_config_file(c: Context) -> None:
    """`invoke -f FILE`: Invoke skips a missing FILE silently; here it is an error."""
    # Invoke keeps the -f path only on this private attribute of the task's Config.
    given = getattr(c.config, "_runtime_path", None)
    if given and not Path(given).expanduser().is_file():
        raise Exit(f"error: configuration file {given} (invoke -f) not found", code=2)


def load(c: Context, artifacts_dir: str | None = None) -> ToolkitConfig:
    """The effective configuration: defaults < invoke.yaml < environment < --artifacts-dir."""
    _require_config_file(c)
    try:
        mapping = _plain(c.config.get("bmc", {}))
        check_environment(os.environ, mapping)
        if artifacts_dir:
            mapping["artifacts_dir"] = artifacts_dir
        return load_config(mapping)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def replace_or_exit(config: ToolkitConfig, section: str, **changes: Any) -> ToolkitConfig:
    """Apply command-line flags (None = not given) to one section; bad values exit with code 2."""
    try:
        return replace(config, section, **changes)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def run_step(step, *args, **kwargs):
    """Run a workloads function; a ToolkitError becomes one line on stderr and exit code 1.

    Ctrl-C becomes one line and exit code 130 (training's line names its resume command).
    """
    try:
        return step(*args, **kwargs)
    except TrainingInterrupted as exc:
        raise Exit(f"error: {exc}", code=TrainingInterrupted.EXIT_CODE) from None
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    except KeyboardInterrupt:
        raise Exit("error: interrupted", code=TrainingInterrupted.EXIT_CODE) from None


def interruptible(body):
    """Ctrl-C anywhere in a task's body (its imports, the steps between run_step calls): one line, 130.

    Invoke itself turns a KeyboardInterrupt into exit code 1 without a word.
    """

    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except KeyboardInterrupt:
            raise Exit("error: interrupted", code=TrainingInterrupted.EXIT_CODE) from None

    return wrapper


def check_flags(step, *args, **kwargs):
    """Like run_step for what checks flags (a target name, flags that do not fit it): exit code 2."""
    try:
        return step(*args, **kwargs)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=2) from None


@task(
    name="prepare",
    default=True,
    help={
        "source": "synthetic (generated offline), local (a copy on disk) or kaggle (needs credentials)",
        "path": "dataset root for --source local (holds bone_marrow_cell_dataset/)",
        "images_per_class": "synthetic images per class",
        "seed": "seed of the generator and of the stratified split",
        "workers": f"threads that decode and hash images while scanning, processes that draw synthetic "
        f"ones (1-{MAX_DATA_WORKERS}; default: the cores this process may use, {available_cpus()} here)",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def data_prepare(
    c, source=None, path=None, images_per_class=None, seed=None, workers=None, artifacts_dir=None
):
    """Get the dataset (synthetic, local or Kaggle) and write the stratified split manifest."""
    from workloads.data.prepare import prepare_data

    config = load(c, artifacts_dir)
    config = replace_or_exit(
        config,
        "data",
        source=source,
        path=path,
        synthetic_images_per_class=images_per_class,
        seed=seed,
        workers=workers,
    )
    run_step(prepare_data, config)


@task(
    name="run",
    default=True,
    help={
        "target": describe(TRAINING_TARGETS.values(), lambda t: t.summary),
        "backbone": "mobilenet_v3_large (default), mobilenet_v3_small, efficientnet_v2_b0 or resnet50",
        "weights": "imagenet, none (offline, random init) or a path to no-top Keras weights",
        "image_size": "square input size in pixels",
        "batch_size": "batch size per replica (global = this x replicas)",
        "head_epochs": "phase 1 epochs (head only on a frozen pretrained backbone)",
        "finetune_epochs": "phase 2 epochs (top of the backbone unfrozen)",
        "device": "auto, cpu, gpu or hpu (--target dl1 always uses hpu)",
        "run_id": "run directory name under <artifacts>/runs (default: a timestamp)",
        "resume": "continue the given run after an interruption, in place (without --run-id: the "
        "unfinished run written to last)",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def train_run(
    c,
    target="local",
    backbone=None,
    weights=None,
    image_size=None,
    batch_size=None,
    head_epochs=None,
    finetune_epochs=None,
    device=None,
    run_id=None,
    resume=False,
    artifacts_dir=None,
):
    """Two-phase transfer learning on the split manifest; writes a complete run directory."""
    training = check_flags(training_target, target)
    check_flags(training.check, device=device, resume=resume, run_id=run_id)
    config = load(c, artifacts_dir)
    config = replace_or_exit(
        config,
        "train",
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        batch_size=batch_size,
        head_epochs=head_epochs,
        finetune_epochs=finetune_epochs,
        device=device,
    )
    run_step(training.train, config, run_id=run_id, resume=resume)


@task(
    name="run",
    default=True,
    help={
        "run": "run directory to optimize (default: the newest complete run)",
        "int8_max_drop": "INT8 gate: reject INT8 if its test accuracy is more than this many points below "
        "FP32 (0: no drop; also NNCF accuracy control's target). Balanced-accuracy and per-class budgets: "
        "optimize.int8_* settings",
        "calibration_size": "number of train-split images for INT8 calibration",
        "model_name": "base name in the OVMS repository (<name>-fp32, <name>-int8, …)",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def optimize_run(c, run=None, int8_max_drop=None, calibration_size=None, model_name=None, artifacts_dir=None):
    """OpenVINO IR FP32/FP16, NNCF INT8, evaluation, parity, and OVMS repository publication."""
    from workloads.data.manifest import SplitManifest
    from workloads.optimize.pipeline import latest_run, run_optimize

    config = load(c, artifacts_dir)
    config = replace_or_exit(
        config,
        "optimize",
        int8_max_accuracy_drop=int8_max_drop,
        calibration_size=calibration_size,
        model_name=model_name,
    )
    run_dir = Path(run) if run else run_step(latest_run, config.paths.runs)
    manifest = run_step(SplitManifest.load, config.paths.split_manifest)
    run_step(run_optimize, config, run_dir, manifest)


@task(
    help={
        "target": describe(DEPLOY_TARGETS.values(), lambda t: t.summary),
        "hint": "local: OpenVINO performance hint, THROUGHPUT or LATENCY",
        "dry_run": "aws: synthesize (no credentials needed) and, with credentials, show `cdk diff`; "
        "deploy nothing; "
        "vsphere: discover, preflight, write the validated spec, print the eksctl command, stop",
        "model_bucket": "vsphere, ovms.eksa_model_delivery=secret-sync: S3 bucket of the model repository",
        "model_prefix": f"vsphere: key prefix of the models (default: {MODEL_REPOSITORY_PREFIX})",
        "model_region": "vsphere: region of --model-bucket (default: aws.region)",
        "s3_endpoint": "vsphere: URL of an S3-compatible store on-prem (default: AWS S3)",
        "model_image": "vsphere, ovms.eksa_model_delivery=baked: OVMS image with the models baked in",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    }
)
def up(
    c,
    target="local",
    hint=None,
    dry_run=False,
    model_bucket=None,
    model_prefix=MODEL_REPOSITORY_PREFIX,
    model_region=None,
    s3_endpoint=None,
    model_image=None,
    artifacts_dir=None,
):
    """Start serving the OVMS model repository on a target and record its endpoints."""
    deploy = check_flags(deploy_target, target)
    if dry_run and not deploy.supports_dry_run:
        choices = either(target_names(lambda t: t.supports_dry_run))
        raise Exit(f"error: --dry-run applies to --target {choices}, not {target}", code=2)
    config = replace_or_exit(load(c, artifacts_dir), "serving", performance_hint=hint)
    models = ModelRequest(
        bucket=model_bucket or "",
        prefix=model_prefix,
        region=model_region or "",
        endpoint_url=s3_endpoint or "",
        image=model_image or "",
    )
    run_step(deploy.up, config, request=UpRequest(dry_run=dry_run, runner=c, models=models))


@task(
    help={
        "target": "which deployment to stop: " + describe(DEPLOY_TARGETS.values(), lambda t: t.down_summary),
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    }
)
def down(c, target="local", artifacts_dir=None):
    """Stop serving on a target."""
    deploy = check_flags(deploy_target, target)
    run_step(deploy.down, load(c, artifacts_dir), runner=c)


IN_CLUSTER = either(target_names(lambda t: t.in_cluster_bench))


@task(
    auto_shortflags=False,  # too many flags for one-letter forms to stay meaningful
    name="run",
    default=True,
    help={
        "target": f"{either(DEPLOY_TARGETS)} (each reads the endpoints `invoke up` recorded)",
        "endpoint": "any KServe v2 server (OVMS included): http://host:port for REST, host:port for gRPC",
        "pool": "node pool to measure (default: every recorded pool serving --precision)",
        "runtime": "server (over the network), or openvino / tensorflow in process (baselines)",
        "scenario": "batch (Offline: images/s), realtime (SingleStream: latency), all (both; the default), "
        "sweep (throughput–latency curve), rate (open loop) or max-rate (highest rate under a p99 bound); "
        "default: the modes whose flags are given, else all",
        "concurrency_range": "sweep: concurrencies as start:end:step (perf_analyzer's) or a list 1,2,4,8",
        "request_rate_range": "rate: requests/s as start:end:step or a list 10,20,40",
        "request_distribution": "rate and max-rate: arrivals poisson (default) or constant",
        "latency_threshold": "max-rate: the p99 bound in ms",
        "max_in_flight": "rate and max-rate: most requests outstanding at once",
        "window_seconds": "load modes: seconds per measurement window",
        "stability_percent": "load modes: windows agree within ±this % of their mean (throughput, latency)",
        "max_windows": "load modes: windows per point before giving up on stability (stable: false)",
        "precision": "fp32, fp16, int8 (each executed in f32 where not quantized) or bf16 (the fp32 IR "
        "executed in bf16; AVX512_BF16/AMX CPUs only) — model <name>-<precision>",
        "protocol": "grpc or rest (binary tensors either way, never JSON tensors)",
        "input_format": "tensor (client-side resize) or jpeg (server decodes)",
        "batch_size": "images per request in the batch scenario",
        "concurrency": "concurrent requests in the batch scenario",
        "repetitions": "measured repetitions (>= 3; median and range reported)",
        "min_duration": "minimum seconds per repetition",
        "in_cluster": f"{'/'.join(target_names(lambda t: t.in_cluster_bench))}: run the bench as a Job "
        "in the cluster next to OVMS (per pool), "
        "read its result from the pod log and write it under <artifacts>/bench",
        "image": "--in-cluster: the bench image (images/bench), e.g. REGISTRY/bench:TAG",
        "artifacts_s3": "--in-cluster: s3://bucket/prefix holding the artifacts tree (models/, data/) "
        "the Job syncs in (default on aws: the models bucket's aws.bench_artifacts_prefix)",
        "artifacts_pvc": "--in-cluster: PersistentVolumeClaim holding the artifacts tree instead of S3",
        "s3_endpoint": "--in-cluster on vsphere: URL of an S3-compatible store (default: AWS S3)",
        "results_s3": "--in-cluster from S3: s3://bucket/prefix the Job uploads its results "
        "under <target>/<pool>/<job>/ (default: aws: the results bucket's bench-results/; "
        "vsphere: vsphere.bench_results_s3)",
        "dry_run": "--in-cluster: render and validate every pool's Job, print where; "
        "touch no cluster and no cloud",
        "print_result": "print the result JSON between marker lines (what the in-cluster Job does)",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
@interruptible
def bench_run(
    c,
    target="local",
    endpoint=None,
    pool=None,
    runtime="server",
    scenario=None,
    concurrency_range=None,
    request_rate_range=None,
    request_distribution=None,
    latency_threshold=None,
    max_in_flight=None,
    window_seconds=None,
    stability_percent=None,
    max_windows=None,
    precision=None,
    protocol=None,
    input_format=None,
    batch_size=None,
    concurrency=None,
    repetitions=None,
    min_duration=None,
    in_cluster=False,
    image=None,
    artifacts_s3=None,
    artifacts_pvc=None,
    s3_endpoint=None,
    results_s3=None,
    dry_run=False,
    print_result=False,
    artifacts_dir=None,
):
    """Benchmark batch (images/s) and real-time (latency) inference; writes JSON + CSV results."""
    from workloads.bench.load_modes import scenarios_for
    from workloads.bench.loadgen import parse_levels
    from workloads.bench.run import bench_targets, run_bench

    if target not in DEPLOY_TARGETS:
        choices = ", ".join(DEPLOY_TARGETS)
        raise Exit(f"error: unknown target {target!r}; choose {choices} or --endpoint", code=2)
    if in_cluster and (not DEPLOY_TARGETS[target].in_cluster_bench or endpoint or runtime != "server"):
        raise Exit(f"error: --in-cluster needs --target {IN_CLUSTER}, no --endpoint, runtime server", code=2)
    if in_cluster and not image:
        raise Exit("error: --in-cluster needs the bench image: --image REGISTRY/bench:TAG", code=2)
    if not in_cluster and (image or artifacts_s3 or artifacts_pvc or s3_endpoint or results_s3 or dry_run):
        raise Exit(
            "error: --image, --artifacts-s3/-pvc, --results-s3, --s3-endpoint and --dry-run apply only "
            "with --in-cluster",
            code=2,
        )
    if results_s3 and artifacts_pvc:
        raise Exit(
            "error: --results-s3 does not apply with --artifacts-pvc (the claim keeps its results)", code=2
        )
    modes = {"sweep": concurrency_range, "rate": request_rate_range, "max-rate": latency_threshold}
    try:
        scenarios = scenarios_for(scenario, given={mode for mode, flag in modes.items() if flag is not None})
        sweep = concurrency_range and parse_levels(concurrency_range, int, "--concurrency-range")
        rates = request_rate_range and parse_levels(request_rate_range, float, "--request-rate-range")
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    if in_cluster and scenarios != ("batch", "realtime"):
        raise Exit("error: --in-cluster runs the batch and realtime scenarios only", code=2)
    if runtime not in ("server", "openvino", "tensorflow"):
        raise Exit(f"error: unknown runtime {runtime!r}; choose server, openvino or tensorflow", code=2)
    config = replace_or_exit(
        load(c, artifacts_dir),
        "bench",
        precision=precision,
        protocol=protocol,
        input_format=input_format,
        batch_size=batch_size,
        concurrency=concurrency,
        repetitions=repetitions,
        min_duration_seconds=min_duration,
        sweep_concurrency=sweep,
        request_rates=rates,
        request_distribution=request_distribution,
        p99_bound_ms=latency_threshold,
        max_in_flight=max_in_flight,
        window_seconds=window_seconds,
        stability_percent=stability_percent,
        max_windows=max_windows,
    )
    if in_cluster:
        _bench_in_cluster(
            config, target, pool, image, artifacts_s3, artifacts_pvc, s3_endpoint, results_s3, dry_run
        )
        return
    try:
        label, pools = bench_targets(config, target=target, endpoint=endpoint, pool=pool, runtime=runtime)
    except ToolkitError as exc:
        raise Exit(f"error: {exc}", code=1 if not endpoint else 2) from None
    for pool_name, pool_endpoint in pools:
        document, _path = run_step(
            run_bench,
            config,
            target=label,
            endpoint=pool_endpoint,
            pool=pool_name,
            runtime=runtime,
            scenarios=scenarios,
        )
        if print_result:
            from workloads.bench.result_frame import framed_result

            print(framed_result(document), flush=True)


def _bench_in_cluster(
    config, target, pool, image, artifacts_s3, artifacts_pvc, s3_endpoint, results_s3, dry_run
):
    from workloads.bench import in_cluster

    artifacts = run_step(
        in_cluster.artifacts_source,
        config,
        target=target,
        s3_uri=artifacts_s3,
        pvc=artifacts_pvc,
        endpoint_url=s3_endpoint or "",
    )
    results = None
    if not artifacts_pvc:
        results = run_step(
            in_cluster.results_location,
            config,
            target=target,
            s3_uri=results_s3,
            endpoint_url=s3_endpoint or "",
        )
    jobs = {"target": target, "pool": pool, "image": image or "", "artifacts": artifacts, "results": results}
    if dry_run:
        run_step(in_cluster.dry_run, config, **jobs)
        return
    kubeconfig = run_step(in_cluster.kubeconfig_for, config, target)
    run_step(in_cluster.run_in_cluster, config, kubeconfig=kubeconfig, **jobs)


@task(
    name="report",
    help={
        "results": "result files or folders, comma-separated (default: <artifacts>/bench)",
        "out": "folder for report.md and report.png (default: <artifacts>/bench/report)",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
        "live_prices": "price nodes from the AWS Pricing API (needs AWS credentials) instead of the "
        "dated bench.prices table",
    },
)
def bench_report(c, results=None, out=None, artifacts_dir=None, live_prices=False):
    """Merge benchmark results into a Markdown table (targets x batch/real-time) and a PNG chart."""
    from workloads.bench.pricing import configured_report_prices
    from workloads.bench.report import write_report

    config = load(c, artifacts_dir)
    paths = [Path(p) for p in results.split(",")] if results else [config.paths.bench_results]
    out_dir = Path(out) if out else config.paths.bench_results / "report"
    prices = run_step(configured_report_prices, config, live=live_prices)
    markdown, _chart = run_step(write_report, paths, out_dir, prices)
    print(markdown.read_text())


@task(
    help={
        "images_per_class": "synthetic images per class",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    }
)
def pipeline(c, images_per_class=None, artifacts_dir=None):
    """The local demo: synthetic data → CPU training → OpenVINO FP32/INT8 → local server → benchmark."""
    from workloads.bench.pricing import configured_report_prices
    from workloads.bench.report import write_report
    from workloads.bench.run import run_bench
    from workloads.data.manifest import SplitManifest
    from workloads.data.prepare import prepare_data
    from workloads.optimize.pipeline import run_optimize
    from workloads.serving.local import start
    from workloads.training.train import run_training

    config = load(c, artifacts_dir)
    config = replace_or_exit(config, "data", source="synthetic", synthetic_images_per_class=images_per_class)
    config = replace_or_exit(config, "train", **DEMO_TRAIN)
    config = replace_or_exit(config, "optimize", **DEMO_OPTIMIZE)
    print("== 1/5 data", flush=True)
    run_step(prepare_data, config)
    print("== 2/5 train", flush=True)
    result = run_step(run_training, config)
    print("== 3/5 optimize", flush=True)
    manifest = run_step(SplitManifest.load, config.paths.split_manifest)
    run_step(run_optimize, config, result.run_dir, manifest)
    print("== 4/5 serve", flush=True)
    run_step(start, config)
    print("== 5/5 bench", flush=True)
    written = []
    for precision, runtime in DEMO_BENCHES:
        bench_config = replace_or_exit(config, "bench", precision=precision)
        _results, path = run_step(
            run_bench,
            bench_config,
            target="local",
            endpoint=None,
            runtime=runtime,
            scenarios=("batch", "realtime"),
        )
        written.append(path)
    markdown, chart = run_step(
        write_report, written, config.paths.bench_results / "report", configured_report_prices(config)
    )
    print(markdown.read_text())
    print(f"chart: {chart}\nthe local server keeps running; stop it with `invoke down --target local`")


IMAGE_HELP = {
    "target": describe(cluster_targets(), lambda t: t.registry_summary),
    "image": "train, ovms or bench, comma-separated (default: all three)",
    "variant": "training image: gaudi (SynapseAI 1.14, TF 2.15) or cpu",
    "bake_model": "also build the OVMS image with <artifacts>/models baked in (EKS Anywhere without S3)",
    "dry_run": "print the docker commands, run nothing",
    "artifacts_dir": "root folder of all artifacts (default: artifacts)",
}


def _images(c, *, push, target, image, variant, bake_model, dry_run, artifacts_dir):
    from workloads.containers.workflow import build_images

    check_flags(cluster_target, target)
    config = load(c, artifacts_dir)
    names = tuple(n.strip() for n in image.split(",") if n.strip()) if image else ("train", "ovms", "bench")
    model_dir = config.paths.model_repository if bake_model else None
    run_step(
        build_images,
        config,
        target=target,
        names=names,
        variant=variant,
        model_dir=model_dir,
        push=push,
        dry_run=dry_run,
        repo_root=Path(__file__).resolve().parent,
    )


@task(name="build", default=True, help=IMAGE_HELP)
def images_build(
    c, target="aws", image=None, variant="gaudi", bake_model=False, dry_run=False, artifacts_dir=None
):
    """Build the container images (images/) with docker buildx into the local engine."""
    _images(
        c, push=False, target=target, image=image, variant=variant, bake_model=bake_model,
        dry_run=dry_run, artifacts_dir=artifacts_dir,
    )  # fmt: skip


@task(name="push", help=IMAGE_HELP)
def images_push(
    c, target="aws", image=None, variant="gaudi", bake_model=False, dry_run=False, artifacts_dir=None
):
    """Build and push the container images (every configured tag) to the target's registry."""
    _images(
        c, push=True, target=target, image=image, variant=variant, bake_model=bake_model,
        dry_run=dry_run, artifacts_dir=artifacts_dir,
    )  # fmt: skip


@task(
    name="render",
    default=True,
    help={
        "target": describe(cluster_targets(), lambda t: t.cluster_summary),
        "out": "folder for the manifests (default: <artifacts>/deploy/<target>/manifests)",
        "bucket": "S3 bucket holding the OVMS model repository (not needed for a baked model)",
        "prefix": f"key prefix of the model repository in the bucket (default: {MODEL_REPOSITORY_PREFIX})",
        "role_arn": "aws: IRSA role for the model sync (default: EKS Pod Identity association)",
        "endpoint_url": "vsphere: S3-compatible endpoint URL (default: AWS S3)",
        "baked_image": "vsphere with ovms.eksa_model_delivery=baked: the OVMS image with the model",
        "artifacts_dir": "root folder of all artifacts (default: artifacts)",
    },
)
def k8s_render(
    c,
    target="aws",
    out=None,
    bucket=None,
    prefix=MODEL_REPOSITORY_PREFIX,
    role_arn="",
    endpoint_url="",
    baked_image=None,
    artifacts_dir=None,
):
    """Render and validate the serving manifests offline (namespace, OVMS per pool, policies)."""
    from workloads.k8s.render import render_serving

    cluster = check_flags(cluster_target, target)
    config = load(c, artifacts_dir)
    out_dir = Path(out) if out else cluster.work_dir(config) / "manifests"
    models = ModelRequest(
        bucket=bucket or "",
        prefix=prefix,
        role_arn=role_arn,
        endpoint_url=endpoint_url,
        image=baked_image or "",
        bucket_flag="--bucket",
        image_flag="--baked-image",
    )
    source = run_step(cluster.require_model_source, config, models)
    for path in run_step(render_serving, config, target=target, model_source=source, out_dir=out_dir):
        print(path)


@task(
    name="show",
    default=True,
    help={"artifacts_dir": "root folder of all artifacts (default: artifacts)"},
)
def config_show(c, artifacts_dir=None):
    """Print the effective configuration (defaults < invoke.yaml < INVOKE_BMC_* environment < flags)."""
    import dataclasses
    import json

    print(json.dumps(dataclasses.asdict(load(c, artifacts_dir)), indent=2))


ns = Collection(pipeline, up, down)
ns.add_collection(Collection("data", data_prepare))
ns.add_collection(Collection("train", train_run))
ns.add_collection(Collection("optimize", optimize_run))
ns.add_collection(Collection("bench", bench_run, bench_report))
ns.add_collection(Collection("images", images_build, images_push))
ns.add_collection(Collection("k8s", k8s_render))
ns.add_collection(Collection("config", config_show))
ns.configure({"bmc": _as_strings(defaults_mapping())})
