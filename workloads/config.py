"""Typed configuration of the ML pipeline, defined once.

Defaults live here. ``tasks.py`` hands Invoke's merged configuration (``invoke.yaml``,
``INVOKE_BMC_*`` environment variables, command-line flags) to :func:`load_config`, which
returns frozen dataclasses or raises :class:`ConfigError` with one line naming the bad key.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workloads.errors import ConfigError

DataSource = Literal["synthetic", "local", "kaggle"]
Backbone = Literal["mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_v2_b0", "resnet50"]
Device = Literal["auto", "cpu", "gpu", "hpu"]
Precision = Literal["fp32", "fp16", "int8"]
CacheMode = Literal["auto", "memory", "none"]
PerformanceHint = Literal["THROUGHPUT", "LATENCY"]
InputFormat = Literal["tensor", "jpeg"]
Protocol = Literal["rest", "grpc"]


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
    workers: int = 4

    def validate(self) -> None:
        _positive("data.synthetic_images_per_class", self.synthetic_images_per_class)
        _positive("data.synthetic_image_size", self.synthetic_image_size)
        _positive("data.workers", self.workers)
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

    def validate(self) -> None:
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
    # INT8 is rejected when its test accuracy is more than this many points below FP32.
    int8_max_accuracy_drop: float = 1.0
    calibration_size: int = 300
    # When plain post-training quantization misses the budget on the validation split, let
    # NNCF keep the most sensitive operations in floating point until it is met.
    int8_accuracy_control: bool = True
    accuracy_control_images: int = 300
    # TF vs OpenVINO FP32 parity on the same images: max |Δ probability| allowed.
    parity_tolerance: float = 1e-3
    parity_images: int = 32

    def validate(self) -> None:
        if not self.model_name or not all(c.isalnum() or c in "-_" for c in self.model_name):
            raise ConfigError(
                f"optimize.model_name must be letters, digits, '-' or '_', got {self.model_name!r}"
            )
        if "fp32" not in self.precisions:
            raise ConfigError("optimize.precisions must include 'fp32' (the reference for INT8 and parity)")
        if self.int8_max_accuracy_drop < 0:
            raise ConfigError(
                f"optimize.int8_max_accuracy_drop must be >= 0, got {self.int8_max_accuracy_drop}"
            )
        _positive("optimize.calibration_size", self.calibration_size)
        _positive("optimize.accuracy_control_images", self.accuracy_control_images)
        _positive("optimize.parity_images", self.parity_images)
        if not self.parity_tolerance > 0:
            raise ConfigError(f"optimize.parity_tolerance must be > 0, got {self.parity_tolerance}")


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

    def validate(self) -> None:
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
class BenchConfig:
    """`invoke bench`: MLPerf-style Offline (batch) and SingleStream (real-time) scenarios."""

    precision: Precision = "int8"
    protocol: Protocol = "grpc"
    input_format: InputFormat = "tensor"
    batch_size: int = 16
    concurrency: int = 2
    warmup_seconds: float = 2.0
    min_duration_seconds: float = 5.0
    min_requests: int = 50
    repetitions: int = 3
    # The reference paper's real-time figure: mean latency over this many single images.
    paper_images: int = 10
    known_answer_images: int = 8
    request_timeout_seconds: float = 30.0
    # $/hour per target or pool (e.g. {"c5": 0.085, "c6i": 0.085}); enables cost per million images.
    usd_per_hour: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("batch_size", "concurrency", "min_requests", "repetitions", "paper_images"):
            _positive(f"bench.{name}", getattr(self, name))
        _non_negative("bench.known_answer_images", self.known_answer_images)
        if self.repetitions < 3:
            raise ConfigError(f"bench.repetitions must be at least 3 (median and range), got {self.repetitions}")
        for name in ("warmup_seconds", "min_duration_seconds", "request_timeout_seconds"):
            if getattr(self, name) < 0 or (name != "warmup_seconds" and getattr(self, name) == 0):
                raise ConfigError(f"bench.{name} must be > 0, got {getattr(self, name)}")
        for key, value in self.usd_per_hour.items():
            if value < 0:
                raise ConfigError(f"bench.usd_per_hour.{key} must be >= 0, got {value}")


@dataclass(frozen=True)
class ToolkitConfig:
    artifacts_dir: str = "artifacts"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def validate(self) -> None:
        if not self.artifacts_dir:
            raise ConfigError("artifacts_dir must not be empty")
        self.data.validate()
        self.train.validate()
        self.optimize.validate()
        self.serving.validate()
        self.bench.validate()

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


def defaults_mapping() -> dict[str, Any]:
    """The defaults as plain data, for Invoke's config tree (tuples become lists)."""
    return _to_plain(dataclasses.asdict(ToolkitConfig()))


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
    values = {}
    for name in names & set(mapping):
        values[name] = _coerce(hints[name], mapping[name], f"{prefix}{name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
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
        return {_coerce(key_hint, k, key): _coerce(value_hint, v, f"{key}.{k}") for k, v in value.items()}
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
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint}")


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def _non_negative(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value
