"""TF SavedModel vs OpenVINO FP32 IR on the same images: the conversion must not change the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workloads.optimize.evaluate import Predictor


@dataclass(frozen=True)
class ParityResult:
    n_images: int
    max_abs_diff: float
    top1_agreement: int  # images whose top-1 class is the same for both
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement == self.n_images

    def failure_message(self) -> str:
        return (
            f"TF/OpenVINO FP32 parity failed on {self.n_images} test images: max |Δprob| "
            f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:g}), top-1 agrees on "
            f"{self.top1_agreement}/{self.n_images}; the IR does not reproduce the SavedModel — "
            "check the export and the OpenVINO version, or raise optimize.parity_tolerance if it is benign"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_images": self.n_images,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def compare_probabilities(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> ParityResult:
    if reference.shape != candidate.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"cannot compare probabilities of shapes {reference.shape} and {candidate.shape}")
    max_abs_diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    agreement = int(np.sum(np.argmax(reference, axis=1) == np.argmax(candidate, axis=1)))
    return ParityResult(len(reference), max_abs_diff, agreement, float(tolerance))


def check_parity(
    reference: Predictor, candidate: Predictor, images: np.ndarray, tolerance: float
) -> ParityResult:
    """Run both predictors on ``images`` (N, S, S, 3) and compare their probabilities."""
    return compare_probabilities(reference(images), candidate(images), tolerance)
