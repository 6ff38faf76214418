"""Known-answer check: is the endpoint serving the model we think, before and after the run?

A few fixed test images go through the client, and their answers are compared with a reference:
for an OpenVINO model (served, or in process) the answers stored with its version at publish
(``known_answer.json``: that precision's IR evaluated by ``invoke optimize``,
:func:`stored_known_answer`) — never recomputed from the file being served, which would agree
with a damaged one; for the TF runtime, the SavedModel in this process. Every image must get the
same top-1 class, and the probabilities must agree within a tolerance: tight on the machine that
computed the reference (only thread scheduling differs), loose elsewhere (another CPU may, for
instance, run FP32 in bf16). A swapped or damaged model (int8 served as fp32, another run,
another model, rotten weights) fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contracts.errors import BenchError, ModelRepositoryError
from contracts.known_answer import KNOWN_ANSWER_FILE, StoredKnownAnswer, sha256_bytes
from contracts.model_repository import ModelVersion
from workloads.bench.clients import InferenceClient, RetryPolicy, with_retries
from workloads.bench.cpuinfo import cpu_info
from workloads.bench.payloads import Batch
from workloads.images import decode_batch

if TYPE_CHECKING:
    from workloads.data.manifest import SplitManifest

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


def stored_known_answer(
    version: ModelVersion,
    manifest: SplitManifest,
    *,
    input_format: str,
    count: int,
    same_machine: bool,
) -> KnownAnswer:
    """The known answer stored with ``version`` at publish (``known_answer.json``), never recomputed.

    Its images are found in the split manifest by sha256 (so a relocated or synced artifacts tree
    works) and checked byte for byte. A version without a stored reference is refused: answers
    recomputed from the file being served would agree with a damaged model. The tight tolerance
    applies only to a server on the machine (same CPU model and flags) that computed the answers,
    with the local server's settings.
    """
    path = version.directory / KNOWN_ANSWER_FILE
    try:
        stored = StoredKnownAnswer.load(path)
    except FileNotFoundError:
        raise BenchError(
            f"{version.name} version {version.version} has no stored known answer ({path}, written by "
            "`invoke optimize` at publish); republish it with `invoke optimize`, or set "
            "bench.known_answer_images: 0 to run without the check"
        ) from None
    except ModelRepositoryError as exc:
        raise BenchError(str(exc)) from None
    if stored.image_size != version.image_size or stored.model != version.ir_name:
        raise BenchError(
            f"the stored known answer {path} is for {stored.model} at {stored.image_size} px, not "
            f"{version.name} at {version.image_size} px; republish with `invoke optimize`"
        )
    images = stored.images[:count]
    by_sha = {e.sha256: Path(e.path) for e in manifest.entries()}
    encoded = []
    for image in images:
        file = by_sha.get(image.sha256) or Path(image.path)
        try:
            data = file.read_bytes()
        except OSError:
            data = b""
        if sha256_bytes(data) != image.sha256:
            raise BenchError(
                f"the known-answer image {image.path} (sha256 {image.sha256[:12]}…) stored in {path} is not "
                "in the split manifest nor at that path; benchmark with the split that was optimized "
                "(`invoke data` as before), or republish with `invoke optimize`"
            )
        encoded.append(data)
    tensors = decode_batch(encoded, version.image_size)
    here = cpu_info()
    # A variant executed in another precision than its IR's stored answers (bf16 of the fp32 IR,
    # stored in f32) agrees only as closely as a remote server does.
    same = (
        same_machine
        and stored.precision == version.precision
        and stored.cpu.get("cpu_model") == here["cpu_model"]
        and stored.cpu.get("flags") == here["flags"]
    )
    return KnownAnswer(
        encoded if input_format == "jpeg" else tensors,
        np.asarray(stored.probabilities[:count], dtype=np.float32),
        f"the answers stored at publish for {version.name} version {version.version} ({stored.computed_by})",
        SAME_MACHINE_TOLERANCE if same else REMOTE_TOLERANCE,
    )


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
