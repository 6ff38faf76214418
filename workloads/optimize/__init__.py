"""Model optimization (`invoke optimize`): OpenVINO FP32/FP16/INT8 IRs, checks, OVMS publication."""

from workloads.optimize.pipeline import OptimizeResult, VariantResult, latest_run, run_optimize
from workloads.optimize.repository import PublishedModel, publish

__all__ = ["OptimizeResult", "PublishedModel", "VariantResult", "latest_run", "publish", "run_optimize"]
