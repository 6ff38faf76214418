"""Typed configuration of the ML pipeline, defined once.

Defaults live here. ``tasks.py`` hands Invoke's merged configuration (``invoke.yaml``,
``INVOKE_BMC_*`` environment variables, command-line flags) to :func:`load_config`, which
returns frozen dataclasses or raises :class:`ConfigError` with one line naming the bad key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from contracts.errors import ConfigError

DataSource = Literal["synthetic", "local", "kaggle"]
Backbone = Literal["mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_v2_b0", "resnet50"]
Device = Literal["auto", "cpu", "gpu", "hpu"]
# A served variant. bf16 is the FP32 IR executed in bf16 (AVX512_BF16 / AMX CPUs only); the others
# are IRs of their own, executed in f32 where not quantized (contracts.model_repository).
Precision = Literal["fp32", "fp16", "int8", "bf16"]
CacheMode = Literal["auto", "memory", "none"]
PerformanceHint = Literal["THROUGHPUT", "LATENCY"]
InputFormat = Literal["tensor", "jpeg"]
Protocol = Literal["rest", "grpc"]

MAX_DATA_WORKERS = 1024


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity on macOS / Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class DataConfig:
    source: DataSource = "synthetic"
    # Dataset root for source=local (the folder holding bone_marrow_cell_dataset/ or the class folders).
    path: str = ""
    kaggle_handle: str = "andrewmvd/bone-marrow-cell-classification"
    synthetic_images_per_class: int = 80
    synthetic_image_size: int = 250
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    # Threads that open and hash images while scanning (and processes that draw synthetic ones):
    # by default every core this process may use.
    workers: int = field(default_factory=available_cpus)

    def validate(self) -> None:
        _positive("data.synthetic_images_per_class", self.synthetic_images_per_class)
        _positive("data.synthetic_image_size", self.synthetic_image_size)
        if not 1 <= self.workers <= MAX_DATA_WORKERS:
            raise ConfigError(f"data.workers must be between 1 and {MAX_DATA_WORKERS}, got {self.workers}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ConfigError(f"data.{name} must be between 0 and 0.5, got {value}")
        if self.source == "local" and not self.path:
            raise ConfigError("data.path is required when data.source is 'local'")


@dataclass(frozen=True)
class TrainConfig:
    backbone: Backbone = "mobilenet_v3_large"
    # "imagenet", "none" (random init, offline), or a path to a Keras weights file.
    weights: str = "imagenet"
    image_size: int = 224
    batch_size: int = 32
    head_epochs: int = 3
    finetune_epochs: int = 3
    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    # Fraction of backbone layers (from the top) unfrozen in phase 2.
    finetune_fraction: float = 0.3
    label_smoothing: float = 0.0
    augment: bool = True
    class_weights: bool = True
    # "auto": cache decoded images in memory when they fit in a quarter of RAM.
    cache: CacheMode = "auto"
    device: Device = "auto"
    # 0 lets TensorFlow choose; on CPU nodes set intra = physical cores, inter = 1-2.
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    seed: int = 42
    # Multi-worker on one host under mpirun (the DL1's 8 Gaudi ranks): rank r listens on
    # 127.0.0.1:<worker_port + r>. An explicit TF_CONFIG names its own ports.
    worker_port: int = 12345

    def validate(self) -> None:
        if not 1024 <= self.worker_port <= 65535:
            raise ConfigError(f"train.worker_port must be a TCP port (1024-65535), got {self.worker_port}")
        for name in ("image_size", "batch_size"):
            _positive(f"train.{name}", getattr(self, name))
        if self.image_size < 32:
            raise ConfigError(f"train.image_size must be at least 32, got {self.image_size}")
        for name in ("head_epochs", "finetune_epochs", "intra_op_threads", "inter_op_threads"):
            _non_negative(f"train.{name}", getattr(self, name))
        if self.head_epochs + self.finetune_epochs == 0:
            raise ConfigError("train.head_epochs + train.finetune_epochs must be at least 1")
        for name in ("head_learning_rate", "finetune_learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.finetune_fraction <= 1.0:
            raise ConfigError(f"train.finetune_fraction must be in (0, 1], got {self.finetune_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.weights:
            raise ConfigError("train.weights must be 'imagenet', 'none' or a weights file path")


@dataclass(frozen=True)
class OptimizeConfig:
    model_name: str = "bone-marrow"
    precisions: tuple[Precision, ...] = ("fp32", "fp16", "int8")
    # The INT8 gate: INT8 vs FP32 on the test split, each drop in percentage points (README,
    # "The INT8 gate"). 0 means "no drop allowed", never "off". Overall accuracy: also the target
    # of NNCF's accuracy control on the val split.
    int8_max_accuracy_drop: float = 1.0
    # Mean recall over the classes present in the test split: every class weighs the same, so a
    # rare class that collapses shows (with 21 classes, a class going from >= 43% recall to 0
    # costs more than 2 points, however few its images).
    int8_max_balanced_accuracy_drop: float = 2.0
    # Clinically critical classes (default BLA, blasts): recall may drop at most this much,
    # whatever their number of test images; one with no test images fails the gate.
    int8_protected_classes: tuple[str, ...] = ("BLA",)
    int8_max_protected_recall_drop: float = 1.0
    # Every other class with at least int8_class_min_support test images: its recall may drop at
    # most int8_max_class_recall_drop. With >= 30 images one image moves recall <= 3.3 points,
    # so no single image decides; classes with fewer are reported, not judged.
    int8_max_class_recall_drop: float = 5.0
    int8_class_min_support: int = 30
    calibration_size: int = 300
    # When plain post-training quantization misses the budget on the validation split, let
    # NNCF keep the most sensitive operations in floating point until it is met. The only
    # switch that turns it off (a budget of 0 runs it with max_drop 0).
    int8_accuracy_control: bool = True
    accuracy_control_images: int = 300
    # TF vs OpenVINO FP32 parity on the same images: max |Δ probability| allowed.
    parity_tolerance: float = 1e-3
    parity_images: int = 32
    # Each published IR's speed on the build machine (f32-pinned, the local server's settings,
    # bench.batch_size): seconds per variant after a short warm-up; 0 skips it.
    speed_seconds: float = 3.0

    def validate(self) -> None:
        if not self.model_name or not all(c.isalnum() or c in "-_" for c in self.model_name):
            raise ConfigError(
                f"optimize.model_name must be letters, digits, '-' or '_', got {self.model_name!r}"
            )
        if "fp32" not in self.precisions:
            raise ConfigError("optimize.precisions must include 'fp32' (the reference for INT8 and parity)")
        if "bf16" in self.precisions:
            raise ConfigError(
                "optimize.precisions cannot list bf16: it is the fp32 IR executed in bf16, not an IR of "
                "its own; list it in serving.precisions or set bench.precision instead"
            )
        for name in (
            "int8_max_accuracy_drop",
            "int8_max_balanced_accuracy_drop",
            "int8_max_protected_recall_drop",
            "int8_max_class_recall_drop",
        ):
            if not getattr(self, name) >= 0:  # NaN too
                raise ConfigError(f"optimize.{name} must be >= 0, got {getattr(self, name)}")
        _positive("optimize.int8_class_min_support", self.int8_class_min_support)
        for code in self.int8_protected_classes:
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise ConfigError(
                    f"optimize.int8_protected_classes: {code!r} is not a class code (3 capitals, e.g. BLA)"
                )
        twice = sorted({c for c in self.int8_protected_classes if self.int8_protected_classes.count(c) > 1})
        if twice:
            raise ConfigError(f"optimize.int8_protected_classes lists {', '.join(twice)} more than once")
        _positive("optimize.calibration_size", self.calibration_size)
        _positive("optimize.accuracy_control_images", self.accuracy_control_images)
        _positive("optimize.parity_images", self.parity_images)
        if not self.parity_tolerance > 0:
            raise ConfigError(f"optimize.parity_tolerance must be > 0, got {self.parity_tolerance}")
        if not 0 <= self.speed_seconds <= 60:
            raise ConfigError(
                f"optimize.speed_seconds must be in [0, 60] (0 skips it), got {self.speed_seconds}"
            )


@dataclass(frozen=True)
class ServingConfig:
    """The local model server (`invoke up --target local`); settings named as OVMS names them."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    # Served model precisions; each is <optimize.model_name>-<precision>, latest version.
    precisions: tuple[Precision, ...] = ("fp32", "int8")
    performance_hint: PerformanceHint = "THROUGHPUT"
    # 0 = let OpenVINO derive them from the hint.
    num_streams: int = 0
    inference_threads: int = 0
    nireq: int = 0
    start_timeout_seconds: float = 120.0
    # Hostile-input limits (REST and gRPC). A request body above max_request_bytes is refused (413 /
    # RESOURCE_EXHAUSTED) before it is read; 64 MiB holds a batch of ~110 FP32 images at 224 px.
    max_request_bytes: int = 64 * 1024 * 1024
    max_batch_size: int = 256
    # Decoded pixels of one BYTES image and of all images of one request, checked on the image
    # header before anything is decoded (16 Mpx = 4096 × 4096).
    max_image_pixels: int = 16 * 1024 * 1024
    max_request_pixels: int = 64 * 1024 * 1024
    # REST: time for a request's headers (from the connection or its first byte), for its body (after
    # the headers), and idle time between requests on a kept-alive connection.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 65.0

    def validate(self) -> None:
        for name in ("max_request_bytes", "max_batch_size", "max_image_pixels", "max_request_pixels"):
            _positive(f"serving.{name}", getattr(self, name))
        if self.max_request_pixels < self.max_image_pixels:
            raise ConfigError(
                f"serving.max_request_pixels ({self.max_request_pixels}) must be >= "
                f"serving.max_image_pixels ({self.max_image_pixels})"
            )
        if self.max_request_bytes > 2**31 - 1:
            raise ConfigError(
                f"serving.max_request_bytes must be < 2 GiB (gRPC's limit), got {self.max_request_bytes}"
            )
        for name in ("header_timeout_seconds", "body_timeout_seconds", "keep_alive_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"serving.{name} must be > 0, got {getattr(self, name)}")
        for name in ("http_port", "grpc_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ConfigError(f"serving.{name} must be a TCP port (1-65535), got {port}")
        if self.http_port == self.grpc_port:
            raise ConfigError("serving.http_port and serving.grpc_port must differ")
        if not self.precisions:
            raise ConfigError("serving.precisions must name at least one precision")
        for name in ("num_streams", "inference_threads", "nireq"):
            _non_negative(f"serving.{name}", getattr(self, name))
        if not self.start_timeout_seconds > 0:
            raise ConfigError(f"serving.start_timeout_seconds must be > 0, got {self.start_timeout_seconds}")


@dataclass(frozen=True)
class PriceTable:
    """Dated on-demand $/hour per instance type: the report's cost per million images.

    `invoke bench.report --live-prices` asks the AWS Pricing API instead (with credentials).
    """

    # When the prices were read and for which region (on-demand, Linux, shared tenancy).
    as_of: str = "2026-12-01"
    region: str = "us-east-1"
    usd_per_hour: dict[str, float] = field(
        default_factory=lambda: {"c5.large": 0.085, "c6i.large": 0.085, "c7i.large": 0.08925}
    )

    def validate(self) -> None:
        try:
            date.fromisoformat(self.as_of)
        except ValueError:
            raise ConfigError(f"bench.prices.as_of must be a date (YYYY-MM-DD), got {self.as_of!r}") from None
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            raise ConfigError(
                f"bench.prices.region must be an AWS region (e.g. us-east-1), got {self.region!r}"
            )
        for key, value in self.usd_per_hour.items():
            if value < 0:
                raise ConfigError(f"bench.prices.usd_per_hour.{key} must be >= 0, got {value}")


@dataclass(frozen=True)
class BenchConfig:
    """`invoke bench`: MLPerf-style Offline (batch) and SingleStream (real-time) scenarios."""

    precision: Precision = "int8"
    protocol: Protocol = "grpc"
    input_format: InputFormat = "tensor"
    batch_size: int = 16
    # Requests in flight: twice the streams of a 2-vCPU node, so every stream stays busy while
    # answers travel (MLPerf Offline keeps the system under test saturated).
    concurrency: int = 4
    warmup_seconds: float = 2.0
    min_duration_seconds: float = 5.0
    min_requests: int = 50
    repetitions: int = 3
    # The reference paper's real-time figure: mean latency over this many single images.
    paper_images: int = 10
    known_answer_images: int = 8
    request_timeout_seconds: float = 30.0
    # Load modes (sweep, rate, max-rate; workloads.bench.load_modes): each point is measured in
    # windows of window_seconds (and min_requests) until the last stable_windows agree within
    # ±stability_percent % (throughput and mean latency), at most max_windows (else stable: false).
    window_seconds: float = 2.0
    stability_percent: float = 10.0
    stable_windows: int = 3
    max_windows: int = 10
    # sweep: closed loop of batch_size requests at each concurrency (the throughput–latency curve).
    sweep_concurrency: tuple[int, ...] = (1, 2, 4, 8)
    # rate / max-rate: open loop of rate_batch_size-image requests, arrivals poisson or constant,
    # at most max_in_flight outstanding; arrival_seed makes the schedule repeatable.
    request_rates: tuple[float, ...] = (10.0, 20.0, 40.0)
    request_distribution: Literal["poisson", "constant"] = "poisson"
    rate_batch_size: int = 1
    max_in_flight: int = 16
    arrival_seed: int = 0
    # max-rate: the highest request rate whose p99 stays within p99_bound_ms (≥ 95 % achieved),
    # searched from rate_search_start (requests/s) in at most rate_search_steps rates.
    p99_bound_ms: float = 50.0
    rate_search_start: float = 10.0
    rate_search_steps: int = 10
    # Your own $/hour per pool or target (e.g. {"vsphere": 0.40} for amortised on-prem hosts); wins
    # over `prices`, which price a pool by its instance type.
    usd_per_hour: dict[str, float] = field(default_factory=dict)
    prices: PriceTable = field(default_factory=PriceTable)

    def validate(self) -> None:
        for name in ("batch_size", "concurrency", "min_requests", "repetitions", "paper_images"):
            _positive(f"bench.{name}", getattr(self, name))
        self._validate_load_modes()
        _non_negative("bench.known_answer_images", self.known_answer_images)
        if self.repetitions < 3:
            raise ConfigError(
                f"bench.repetitions must be at least 3 (median and range), got {self.repetitions}"
            )
        for name in ("warmup_seconds", "min_duration_seconds", "request_timeout_seconds"):
            if getattr(self, name) < 0 or (name != "warmup_seconds" and getattr(self, name) == 0):
                raise ConfigError(f"bench.{name} must be > 0, got {getattr(self, name)}")
        for key, value in self.usd_per_hour.items():
            if value < 0:
                raise ConfigError(f"bench.usd_per_hour.{key} must be >= 0, got {value}")
        self.prices.validate()

    def _validate_load_modes(self) -> None:
        counts = ("stable_windows", "max_windows", "rate_batch_size", "max_in_flight", "rate_search_steps")
        for name in counts:
            _positive(f"bench.{name}", getattr(self, name))
        for name in ("window_seconds", "stability_percent", "p99_bound_ms", "rate_search_start"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"bench.{name} must be > 0, got {getattr(self, name)}")
        if self.max_windows < self.stable_windows:
            raise ConfigError(
                f"bench.max_windows must be >= bench.stable_windows ({self.stable_windows}), "
                f"got {self.max_windows}"
            )
        for name in ("sweep_concurrency", "request_rates"):
            levels = getattr(self, name)
            if not levels or any(level <= 0 for level in levels):
                raise ConfigError(f"bench.{name} must list values > 0, got {list(levels)}")


@dataclass(frozen=True)
class NodePoolConfig:
    """One pool of Kubernetes worker nodes that serves the model; its labels are defined once here."""

    instance_type: str
    # What the comparison is about: the CPU generation (cascadelake, icelake, …).
    cpu_generation: str
    min_size: int = 1
    desired_size: int = 1
    max_size: int = 2

    def validate(self, key: str) -> None:
        if not self.instance_type or not self.cpu_generation.isalnum():
            raise ConfigError(f"{key} needs an instance_type and an alphanumeric cpu_generation")
        _non_negative(f"{key}.min_size", self.min_size)
        if not self.min_size <= self.desired_size <= self.max_size or self.max_size == 0:
            raise ConfigError(
                f"{key} sizes must satisfy min <= desired <= max and max > 0, "
                f"got {self.min_size}/{self.desired_size}/{self.max_size}"
            )


# The load-generator node pool's name: a reserved key, never one of aws.pools / vsphere.pools.
BENCH_POOL = "bench"


@dataclass(frozen=True)
class NodeTaint:
    """A node taint as Kubernetes spells it; CDK, EKS Anywhere and the Job's toleration read this one."""

    key: str
    value: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True)
class Resources:
    """CPU (millicores) and memory (MiB): what a node offers pods, or what pods request of it."""

    cpu_millicores: int = 0
    memory_mib: int = 0

    def validate(self, key: str) -> None:
        _non_negative(f"{key}.cpu_millicores", self.cpu_millicores)
        _non_negative(f"{key}.memory_mib", self.memory_mib)


def eks_kube_reserved_cpu(vcpus: int) -> int:
    """EKS's kube-reserved CPU (millicores): 6% of the first core, 1% of the second, 0.5% of cores
    3-4 and 0.25% of every core above."""
    tiers = ((1, 60.0), (1, 10.0), (2, 5.0))
    reserved, left = 0.0, vcpus
    for cores, per_core in tiers:
        reserved += min(left, cores) * per_core
        left = max(0, left - cores)
    return round(reserved + left * 2.5)


def eks_node_allocatable(vcpus: int, memory_mib: int, max_pods: int) -> Resources:
    """kubelet's allocatable on an EKS AL2023 node (nodeadm's reserves).

    memory: the instance's memory less 7.5% that the kernel and firmware keep (Karpenter's VM
    memory overhead), minus kube-reserved (255 MiB + 11 MiB × max pods) and the 100 MiB
    hard-eviction threshold.
    """
    return Resources(
        cpu_millicores=vcpus * 1000 - eks_kube_reserved_cpu(vcpus),
        memory_mib=int(memory_mib * 0.925) - (255 + 11 * max_pods) - 100,
    )


def _eks_node_allocatable() -> dict[str, Resources]:
    # instance type: vCPUs, memory MiB, max pods (ENIs × (IPv4 per ENI - 1) + 2, EC2's ENI table)
    table = {
        "c5.large": (2, 4096, 29),
        "c5.xlarge": (4, 8192, 58),
        "c6i.large": (2, 4096, 29),
        "c6i.xlarge": (4, 8192, 58),
        "c7i.large": (2, 4096, 29),
    }
    return {name: eks_node_allocatable(*sizes) for name, sizes in table.items()}


@dataclass(frozen=True)
class CpuGeneration:
    """What an Intel Xeon generation executes natively; decides which precisions a pool serves."""

    # AVX512_BF16 or AMX-BF16: OpenVINO runs bf16 natively (and defaults to it unless pinned to f32).
    bf16: bool = False
    # Advanced Matrix Extensions (AMX-BF16 and AMX-INT8 tiles): Sapphire Rapids onwards.
    amx: bool = False

    def validate(self, key: str) -> None:
        if self.amx and not self.bf16:
            raise ConfigError(f"{key}: amx implies bf16 (AMX-BF16); set bf16: true")


def _cpu_generations() -> dict[str, CpuGeneration]:
    # Intel's ISA tables: Cooper Lake added AVX512_BF16 without AMX; Sapphire Rapids added AMX.
    return {
        "skylake": CpuGeneration(),
        "cascadelake": CpuGeneration(),
        "cooperlake": CpuGeneration(bf16=True),
        "icelake": CpuGeneration(),
        "sapphirerapids": CpuGeneration(bf16=True, amx=True),
        "emeraldrapids": CpuGeneration(bf16=True, amx=True),
    }


@dataclass(frozen=True)
class KubernetesConfig:
    """What every cluster (EKS and EKS Anywhere) shares: version, namespace, node labels."""

    # In EKS standard support (1.31 leaves extended support in late 2026); EKS Anywhere ships it too.
    version: str = "1.34"
    namespace: str = "bone-marrow"
    # Label keys are <label_domain>/pool and <label_domain>/cpu-generation (see pool_labels).
    label_domain: str = "bone-marrow.ml"
    # Service account (in `namespace`) whose pods sync the model repository from S3 on EKS.
    model_sync_service_account: str = "ovms-model-sync"
    # Service account (in `namespace`) the in-cluster bench Job runs under: on EKS its Pod Identity
    # role may only write the results bucket's bench-results/ prefix (model sync stays read-only).
    bench_service_account: str = "bench-results"
    # The bench Job's Guaranteed requests (whole CPUs): they fit the bench pool's node beside its
    # daemonsets (aws.bench_pool c6i.xlarge; vsphere.bench_machine), never the server's node.
    bench_job_cpus: int = 3
    bench_job_memory_mib: int = 4096
    # Allocatable of one EKS node per instance type (aws.pools / aws.bench_pool); capacity checks
    # read it. vSphere pools derive theirs from vsphere.worker_machine / bench_machine.
    node_allocatable: dict[str, Resources] = field(default_factory=_eks_node_allocatable)
    # Native capabilities per pools' cpu_generation: a pool whose generation has bf16 serves the
    # bf16 variant of the FP32 IR beside FP32 and INT8. A generation not listed counts as none.
    cpu_generations: dict[str, CpuGeneration] = field(default_factory=_cpu_generations)
    # What kube-system pods request of every node, per cluster kind. CoreDNS is a Deployment of
    # 2 replicas that may both land on any node: counted twice on each (100m / 70Mi each).
    eks_system_pods: dict[str, Resources] = field(
        default_factory=lambda: {
            "aws-node": Resources(cpu_millicores=50),  # aws-node 25m + network policy agent 25m
            "kube-proxy": Resources(cpu_millicores=100),
            "eks-pod-identity-agent": Resources(),  # its add-on sets no requests
            "coredns": Resources(cpu_millicores=200, memory_mib=140),
        }
    )
    eksa_system_pods: dict[str, Resources] = field(
        default_factory=lambda: {
            "cilium": Resources(cpu_millicores=100, memory_mib=128),
            "kube-proxy": Resources(cpu_millicores=100),
            "coredns": Resources(cpu_millicores=200, memory_mib=140),
        }
    )
    # Namespace whose pods (Prometheus) may scrape OVMS's /metrics; "" = no scrape NetworkPolicy.
    monitoring_namespace: str = "monitoring"

    def validate(self) -> None:
        for table in ("node_allocatable", "eks_system_pods", "eksa_system_pods"):
            for name, amount in getattr(self, table).items():
                amount.validate(f"kubernetes.{table}.{name}")
        for name, generation in self.cpu_generations.items():
            generation.validate(f"kubernetes.cpu_generations.{name}")
        if self.monitoring_namespace and not _is_dns_label(self.monitoring_namespace):
            raise ConfigError(
                "kubernetes.monitoring_namespace must be a DNS label or empty, "
                f"got {self.monitoring_namespace!r}"
            )
        parts = self.version.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"kubernetes.version must look like 1.34, got {self.version!r}")
        if not _is_dns_label(self.namespace):
            raise ConfigError(f"kubernetes.namespace must be a DNS label, got {self.namespace!r}")
        if not all(_is_dns_label(p) for p in self.label_domain.split(".")):
            raise ConfigError(f"kubernetes.label_domain must be a DNS name, got {self.label_domain!r}")
        for key in ("model_sync_service_account", "bench_service_account"):
            if not _is_dns_label(getattr(self, key)):
                raise ConfigError(f"kubernetes.{key} must be a DNS label, got {getattr(self, key)!r}")
        if self.bench_service_account == self.model_sync_service_account:
            raise ConfigError("kubernetes.bench_service_account must differ from model_sync_service_account")
        _positive("kubernetes.bench_job_cpus", self.bench_job_cpus)
        if self.bench_job_memory_mib < 512:
            raise ConfigError(
                f"kubernetes.bench_job_memory_mib must be >= 512, got {self.bench_job_memory_mib}"
            )

    def supports_bf16(self, generation: str) -> bool:
        """Whether nodes of this cpu_generation execute bf16 natively (unknown generations: no)."""
        return self.cpu_generations.get(generation, CpuGeneration()).bf16

    def pool_labels(self, pool: str, node_pool: NodePoolConfig) -> dict[str, str]:
        """The node labels of a pool: set on the nodes (CDK, EKS-A) and selected by the manifests."""
        return {
            f"{self.label_domain}/pool": pool,
            f"{self.label_domain}/cpu-generation": node_pool.cpu_generation,
        }

    def bench_pool_labels(self, node_pool: NodePoolConfig) -> dict[str, str]:
        """The labels of the load-generator pool (aws/vsphere.bench_pool), which the bench Job selects."""
        return self.pool_labels(BENCH_POOL, node_pool)

    def bench_taint(self) -> NodeTaint:
        """The load-generator pool's taint: only the bench Job tolerates it; OVMS never lands there."""
        return NodeTaint(key=f"{self.label_domain}/dedicated", value=BENCH_POOL, effect="NoSchedule")


# The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653)


def _is_ipv4_cidr(value: str) -> bool:
    try:
        return ipaddress.ip_network(value, strict=True).version == 4
    except ValueError:
        return False


# An AWS region name: us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, us-isob-east-1.
# Whether it exists is checked at deploy time against botocore's partition data.
AWS_REGION_PATTERN = r"[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}"
# The widest public-endpoint allow list accepted: each block at most a /16 (an organisation's range,
# 65,536 addresses), all of them together at most 2**20 addresses. Anything wider is as good as
# opening the Kubernetes API to the internet.
ENDPOINT_CIDR_MIN_PREFIX = 16
ENDPOINT_CIDRS_MAX_ADDRESSES = 2**20
# Sources the public endpoint never sees (EKS refuses them in publicAccessCidrs): private, shared,
# loopback, link-local, "this network", multicast and reserved space.
NON_PUBLIC_IPV4 = tuple(
    ipaddress.IPv4Network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/3",
    )
)


def _check_endpoint_cidrs(key: str, cidrs: tuple[str, ...]) -> None:
    networks = []
    for cidr in cidrs:
        if not _is_ipv4_cidr(cidr):
            raise ConfigError(f"{key}: {cidr!r} is not a restricted IPv4 CIDR (a.b.c.d/n, host bits zero)")
        network = ipaddress.IPv4Network(cidr)
        if network.prefixlen < ENDPOINT_CIDR_MIN_PREFIX:
            raise ConfigError(
                f"{key}: {cidr!r} is not a restricted IPv4 CIDR: it opens the Kubernetes API to "
                f"{network.num_addresses:,} addresses (the widest accepted is a /{ENDPOINT_CIDR_MIN_PREFIX})"
            )
        if any(network.overlaps(reserved) for reserved in NON_PUBLIC_IPV4):
            raise ConfigError(
                f"{key}: {cidr!r} is not a public address range (the public endpoint only ever sees "
                "public source addresses; inside the VPC the private endpoint is used)"
            )
        networks.append(network)
    total = sum(n.num_addresses for n in ipaddress.collapse_addresses(networks))
    if total > ENDPOINT_CIDRS_MAX_ADDRESSES:
        raise ConfigError(
            f"{key} together cover {total:,} addresses (at most {ENDPOINT_CIDRS_MAX_ADDRESSES:,}): "
            "list the ranges you deploy and benchmark from"
        )


# An EKS add-on version as DescribeAddonVersions names it: v1.20.4-eksbuild.1.
EKS_ADDON_VERSION_PATTERN = r"v\d+\.\d+\.\d+-eksbuild\.\d+"
# A key prefix without leading or trailing '/': bench-artifacts, team/bench.
S3_PREFIX_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*"


@dataclass(frozen=True)
class EksAddons:
    """Versions of the EKS managed add-ons the cluster runs, pinned (defaults: for kubernetes.version 1.34).

    `aws eks describe-addon-versions --kubernetes-version 1.34 --addon-name vpc-cni` lists the
    valid ones; kube_proxy must be of the cluster's own minor version.
    """

    vpc_cni: str = "v1.20.4-eksbuild.1"
    kube_proxy: str = "v1.34.1-eksbuild.2"
    coredns: str = "v1.12.4-eksbuild.1"
    pod_identity_agent: str = "v1.3.10-eksbuild.2"

    def validate(self, key: str) -> None:
        for name in ("vpc_cni", "kube_proxy", "coredns", "pod_identity_agent"):
            if not re.fullmatch(EKS_ADDON_VERSION_PATTERN, getattr(self, name)):
                raise ConfigError(
                    f"{key}.{name} must be an EKS add-on version like v1.20.4-eksbuild.1, "
                    f"got {getattr(self, name)!r}"
                )

    def check_kubernetes_version(self, key: str, kubernetes_version: str) -> None:
        """Checked where the EKS cluster is built (the vSphere side shares kubernetes.version)."""
        if not self.kube_proxy.startswith(f"v{kubernetes_version}."):
            raise ConfigError(
                f"{key}.kube_proxy {self.kube_proxy!r} is not for kubernetes.version {kubernetes_version} "
                f"(pin the add-on versions of that version: aws eks describe-addon-versions "
                f"--kubernetes-version {kubernetes_version})"
            )


@dataclass(frozen=True)
class AwsConfig:
    """The EKS side: region, node groups on c5 (Cascade Lake), c6i (Ice Lake) and c7i (Sapphire
    Rapids, AMX), DL1 training."""

    region: str = "us-east-1"
    # Explicit zones (no synth-time lookup); dl1.24xlarge is offered in these.
    availability_zones: tuple[str, ...] = ("us-east-1a", "us-east-1b")
    # Name prefix of stacks, cluster, buckets and repositories.
    resource_prefix: str = "bone-marrow"
    pools: dict[str, NodePoolConfig] = field(
        default_factory=lambda: {
            "c5": NodePoolConfig(instance_type="c5.large", cpu_generation="cascadelake"),
            "c6i": NodePoolConfig(instance_type="c6i.large", cpu_generation="icelake"),
            "c7i": NodePoolConfig(instance_type="c7i.large", cpu_generation="sapphirerapids"),
        }
    )
    # Where the in-cluster bench's load generator runs (labelled and tainted: OVMS never lands
    # there, so client CPU is never taken from the server under test). Zero nodes except while
    # `invoke bench --in-cluster` runs: it scales the node group up and back to min_size.
    bench_pool: NodePoolConfig = field(
        default_factory=lambda: NodePoolConfig(
            instance_type="c6i.xlarge", cpu_generation="icelake", min_size=0, desired_size=0, max_size=1
        )
    )
    vpc_cidr: str = "10.40.0.0/16"
    # One NAT gateway is enough for pulls and S3-bound traffic; raise it for zone-level redundancy.
    nat_gateways: int = 1
    # Who may reach the public endpoint (endpoint_access public-and-private); empty: the address of
    # the machine running `invoke up` (/32). Each block a public /16 or narrower.
    endpoint_public_cidrs: tuple[str, ...] = ()
    # IAM role/user ARNs given cluster admin; empty: `invoke up` uses the deploying principal.
    cluster_admin_arns: tuple[str, ...] = ()
    # public-and-private: the Kubernetes API is also public, but only to the CIDRs `invoke up` passes
    # in the cluster stack's EndpointPublicCidrs parameter (the caller's address, or
    # endpoint_public_cidrs); private: reachable only inside the VPC (no parameter).
    endpoint_access: Literal["public-and-private", "private"] = "public-and-private"
    # The cluster's upgrade policy: STANDARD is upgraded automatically when standard support ends,
    # so extended-support pricing never starts silently; EXTENDED opts in to it.
    cluster_support_type: Literal["STANDARD", "EXTENDED"] = "STANDARD"
    addons: EksAddons = field(default_factory=EksAddons)
    # Prefix of the models bucket the in-cluster bench reads its artifacts tree (models/, data/)
    # from; its results go to the results bucket's bench-results/ (contracts.aws_names).
    bench_artifacts_prefix: str = "bench-artifacts"
    # `invoke up` runs where the private endpoint is reachable (inside the VPC, or over a VPN or
    # Direct Connect into it): the reachability check before deploying is then skipped.
    deploy_from_vpc: bool = False
    dl1_instance_type: str = "dl1.24xlarge"
    # Habana Deep Learning AMI per region, pinned. Unpinned, `invoke up` uses the one it recorded for
    # the region in <artifacts>/deploy/aws/habana-ami.json, else finds the newest (and records it).
    habana_ami_ids: dict[str, str] = field(default_factory=dict)
    # Root volume of the DL1 instance: dataset, images and checkpoints.
    dl1_volume_gib: int = 500
    # The DL1 instance is stopped after this many minutes below dl1_idle_cpu_percent.
    dl1_idle_minutes: int = 60
    dl1_idle_cpu_percent: float = 5.0
    budget_monthly_usd: float = 1000.0
    # Where the budget alert goes; required by `invoke up --target aws`.
    budget_email: str = ""
    # CloudWatch retention of the VPC flow logs and the EKS control-plane logs.
    log_retention_days: int = 90

    def validate(self) -> None:
        if not re.fullmatch(AWS_REGION_PATTERN, self.region):
            raise ConfigError(f"aws.region must be an AWS region name like us-east-1, got {self.region!r}")
        if len(self.availability_zones) < 2:
            raise ConfigError("aws.availability_zones must list at least two zones (EKS needs two)")
        for zone in self.availability_zones:
            if not zone.startswith(self.region) or not zone[len(self.region) :].isalpha():
                raise ConfigError(f"aws.availability_zones: {zone!r} is not a zone of region {self.region!r}")
        if not _is_ipv4_cidr(self.vpc_cidr):
            raise ConfigError(f"aws.vpc_cidr must be an IPv4 CIDR, got {self.vpc_cidr!r}")
        if not 1 <= self.nat_gateways <= len(self.availability_zones):
            raise ConfigError(
                f"aws.nat_gateways must be between 1 and the number of zones, got {self.nat_gateways}"
            )
        _check_endpoint_cidrs("aws.endpoint_public_cidrs", self.endpoint_public_cidrs)
        for arn in self.cluster_admin_arns:
            if not re.fullmatch(r"arn:aws[-a-z]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+", arn):
                raise ConfigError(f"aws.cluster_admin_arns: {arn!r} is not an IAM role or user ARN")
        if not re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+", self.dl1_instance_type):
            raise ConfigError(
                f"aws.dl1_instance_type must look like dl1.24xlarge, got {self.dl1_instance_type!r}"
            )
        for region, ami in self.habana_ami_ids.items():
            if not re.fullmatch(AWS_REGION_PATTERN, region):
                raise ConfigError(f"aws.habana_ami_ids: {region!r} is not an AWS region name")
            if not re.fullmatch(r"ami-[0-9a-f]{8,17}", ami):
                raise ConfigError(f"aws.habana_ami_ids.{region} must be an AMI id (ami-…), got {ami!r}")
        if not 8 <= self.dl1_volume_gib <= 16384:
            raise ConfigError(f"aws.dl1_volume_gib must be between 8 and 16384, got {self.dl1_volume_gib}")
        if not 5 <= self.dl1_idle_minutes <= 1440:
            raise ConfigError(f"aws.dl1_idle_minutes must be between 5 and 1440, got {self.dl1_idle_minutes}")
        if not 0.0 < self.dl1_idle_cpu_percent < 100.0:
            raise ConfigError(
                f"aws.dl1_idle_cpu_percent must be between 0 and 100, got {self.dl1_idle_cpu_percent}"
            )
        if self.budget_monthly_usd <= 0:
            raise ConfigError(f"aws.budget_monthly_usd must be > 0, got {self.budget_monthly_usd}")
        if self.budget_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.budget_email):
            raise ConfigError(f"aws.budget_email is not an e-mail address: {self.budget_email!r}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"aws.log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}; "
                f"got {self.log_retention_days}"
            )
        if not _is_dns_label(self.resource_prefix):
            raise ConfigError(f"aws.resource_prefix must be a DNS label, got {self.resource_prefix!r}")
        _validate_pools("aws", self.pools, self.bench_pool)
        self.addons.validate("aws.addons")
        if not re.fullmatch(S3_PREFIX_PATTERN, self.bench_artifacts_prefix):
            raise ConfigError(
                "aws.bench_artifacts_prefix must be an S3 key prefix like bench-artifacts, "
                f"got {self.bench_artifacts_prefix!r}"
            )


@dataclass(frozen=True)
class VsphereMachineSize:
    """The size of one EKS Anywhere machine role (a VSphereMachineConfig)."""

    cpus: int = 2
    memory_mib: int = 8192
    disk_gib: int = 25

    def validate(self, key: str) -> None:
        if not 1 <= self.cpus <= 768 or self.memory_mib < 2048 or self.disk_gib < 20:
            raise ConfigError(
                f"{key} needs 1-768 cpus, memory_mib >= 2048 and disk_gib >= 20, "
                f"got {self.cpus}/{self.memory_mib}/{self.disk_gib}"
            )


@dataclass(frozen=True)
class VsphereConfig:
    """The on-prem side: EKS Anywhere on vSphere with an Ice Lake worker group.

    Inventory settings are full paths (/DC/network/VM Network) or names under the datacenter's
    folder of that kind (network, datastore, vm for folder and template, host for resource_pool).
    """

    cluster_name: str = "bone-marrow-onprem"
    pools: dict[str, NodePoolConfig] = field(
        default_factory=lambda: {
            "icelake": NodePoolConfig(instance_type="vsphere-vm", cpu_generation="icelake", desired_size=2),
        }
    )
    # The load generator's worker group (see aws.bench_pool); its machines are bench_machine.
    bench_pool: NodePoolConfig = field(
        default_factory=lambda: NodePoolConfig(
            instance_type="vsphere-vm", cpu_generation="icelake", min_size=0, desired_size=0, max_size=1
        )
    )
    # vCenter host[:port]; credentials come only from EKSA_VSPHERE_USERNAME / EKSA_VSPHERE_PASSWORD.
    server: str = ""
    # SHA-1 fingerprint of the vCenter certificate (colons and case ignored), pinned on every connection.
    thumbprint: str = ""
    # Skip certificate checks entirely (lab only); eksctl then gets insecure: true too.
    insecure: bool = False
    datacenter: str = ""
    network: str = ""
    datastore: str = ""
    folder: str = ""
    resource_pool: str = ""
    template: str = ""
    os_family: Literal["bottlerocket", "ubuntu", "redhat"] = "bottlerocket"
    # Kubernetes version -> EKS-D release the template is tagged with (eksdRelease:<release>); a
    # version without an entry accepts any kubernetes-<major>-<minor>-eks-N tag on the template.
    eksd_releases: dict[str, str] = field(default_factory=dict)
    # A free static IP outside the pod and service CIDRs, on the network of the nodes.
    control_plane_endpoint: str = ""
    control_plane_count: int = 3
    # 0 = etcd stacked on the control plane nodes.
    etcd_count: int = 3
    pod_cidr: str = "192.168.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    # "" = eksctl generates a key pair.
    ssh_authorized_key: str = ""
    control_plane_machine: VsphereMachineSize = field(default_factory=VsphereMachineSize)
    etcd_machine: VsphereMachineSize = field(default_factory=VsphereMachineSize)
    worker_machine: VsphereMachineSize = field(
        default_factory=lambda: VsphereMachineSize(cpus=8, memory_mib=16384, disk_gib=50)
    )
    bench_machine: VsphereMachineSize = field(
        default_factory=lambda: VsphereMachineSize(cpus=4, memory_mib=8192, disk_gib=25)
    )
    # s3://bucket/prefix the in-cluster bench uploads its results under (`--results-s3` overrides).
    bench_results_s3: str = ""
    # What a worker VM keeps from pods: kube-reserved and eviction (Bottlerocket's defaults for
    # 110 max pods: ~90m, 255 MiB + 11 MiB × 110, 100 MiB) plus the guest kernel's share of memory.
    node_reserved: Resources = field(default_factory=lambda: Resources(cpu_millicores=100, memory_mib=2048))

    def validate(self) -> None:
        _validate_pools("vsphere", self.pools, self.bench_pool)
        if "/" in self.server or " " in self.server:
            raise ConfigError(
                f"vsphere.server must be host or host:port (no scheme/path), got {self.server!r}"
            )
        if self.thumbprint and not re.fullmatch(r"[0-9a-fA-F]{40}", self.thumbprint.replace(":", "")):
            raise ConfigError(
                f"vsphere.thumbprint must be a SHA-1 fingerprint (40 hex digits), got {self.thumbprint!r}"
            )
        if self.control_plane_endpoint:
            try:
                ipaddress.IPv4Address(self.control_plane_endpoint)
            except ValueError:
                raise ConfigError(
                    "vsphere.control_plane_endpoint must be an IPv4 address, "
                    f"got {self.control_plane_endpoint!r}"
                ) from None
        for name in ("pod_cidr", "service_cidr"):
            if not _is_ipv4_cidr(getattr(self, name)):
                raise ConfigError(f"vsphere.{name} must be an IPv4 CIDR, got {getattr(self, name)!r}")
        if self.control_plane_count < 1 or self.etcd_count < 0:
            raise ConfigError("vsphere.control_plane_count must be >= 1 and vsphere.etcd_count >= 0")
        for version, release in self.eksd_releases.items():
            if not re.fullmatch(r"kubernetes-\d+-\d+-eks-\d+", release):
                raise ConfigError(
                    f"vsphere.eksd_releases.{version} must look like kubernetes-1-34-eks-8, got {release!r}"
                )
        for role in ("control_plane_machine", "etcd_machine", "worker_machine", "bench_machine"):
            getattr(self, role).validate(f"vsphere.{role}")
        if self.bench_results_s3 and not re.fullmatch(
            r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?", self.bench_results_s3
        ):
            raise ConfigError(
                f"vsphere.bench_results_s3 must look like s3://bucket/prefix, got {self.bench_results_s3!r}"
            )
        self.node_reserved.validate("vsphere.node_reserved")
        for role in ("worker_machine", "bench_machine"):
            machine = getattr(self, role)
            if (
                self.node_reserved.cpu_millicores >= machine.cpus * 1000
                or self.node_reserved.memory_mib >= machine.memory_mib
            ):
                raise ConfigError(f"vsphere.node_reserved must leave room on vsphere.{role}")


OvmsUse = Literal["batch", "realtime"]
EksaModelDelivery = Literal["secret-sync", "baked"]
OvmsLogLevel = Literal["INFO", "WARNING", "ERROR"]


@dataclass(frozen=True)
class OvmsTuning:
    """OpenVINO settings of one use, named as OVMS names them (0 = derived from the hint)."""

    performance_hint: PerformanceHint
    num_streams: int = 0
    inference_threads: int = 0
    nireq: int = 0

    def validate(self, key: str) -> None:
        for name in ("num_streams", "inference_threads", "nireq"):
            _non_negative(f"{key}.{name}", getattr(self, name))


@dataclass(frozen=True)
class OvmsConfig:
    """OpenVINO Model Server on Kubernetes (EKS and EKS Anywhere): one Deployment per node pool."""

    # Which tuning the Deployments serve with: batch (THROUGHPUT) or realtime (LATENCY).
    use: OvmsUse = "batch"
    batch: OvmsTuning = field(default_factory=lambda: OvmsTuning(performance_hint="THROUGHPUT"))
    realtime: OvmsTuning = field(default_factory=lambda: OvmsTuning(performance_hint="LATENCY", nireq=1))
    # The OVMS release whose OpenVINO runtime matches the one that writes the IR (openvino==2026.4.1).
    image: str = "openvino/model_server:2026.4.1"
    # The init container that syncs the models bucket into the pod (pod identity / IRSA / Secret).
    sync_image: str = "public.ecr.aws/aws-cli/aws-cli:2.27.50"
    grpc_port: int = 9000
    rest_port: int = 8000
    # Whole CPUs, requests == limits (Guaranteed QoS, static CPU manager pinning).
    cpus: int = 1
    memory_mib: int = 1536
    replicas: int = 1
    # Models are immutable per rollout (a new version means a new pod), so polling is rare.
    file_system_poll_wait_seconds: int = 0
    log_level: OvmsLogLevel = "INFO"
    # 0 = no HorizontalPodAutoscaler; otherwise scale replicas..hpa_max_replicas on CPU.
    hpa_max_replicas: int = 0
    hpa_cpu_utilization: int = 80
    # EKS Anywhere: sync with keys from a Secret, or serve an image with the models baked in.
    eksa_model_delivery: EksaModelDelivery = "secret-sync"
    eksa_credentials_secret: str = "models-s3-credentials"
    # EKS Anywhere: the keys (same two names) the bench Job uploads its results with; write-only to
    # vsphere.bench_results_s3 is enough.
    bench_results_credentials_secret: str = "bench-results-s3-credentials"

    def tuning(self) -> OvmsTuning:
        return self.batch if self.use == "batch" else self.realtime

    def validate(self) -> None:
        self.batch.validate("ovms.batch")
        self.realtime.validate("ovms.realtime")
        for name in ("image", "sync_image"):
            _check_image_ref(f"ovms.{name}", getattr(self, name))
        for name in ("grpc_port", "rest_port"):
            if not 1024 <= getattr(self, name) <= 65535:
                raise ConfigError(
                    f"ovms.{name} must be an unprivileged port (1024-65535), got {getattr(self, name)}"
                )
        if self.grpc_port == self.rest_port:
            raise ConfigError("ovms.grpc_port and ovms.rest_port must differ")
        for name in ("cpus", "memory_mib", "replicas"):
            _positive(f"ovms.{name}", getattr(self, name))
        for use in ("batch", "realtime"):
            # More threads or streams than the pod's whole CPUs only time-slice its CPU limit.
            for name in ("inference_threads", "num_streams"):
                value = getattr(getattr(self, use), name)
                if value > self.cpus:
                    raise ConfigError(f"ovms.{use}.{name} must be <= ovms.cpus ({self.cpus}), got {value}")
        _non_negative("ovms.file_system_poll_wait_seconds", self.file_system_poll_wait_seconds)
        if self.hpa_max_replicas and self.hpa_max_replicas < self.replicas:
            raise ConfigError(
                f"ovms.hpa_max_replicas must be 0 (off) or >= ovms.replicas, got {self.hpa_max_replicas}"
            )
        if not 1 <= self.hpa_cpu_utilization <= 100:
            raise ConfigError(f"ovms.hpa_cpu_utilization must be 1-100, got {self.hpa_cpu_utilization}")
        for key in ("eksa_credentials_secret", "bench_results_credentials_secret"):
            if not _is_dns_label(getattr(self, key)):
                raise ConfigError(f"ovms.{key} must be a DNS label, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class ImagesConfig:
    """Container images (images/): registry, tags, pinned bases, and the DL1 training run."""

    # "" = the account's ECR registry for --target aws; e.g. registry.example.com/bmc on-prem.
    registry: str = ""
    tag: str = "0.1.0"
    extra_tags: tuple[str, ...] = ()
    platform: str = "linux/amd64"
    # Habana publishes SynapseAI 1.14.0 only under this release path with the tag "latest";
    # pin it immutably with "...@sha256:<digest>" (docker buildx imagetools inspect shows it).
    gaudi_base: str = (
        "vault.habana.ai/gaudi-docker/1.14.0/ubuntu22.04/habanalabs/tensorflow-installer-tf-cpu-2.15.0:latest"
    )
    cpu_base: str = "python:3.11.11-slim-bookworm"
    # DL1 training through SSM: the instance (id, or "" = the one tagged Name=<prefix>-dl1; started
    # when stopped), the bucket for datasets and runs, the Gaudi cards to use.
    dl1_instance_id: str = ""
    dl1_bucket: str = ""
    dl1_cards: int = 8
    dl1_poll_seconds: float = 15.0
    dl1_timeout_hours: float = 12.0

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", self.tag) or self.tag == "latest":
            raise ConfigError(f"images.tag must be a Docker tag other than 'latest', got {self.tag!r}")
        for tag in self.extra_tags:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
                raise ConfigError(f"images.extra_tags has an invalid Docker tag {tag!r}")
        if self.registry and (self.registry.endswith("/") or "://" in self.registry):
            raise ConfigError(
                f"images.registry must be host[/path] without scheme or trailing '/', got {self.registry!r}"
            )
        _check_image_ref("images.cpu_base", self.cpu_base)
        if "/" not in self.gaudi_base or (
            "@sha256:" not in self.gaudi_base and ":" not in self.gaudi_base.rsplit("/", 1)[-1]
        ):
            raise ConfigError(
                f"images.gaudi_base must be a tagged or digest-pinned image, got {self.gaudi_base!r}"
            )
        if self.dl1_instance_id and not re.fullmatch(r"i-[0-9a-f]{8,17}", self.dl1_instance_id):
            raise ConfigError(
                f"images.dl1_instance_id must look like i-0123456789abcdef0, got {self.dl1_instance_id!r}"
            )
        if self.dl1_bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.dl1_bucket):
            raise ConfigError(f"images.dl1_bucket must be an S3 bucket name, got {self.dl1_bucket!r}")
        if not 1 <= self.dl1_cards <= 8:
            raise ConfigError(
                f"images.dl1_cards must be 1-8 (a dl1.24xlarge has 8 Gaudi cards), got {self.dl1_cards}"
            )
        if not self.dl1_poll_seconds > 0 or not self.dl1_timeout_hours > 0:
            raise ConfigError("images.dl1_poll_seconds and images.dl1_timeout_hours must be > 0")


def _check_image_ref(key: str, ref: str) -> None:
    """A container image pinned by tag (not 'latest') or digest."""
    name, _, tag = ref.rpartition(":") if "@" not in ref else (ref, "", "digest")
    if not ref or not name or "/" in tag or not tag or tag == "latest" or " " in ref:
        raise ConfigError(
            f"{key} must be an image pinned by a tag other than 'latest' or a digest, got {ref!r}"
        )


@dataclass(frozen=True)
class ToolkitConfig:
    artifacts_dir: str = "artifacts"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    aws: AwsConfig = field(default_factory=AwsConfig)
    vsphere: VsphereConfig = field(default_factory=VsphereConfig)
    ovms: OvmsConfig = field(default_factory=OvmsConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)

    def validate(self) -> None:
        if not self.artifacts_dir:
            raise ConfigError("artifacts_dir must not be empty")
        self.data.validate()
        self.train.validate()
        self.optimize.validate()
        self.serving.validate()
        self.bench.validate()
        self.kubernetes.validate()
        self.aws.validate()
        self.vsphere.validate()
        self.ovms.validate()
        self.images.validate()

    @property
    def paths(self) -> ArtifactPaths:
        return ArtifactPaths(Path(self.artifacts_dir))


@dataclass(frozen=True)
class ArtifactPaths:
    """Where every stage reads and writes; the README's artifact layout mirrors this."""

    root: Path

    @property
    def synthetic_dataset(self) -> Path:
        return self.root / "data" / "synthetic"

    @property
    def kaggle_dataset(self) -> Path:
        return self.root / "data" / "kaggle"

    @property
    def split_manifest(self) -> Path:
        return self.root / "data" / "split.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def model_repository(self) -> Path:
        return self.root / "models"

    @property
    def local_server(self) -> Path:
        """pid, log and recorded endpoints of the local model server."""
        return self.root / "serving" / "local"

    @property
    def bench_results(self) -> Path:
        return self.root / "bench"

    def deploy(self, target: str) -> Path:
        """Work folder of a deploy target: specs, manifests, kubeconfig, recorded endpoints."""
        return self.root / "deploy" / target


def openvino_properties(
    performance_hint: str,
    num_streams: int,
    inference_threads: int,
    inference_precision: str | None = None,
) -> dict[str, Any]:
    """OpenVINO CPU compile properties as OVMS names them (0 = derived from the hint).

    ``inference_precision`` pins INFERENCE_PRECISION_HINT (f32, bf16); None leaves OpenVINO's
    default, which is bf16 on CPUs with AVX512_BF16 or AMX."""
    properties: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint}
    if inference_precision:
        properties["INFERENCE_PRECISION_HINT"] = inference_precision
    if num_streams:
        properties["NUM_STREAMS"] = num_streams
    if inference_threads:
        properties["INFERENCE_NUM_THREADS"] = inference_threads
    return properties


def config_mapping(config: ToolkitConfig) -> dict[str, Any]:
    """``config`` as plain data (tuples become lists) that :func:`load_config` reads back unchanged."""
    return _to_plain(dataclasses.asdict(config))


def defaults_mapping() -> dict[str, Any]:
    """The defaults as plain data, for Invoke's config tree.

    Free-key mappings (node pools, prices, AMI ids) are left out: Invoke merges mappings key by key,
    so a default ``c5`` pool in the tree would survive a user's ``aws.pools`` that names only
    ``c6i``. Absent from the tree, they come from the dataclass defaults unless a user sets them.
    """
    return _without_free_mappings(ToolkitConfig, config_mapping(ToolkitConfig()))


def _without_free_mappings(cls: type, mapping: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    kept: dict[str, Any] = {}
    for name, value in mapping.items():
        hint = hints[name]
        if typing.get_origin(hint) is dict:
            continue
        is_section = isinstance(hint, type) and dataclasses.is_dataclass(hint)
        kept[name] = _without_free_mappings(hint, value) if is_section else value
    return kept


def load_config(mapping: Mapping[str, Any] | None = None) -> ToolkitConfig:
    """Build and validate a :class:`ToolkitConfig` from nested plain data."""
    config = _build(ToolkitConfig, mapping or {}, prefix="")
    config.validate()
    return config


def replace(config: ToolkitConfig, section: str, **changes: Any) -> ToolkitConfig:
    """Return ``config`` with ``changes`` (None values ignored) applied to one section."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    current = dataclasses.asdict(getattr(config, section))
    current.update(changes)
    merged = dataclasses.asdict(config)
    merged[section] = current
    return load_config(merged)


def _build(cls: type, mapping: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(mapping).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ConfigError(
            f"unknown configuration key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})"
        )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in mapping]
    if missing:
        raise ConfigError(f"missing configuration key {prefix}{missing[0]}")
    values = {}
    for name in names & set(mapping):
        values[name] = _coerce(hints[name], mapping[name], f"{prefix}{name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        # A null entry removes it (`icelake: null` drops that pool from the mapping given).
        return {
            _coerce(key_hint, k, key): _coerce(value_hint, v, f"{key}.{k}")
            for k, v in value.items()
            if v is not None
        }
    if origin is tuple:
        (item_hint, _ellipsis) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(item_hint, v, key) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, date):  # YAML reads an unquoted 2026-12-01 as a date
            return value.isoformat()
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint}")


def _validate_pools(section: str, pools: Mapping[str, NodePoolConfig], bench_pool: NodePoolConfig) -> None:
    if not pools:
        raise ConfigError(f"{section}.pools must name at least one node pool")
    for name, pool in pools.items():
        if not _is_dns_label(name):
            raise ConfigError(f"{section}.pools key must be a DNS label, got {name!r}")
        if name == BENCH_POOL:
            raise ConfigError(f"{section}.pools.{BENCH_POOL} is reserved for {section}.bench_pool")
        pool.validate(f"{section}.pools.{name}")
    bench_pool.validate(f"{section}.bench_pool")


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def _non_negative(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def _is_dns_label(value: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value
