"""Known-answer check logic: top-1 agreement and probability tolerance, in process."""

import numpy as np
import pytest
from test_bench_clients import S, tiny_ir

from contracts.errors import BenchError
from workloads.bench.clients import RetryPolicy
from workloads.bench.inprocess import AsyncOpenVinoClient
from workloads.bench.known_answer import (
    REMOTE_TOLERANCE,
    SAME_MACHINE_TOLERANCE,
    build_known_answer,
    check_known_answer,
    compare,
)

RETRY = RetryPolicy(ready_deadline_seconds=0.1)
OTHER_CLASS = 20


def test_compare_counts_top1_disagreements_and_the_largest_difference():
    expected = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32)
    answered = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]], np.float32)
    agreement = compare(expected, answered)
    assert agreement.images == 3
    assert agreement.top1_disagreements == 1
    assert agreement.max_abs_diff == pytest.approx(0.4)
    assert not agreement.passed(REMOTE_TOLERANCE)
    assert compare(expected, expected).passed(0.0)
    with pytest.raises(BenchError, match="answered shape \\[3, 2\\], expected \\[3, 3\\]"):
        compare(expected, answered[:, :2])


def test_small_differences_pass_only_within_the_tolerance():
    expected = np.array([[0.6, 0.4]], np.float32)
    nudged = np.array([[0.595, 0.405]], np.float32)  # same top-1, Δ 0.005 (int8 vs fp32 scale)
    assert not compare(expected, nudged).passed(SAME_MACHINE_TOLERANCE)
    assert compare(expected, nudged).passed(REMOTE_TOLERANCE)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    weights = np.random.default_rng(0).normal(0, 0.05, (3, 21)).astype(np.float32)
    weights[:, OTHER_CLASS] = -1.0  # never the served model's answer
    favourite = np.zeros((3, 21), np.float32)
    favourite[:, OTHER_CLASS] = 1.0  # "another model": one class wins for every image
    config = {"PERFORMANCE_HINT": "LATENCY"}
    return {
        name: AsyncOpenVinoClient(
            tiny_ir(root / name, weights=w), model=name, image_size=S, compile_config=config
        )
        for name, w in (("served", weights), ("same", weights.copy()), ("other", favourite))
    }


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (8, S, S, 3)).astype(np.float32)


def test_the_same_model_passes_before_and_after(models, images):
    answer = build_known_answer(
        models["served"].infer, images, images, description="reference", tolerance=SAME_MACHINE_TOLERANCE
    )
    for stage in ("before", "after"):
        agreement = check_known_answer(models["same"], answer, stage=stage, retry=RETRY)
        assert agreement.top1_disagreements == 0 and agreement.max_abs_diff <= SAME_MACHINE_TOLERANCE


def test_a_swapped_model_fails_naming_how_many_images_disagreed(models, images):
    answer = build_known_answer(
        models["served"].infer,
        images,
        images,
        description="served version 3 in-process",
        tolerance=REMOTE_TOLERANCE,
    )
    expected_top1 = np.argmax(answer.expected, axis=1)
    disagreeing = int(np.sum(expected_top1 != OTHER_CLASS))
    assert disagreeing == 8  # the fixture's premise
    with pytest.raises(BenchError) as err:
        check_known_answer(models["other"], answer, stage="after", retry=RETRY)
    message = str(err.value)
    assert message.startswith(f"known-answer check after the run failed: {disagreeing} of 8 images")
    assert "from other than from served version 3 in-process" in message
    assert "\n" not in message
