"""The INT8 gate on synthetic confusion data, its settings, and when NNCF accuracy control runs."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from contracts.config import OptimizeConfig, load_config
from contracts.errors import ConfigError, OptimizationError
from workloads.classes import CLASS_CODES
from workloads.metrics import classification_metrics
from workloads.optimize.gate import (
    ACCURACY,
    BALANCED_ACCURACY,
    CLASS_RECALL,
    PROTECTED_RECALL,
    GateBudgets,
    RuleCheck,
    check_int8_gate,
)
from workloads.optimize.pipeline import accuracy_control_images

# Test-split sizes in the proportions of the real data set's 15% test split (ABE 1 … NGS 4.4k),
# scaled down 10x except for the rare classes, which keep their true counts.
REAL_LIKE = {
    "ABE": 1, "ART": 294, "BAS": 66, "BLA": 219, "EBO": 411, "EOS": 88, "FGC": 7, "HAC": 61,
    "KSC": 6, "LYI": 10, "LYT": 394, "MMZ": 46, "MON": 61, "MYB": 98, "NGB": 150, "NGS": 441,
    "NIF": 53, "OTH": 44, "PEB": 41, "PLM": 114, "PMO": 129,
}  # fmt: skip


def scores(support: dict[str, int], wrong: dict[str, int] | None = None) -> dict:
    """classification_metrics where each class's first ``wrong[code]`` images go to the next class."""
    wrong = wrong or {}
    y_true: list[int] = []
    y_pred: list[int] = []
    for index, code in enumerate(CLASS_CODES):
        n = support.get(code, 0)
        misses = wrong.get(code, 0)
        assert misses <= n
        y_true += [index] * n
        y_pred += [(index + 1) % len(CLASS_CODES)] * misses + [index] * (n - misses)
    return classification_metrics(np.array(y_true), np.array(y_pred), CLASS_CODES)


FP32_WRONG = {"BLA": 20, "NGS": 30, "LYT": 10}  # the reference is not perfect either


def gate(
    int8_extra_wrong: dict[str, int],
    support=REAL_LIKE,
    budgets: GateBudgets | None = None,
    fp32_wrong=FP32_WRONG,
):
    """FP32 misses ``fp32_wrong``; INT8 misses those plus ``int8_extra_wrong``."""
    int8_wrong = {c: fp32_wrong.get(c, 0) + int8_extra_wrong.get(c, 0) for c in CLASS_CODES}
    return check_int8_gate(scores(support, fp32_wrong), scores(support, int8_wrong), budgets or GateBudgets())


def test_defaults_are_the_configs():
    assert GateBudgets.from_config(OptimizeConfig()) == GateBudgets()
    assert GateBudgets() == GateBudgets(1.0, 2.0, ("BLA",), 1.0, 5.0, 30)


def test_identical_predictions_pass_every_rule_and_small_classes_are_reported_not_judged():
    result = gate({})

    assert result.accepted and result.violations == ()
    assert [c.rule for c in result.checks[:3]] == [ACCURACY, BALANCED_ACCURACY, PROTECTED_RECALL]
    judged = {c.class_code for c in result.checks if c.rule == CLASS_RECALL}
    assert judged == {c for c, n in REAL_LIKE.items() if n >= 30} - {"BLA"}
    assert [(code, n) for code, n, _fp32, _int8 in result.not_judged] == [
        ("ABE", 1),
        ("FGC", 7),
        ("KSC", 6),
        ("LYI", 10),
    ]
    report = result.as_dict()
    assert report["accepted"] is True and report["violations"] == []
    assert report["budgets"]["int8_protected_classes"] == ["BLA"]
    bla = next(r for r in report["rules"] if r["rule"] == PROTECTED_RECALL)
    assert bla == {
        "rule": PROTECTED_RECALL,
        "class": "BLA",
        "support": 219,
        "fp32": pytest.approx(199 / 219),
        "int8": pytest.approx(199 / 219),
        "drop_points": 0.0,
        "max_drop_points": 1.0,
        "key": "optimize.int8_max_protected_recall_drop",
        "passed": True,
        "reason": None,
    }
    lines = result.progress_lines()
    assert lines[0].startswith("int8 gate: accepted · 19 rules · 16/16 classes with ≥ 30 test images")
    assert any("ok · protected class BLA (Blast) recall" in line for line in lines)
    assert any(line.startswith("int8 gate: not judged per class") and "ABE 1" in line for line in lines)
    assert not any("VIOLATED" in line for line in lines)


def test_losing_blasts_rejects_int8_although_accuracy_and_balanced_accuracy_hold():
    result = gate({"BLA": 3})  # 3 of 219 blasts: 1.37 points of BLA recall, 0.1 points overall

    assert not result.accepted
    assert [c.rule for c in result.violations] == [PROTECTED_RECALL]
    assert result.check(ACCURACY).passed and result.check(BALANCED_ACCURACY).passed
    assert result.check(PROTECTED_RECALL, "BLA").drop_points == pytest.approx(300 / 219)
    message = result.rejection_message()
    assert "\n" not in message
    assert message.startswith("INT8 model rejected: protected class BLA (Blast) recall 89.50% vs FP32 90.87%")
    assert "on 219 test images: a drop of 1.37 points, over the budget of 1" in message
    assert "(optimize.int8_max_protected_recall_drop)" in message
    violated = [line for line in result.progress_lines() if "VIOLATED" in line]
    assert violated == [f"int8 gate: VIOLATED · {result.violations[0].describe()}"]
    assert result.as_dict()["violations"] == [result.violations[0].describe()]


def test_rare_classes_collapsing_are_caught_by_balanced_accuracy_alone():
    # ABE, KSC, FGC and LYI all lost: 24 images of 2,734 (0.9 points overall, under the budget),
    # too few for the per-class rule, but 4 of 21 classes at recall 0 is 19 points of balanced accuracy.
    result = gate({"ABE": 1, "KSC": 6, "FGC": 7, "LYI": 10})

    assert [c.rule for c in result.violations] == [BALANCED_ACCURACY]
    assert result.check(ACCURACY).passed and result.check(ACCURACY).drop_points < 1.0
    assert result.check(BALANCED_ACCURACY).drop_points == pytest.approx(400 / 21)
    assert "balanced accuracy" in result.rejection_message()
    assert "(optimize.int8_max_balanced_accuracy_drop)" in result.rejection_message()
    # …and each of them is reported with its figures.
    assert ("ABE", 1, 1.0, 0.0) in result.not_judged


def test_balanced_accuracy_budget_is_configurable_and_rounds_at_its_edge():
    # One ABE image is 100/21 = 4.76 points of balanced accuracy.
    assert not gate({"ABE": 1}).accepted
    assert gate({"ABE": 1}, budgets=GateBudgets(max_balanced_accuracy_drop=4.77)).accepted
    check = RuleCheck(BALANCED_ACCURACY, "k", 0.50, 0.49, 1.0)
    assert check.drop_points == 1.0 and check.passed  # not 1.0000000000000009


def test_a_common_class_dropping_more_than_the_class_budget_is_rejected():
    result = gate({"ART": 15})  # 15 of 294: 5.1 points of ART recall, 0.55 overall, 0.24 balanced

    assert [(c.rule, c.class_code) for c in result.violations] == [(CLASS_RECALL, "ART")]
    assert "ART (Artefact) recall" in result.rejection_message()
    assert "(optimize.int8_max_class_recall_drop)" in result.rejection_message()
    assert gate({"ART": 14}).accepted  # 4.76 points


def test_classes_under_the_minimum_support_are_not_judged_one_by_one():
    # LYI loses 3 of 10 (30 points) and OTH 2 of 44: LYI is under 30 images, so only balanced
    # accuracy sees it (1.4 + 0.2 points, within 2).
    result = gate({"LYI": 3, "OTH": 2})
    assert result.accepted
    assert ("LYI", 10, 1.0, 0.7) in result.not_judged
    # With the minimum lowered to 10 the same loss is judged, and rejected.
    strict = gate({"LYI": 3, "OTH": 2}, budgets=GateBudgets(class_min_support=10))
    assert [(c.rule, c.class_code) for c in strict.violations] == [(CLASS_RECALL, "LYI")]


def test_a_protected_class_is_judged_whatever_its_size():
    support = dict(REAL_LIKE, BLA=12)
    result = gate({"BLA": 1}, support=support, fp32_wrong={})  # one blast of 12 is 8.33 points
    (violation,) = result.violations
    assert violation.class_code == "BLA" and violation.support == 12
    assert "(one image is 8.33 points here: no net loss is allowed)" in violation.describe()
    # Protection is configurable: rare ABE protected too, and BLA left to the per-class rule.
    budgets = GateBudgets(protected_classes=("ABE",))
    assert [c.class_code for c in gate({"ABE": 1}, budgets=budgets).violations] == [None, "ABE"]
    assert gate({"BLA": 3}, budgets=GateBudgets(protected_classes=())).accepted


def test_a_protected_class_without_test_images_fails_the_gate():
    result = gate({}, support=dict(REAL_LIKE, BLA=0), fp32_wrong={})

    (violation,) = result.violations
    assert violation.rule == PROTECTED_RECALL and violation.support == 0
    assert result.rejection_message() == (
        "INT8 model rejected: protected class BLA (Blast) recall: no test images, so its recall "
        "cannot be checked — add some to the test split or take the class out of "
        "optimize.int8_protected_classes"
    )
    assert result.as_dict()["rules"][2]["reason"].startswith("no test images")


def test_classes_absent_from_the_test_split_are_listed():
    result = gate({}, support=dict(REAL_LIKE, ABE=0))
    assert result.accepted and result.absent == ("ABE",)
    assert result.progress_lines()[-1] == "int8 gate: no test images, in no rule: ABE"


def test_a_budget_of_zero_allows_no_drop_but_equal_or_better_passes():
    zero = GateBudgets(0.0, 0.0, ("BLA",), 0.0, 0.0, 30)
    assert gate({}, budgets=zero).accepted
    better = check_int8_gate(scores(REAL_LIKE, FP32_WRONG), scores(REAL_LIKE, {"NGS": 29}), zero)
    assert better.accepted
    worse = gate({"NGS": 1}, budgets=zero)
    assert [(c.rule, c.class_code) for c in worse.violations] == [
        (ACCURACY, None),
        (BALANCED_ACCURACY, None),
        (CLASS_RECALL, "NGS"),
    ]


def test_several_violations_make_one_line_and_one_progress_line_each():
    result = gate({"BLA": 60, "ART": 50})  # balanced: (27.4 + 17.0) / 21 = 2.1 points
    assert len(result.violations) == 4  # accuracy, balanced accuracy, BLA, ART
    assert "\n" not in result.rejection_message()
    assert result.rejection_message().count("; ") == 3
    assert sum("VIOLATED" in line for line in result.progress_lines()) == 4


def test_the_gate_refuses_unknown_protected_classes_and_mismatched_figures():
    with pytest.raises(OptimizationError, match=r"optimize.int8_protected_classes names XYZ, not a class"):
        gate({}, budgets=GateBudgets(protected_classes=("BLA", "XYZ")))
    with pytest.raises(ValueError, match="FP32 was scored on"):
        check_int8_gate(scores({"BLA": 3}), scores({"BLA": 4}))


# --- settings -------------------------------------------------------------------------------


def test_a_budget_of_zero_is_a_valid_setting_and_keeps_accuracy_control_on():
    config = load_config({"optimize": {"int8_max_accuracy_drop": 0, "int8_max_protected_recall_drop": 0}})
    assert config.optimize.int8_max_accuracy_drop == 0.0
    assert config.optimize.int8_accuracy_control is True


@pytest.mark.parametrize(
    ("optimize", "message"),
    [
        ({"int8_max_balanced_accuracy_drop": -0.5}, "optimize.int8_max_balanced_accuracy_drop must be >= 0"),
        ({"int8_max_class_recall_drop": "nan"}, "optimize.int8_max_class_recall_drop must be >= 0"),
        ({"int8_max_protected_recall_drop": -1}, "optimize.int8_max_protected_recall_drop must be >= 0"),
        ({"int8_class_min_support": 0}, "optimize.int8_class_min_support must be > 0"),
        ({"int8_protected_classes": ["bla"]}, "optimize.int8_protected_classes: 'bla' is not a class code"),
        (
            {"int8_protected_classes": "BLA,ABE,BLA"},
            "optimize.int8_protected_classes lists BLA more than once",
        ),
    ],
)
def test_gate_settings_are_checked_with_the_key_named(optimize, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config({"optimize": optimize})
    assert "\n" not in str(info.value)


def test_protected_classes_come_from_a_comma_list_and_may_be_emptied_explicitly():
    assert load_config(
        {"optimize": {"int8_protected_classes": "BLA,PMO"}}
    ).optimize.int8_protected_classes == (
        "BLA",
        "PMO",
    )
    assert load_config({"optimize": {"int8_protected_classes": []}}).optimize.int8_protected_classes == ()


# --- accuracy control -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int


class FakeManifest:
    def __init__(self, **splits: list[Entry]):
        self._splits = splits

    def entries(self, split: str) -> list[Entry]:
        return list(self._splits.get(split, []))


VAL = [Entry(Path(f"/v/{i}.jpg"), i % 21) for i in range(42)]


@pytest.mark.parametrize("budget", [0.0, 1.0])
def test_accuracy_control_runs_whatever_the_budget_even_zero(budget):
    opt = OptimizeConfig(int8_max_accuracy_drop=budget, accuracy_control_images=21)
    assert len(accuracy_control_images(opt, FakeManifest(val=VAL))) == 21


def test_only_the_explicit_switch_turns_accuracy_control_off():
    opt = OptimizeConfig(int8_accuracy_control=False)
    assert accuracy_control_images(opt, FakeManifest(val=VAL)) == []
    assert accuracy_control_images(opt, FakeManifest()) == []


def test_accuracy_control_without_val_images_is_an_error_not_a_silent_plain_quantization():
    with pytest.raises(OptimizationError, match=r"optimize.int8_accuracy_control: false") as info:
        accuracy_control_images(OptimizeConfig(), FakeManifest(train=VAL))
    assert "\n" not in str(info.value)
