"""The INT8 gate: INT8 against FP32 on the same test images, rule by rule.

Each rule bounds a drop in percentage points of the FP32 figure (INT8 scoring higher is never a
drop; a budget of 0 means no drop at all):

1. accuracy — ``optimize.int8_max_accuracy_drop`` (1.0);
2. balanced accuracy, mean recall over the classes present in the test split —
   ``optimize.int8_max_balanced_accuracy_drop`` (2.0). Every class weighs 1/K whatever its size,
   so a rare class that collapses moves it even when overall accuracy does not notice;
3. recall of each protected class (``optimize.int8_protected_classes``, default BLA) —
   ``optimize.int8_max_protected_recall_drop`` (1.0), judged whatever its number of test images;
   a protected class without test images fails: its recall cannot be shown to hold;
4. recall of every other class with at least ``optimize.int8_class_min_support`` (30) test
   images — ``optimize.int8_max_class_recall_drop`` (5.0). Classes with fewer images are
   reported with their figures but not judged one by one (they still weigh in rule 2).

INT8 is accepted when every rule holds. :func:`check_int8_gate` works on the figures of
``workloads.metrics.classification_metrics``, so it needs no model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.config import OptimizeConfig
from contracts.errors import OptimizationError
from workloads.classes import CLASS_MEANINGS

ACCURACY = "accuracy"
BALANCED_ACCURACY = "balanced_accuracy"
PROTECTED_RECALL = "protected_class_recall"
CLASS_RECALL = "class_recall"


@dataclass(frozen=True)
class GateBudgets:
    """The gate's settings, as ``optimize.*`` names them (drops in percentage points)."""

    max_accuracy_drop: float = 1.0
    max_balanced_accuracy_drop: float = 2.0
    protected_classes: tuple[str, ...] = ("BLA",)
    max_protected_recall_drop: float = 1.0
    max_class_recall_drop: float = 5.0
    class_min_support: int = 30

    @classmethod
    def from_config(cls, opt: OptimizeConfig) -> GateBudgets:
        return cls(
            max_accuracy_drop=opt.int8_max_accuracy_drop,
            max_balanced_accuracy_drop=opt.int8_max_balanced_accuracy_drop,
            protected_classes=tuple(opt.int8_protected_classes),
            max_protected_recall_drop=opt.int8_max_protected_recall_drop,
            max_class_recall_drop=opt.int8_max_class_recall_drop,
            class_min_support=opt.int8_class_min_support,
        )

    def check_classes(self, classes: Sequence[str]) -> None:
        """Refuse protected classes the model does not have (before any work is done)."""
        unknown = [c for c in self.protected_classes if c not in classes]
        if unknown:
            raise OptimizationError(
                f"optimize.int8_protected_classes names {', '.join(unknown)}, not a class of the model "
                f"({' '.join(classes)})"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "int8_max_accuracy_drop": self.max_accuracy_drop,
            "int8_max_balanced_accuracy_drop": self.max_balanced_accuracy_drop,
            "int8_protected_classes": list(self.protected_classes),
            "int8_max_protected_recall_drop": self.max_protected_recall_drop,
            "int8_max_class_recall_drop": self.max_class_recall_drop,
            "int8_class_min_support": self.class_min_support,
        }


@dataclass(frozen=True)
class RuleCheck:
    """One rule applied to one figure; ``fp32``/``int8`` are fractions, drops percentage points."""

    rule: str  # ACCURACY, BALANCED_ACCURACY, PROTECTED_RECALL or CLASS_RECALL
    key: str  # the optimize.* setting that holds the budget
    fp32: float
    int8: float
    max_drop_points: float
    class_code: str | None = None
    support: int | None = None  # test images of the class (class rules)
    reason: str | None = None  # why a rule failed without a drop (a protected class with no images)

    @property
    def drop_points(self) -> float:
        # Rounded so that e.g. 0.50 → 0.49 counts as exactly 1.0 point, not 1.0000000000000009.
        return round((self.fp32 - self.int8) * 100.0, 9)

    @property
    def passed(self) -> bool:
        return self.reason is None and self.drop_points <= self.max_drop_points

    @property
    def subject(self) -> str:
        if self.rule == ACCURACY:
            return "test accuracy"
        if self.rule == BALANCED_ACCURACY:
            return "balanced accuracy"
        protected = "protected class " if self.rule == PROTECTED_RECALL else ""
        return f"{protected}{self.class_code} ({CLASS_MEANINGS.get(self.class_code or '', '?')}) recall"

    def describe(self) -> str:
        """One line: the figures, the drop, the budget and the key that sets it."""
        if self.reason:
            return f"{self.subject}: {self.reason}"
        images = f" on {self.support} test images" if self.support is not None else ""
        verdict = "over" if not self.passed else "within"
        text = (
            f"{self.subject} {self.int8:.2%} vs FP32 {self.fp32:.2%}{images}: a drop of "
            f"{self.drop_points:.2f} points, {verdict} the budget of {self.max_drop_points:g} ({self.key})"
        )
        if (
            self.support
            and self.rule == PROTECTED_RECALL
            and self.support < 100 / max(self.max_drop_points, 1e-9)
        ):
            text += f" (one image is {100 / self.support:.2f} points here: no net loss is allowed)"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "class": self.class_code,
            "support": self.support,
            "fp32": self.fp32,
            "int8": self.int8,
            "drop_points": self.drop_points,
            "max_drop_points": self.max_drop_points,
            "key": self.key,
            "passed": self.passed,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Int8Gate:
    budgets: GateBudgets
    checks: tuple[RuleCheck, ...]
    # Present in the test split with fewer than class_min_support images and not protected:
    # reported (code, support, FP32 recall, INT8 recall), not judged by rule 4.
    not_judged: tuple[tuple[str, int, float, float], ...]
    absent: tuple[str, ...]  # no test images (and not protected): in no rule

    @property
    def accepted(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def violations(self) -> tuple[RuleCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def check(self, rule: str, class_code: str | None = None) -> RuleCheck:
        return next(c for c in self.checks if c.rule == rule and c.class_code == class_code)

    def rejection_message(self) -> str:
        """One line naming every violated rule."""
        return "INT8 model rejected: " + "; ".join(check.describe() for check in self.violations)

    def progress_lines(self) -> list[str]:
        """A verdict line, the overall and protected figures, then one line per violated rule."""
        class_checks = [c for c in self.checks if c.rule == CLASS_RECALL]
        verdict = "accepted" if self.accepted else f"rejected, {len(self.violations)} rule(s) violated"
        lines = [
            f"int8 gate: {verdict} · {len(self.checks)} rules · "
            f"{sum(c.passed for c in class_checks)}/{len(class_checks)} classes with ≥ "
            f"{self.budgets.class_min_support} test images within {self.budgets.max_class_recall_drop:g} "
            "points of FP32 recall"
        ]
        shown = [c for c in self.checks if c.rule != CLASS_RECALL]
        lines += [f"int8 gate: {'ok' if c.passed else 'VIOLATED'} · {c.describe()}" for c in shown]
        lines += [f"int8 gate: VIOLATED · {c.describe()}" for c in class_checks if not c.passed]
        if self.not_judged:
            few = ", ".join(
                f"{code} {support} ({fp32:.0%} → {int8:.0%})" for code, support, fp32, int8 in self.not_judged
            )
            lines.append(
                f"int8 gate: not judged per class (fewer than {self.budgets.class_min_support} test images, "
                f"counted in balanced accuracy): {few}"
            )
        if self.absent:
            lines.append(f"int8 gate: no test images, in no rule: {', '.join(self.absent)}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "budgets": self.budgets.as_dict(),
            "violations": [check.describe() for check in self.violations],
            "rules": [check.as_dict() for check in self.checks],
            "not_judged": [
                {"class": code, "support": support, "fp32_recall": fp32, "int8_recall": int8}
                for code, support, fp32, int8 in self.not_judged
            ],
            "absent": list(self.absent),
        }


def check_int8_gate(
    fp32: Mapping[str, Any], int8: Mapping[str, Any], budgets: GateBudgets = GateBudgets()
) -> Int8Gate:
    """Apply every rule to two ``classification_metrics`` results over the same test images."""
    if fp32["n_samples"] != int8["n_samples"]:
        raise ValueError(f"FP32 was scored on {fp32['n_samples']} images but INT8 on {int8['n_samples']}")
    fp32_classes, int8_classes = fp32["per_class"], int8["per_class"]
    budgets.check_classes(list(fp32_classes))
    checks = [
        RuleCheck(ACCURACY, "optimize.int8_max_accuracy_drop", fp32["accuracy"], int8["accuracy"],
                  budgets.max_accuracy_drop),
        RuleCheck(BALANCED_ACCURACY, "optimize.int8_max_balanced_accuracy_drop", fp32["balanced_accuracy"],
                  int8["balanced_accuracy"], budgets.max_balanced_accuracy_drop),
    ]  # fmt: skip
    for code in budgets.protected_classes:
        support = int(fp32_classes[code]["support"])
        checks.append(
            RuleCheck(
                PROTECTED_RECALL,
                "optimize.int8_max_protected_recall_drop",
                float(fp32_classes[code]["recall"]),
                float(int8_classes[code]["recall"]),
                budgets.max_protected_recall_drop,
                class_code=code,
                support=support,
                reason=None
                if support
                else "no test images, so its recall cannot be checked — add some to the test split "
                "or take the class out of optimize.int8_protected_classes",
            )
        )
    not_judged: list[tuple[str, int, float, float]] = []
    absent: list[str] = []
    for code, figures in fp32_classes.items():
        if code in budgets.protected_classes:
            continue
        support = int(figures["support"])
        fp32_recall, int8_recall = float(figures["recall"]), float(int8_classes[code]["recall"])
        if support == 0:
            absent.append(code)
        elif support < budgets.class_min_support:
            not_judged.append((code, support, fp32_recall, int8_recall))
        else:
            checks.append(
                RuleCheck(
                    CLASS_RECALL,
                    "optimize.int8_max_class_recall_drop",
                    fp32_recall,
                    int8_recall,
                    budgets.max_class_recall_drop,
                    class_code=code,
                    support=support,
                )
            )
    return Int8Gate(budgets, tuple(checks), tuple(not_judged), tuple(absent))
