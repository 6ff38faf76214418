"""Known-answer check: is the endpoint serving the model we think, before and after the run?

A few fixed test images go through a reference run in this process — the same IR with the
server's OpenVINO settings, or the SavedModel for the TF runtime — and through the client.
Every image must get the same top-1 class, and the probabilities must agree within a
tolerance: tight when the server runs this OpenVINO build on this machine (only thread
scheduling differs), loose for a remote server (another CPU may, for instance, run FP32 in
bf16). A swapped model (int8 served as fp32, another run, another model) fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from contracts.errors import BenchError
from workloads.bench.clients import InferenceClient, RetryPolicy, with_retries
from workloads.bench.payloads import Batch

# max |Δ probability| allowed between the reference and the served answers.
SAME_MACHINE_TOLERANCE = 1e-3
REMOTE_TOLERANCE = 0.05


@dataclass(frozen=True)
class KnownAnswer:
    inputs: Batch  # what the client sends (tensors, or encoded files for input_format jpeg)
    expected: np.ndarray  # reference probabilities (N, classes)
    reference: str  # e.g. "bone-marrow-int8 version 3 in-process"
    tolerance: float

    @property
    def images(self) -> int:
        return len(self.expected)


@dataclass(frozen=True)
class Agreement:
    images: int
    top1_disagreements: int
    max_abs_diff: float

    def passed(self, tolerance: float) -> bool:
        return self.top1_disagreements == 0 and self.max_abs_diff <= tolerance


def compare(expected: np.ndarray, answered: np.ndarray) -> Agreement:
    if answered.shape != expected.shape:
        raise BenchError(
            f"known-answer check: the model answered shape {list(answered.shape)}, "
            f"expected {list(expected.shape)} (images × classes) — it is not this model"
        )
    disagree = int(np.sum(np.argmax(expected, axis=1) != np.argmax(answered, axis=1)))
    diff = float(np.max(np.abs(expected.astype(np.float64) - answered.astype(np.float64))))
    return Agreement(len(expected), disagree, diff)


def build_known_answer(
    reference: Callable[[np.ndarray], np.ndarray],
    tensors: np.ndarray,
    inputs: Batch,
    *,
    description: str,
    tolerance: float,
) -> KnownAnswer:
    return KnownAnswer(inputs, np.asarray(reference(tensors), dtype=np.float32), description, tolerance)


def check_known_answer(
    client: InferenceClient, answer: KnownAnswer, *, stage: str, retry: RetryPolicy
) -> Agreement:
    """Send the known images; BenchError naming how many disagreed unless all agree."""
    answered = with_retries(lambda: client.infer(answer.inputs), retry)
    agreement = compare(answer.expected, answered)
    if not agreement.passed(answer.tolerance):
        raise BenchError(
            f"known-answer check {stage} the run failed: {agreement.top1_disagreements} of "
            f"{agreement.images} images got another top-1 class from {client.model} "
            f"than from {answer.reference} "
            f"(max |Δprobability| {agreement.max_abs_diff:.3g}, allowed {answer.tolerance:g}) — the endpoint "
            "serves another model or version; restart it on this repository (`invoke up --target local`)"
        )
    return agreement
