"""The quantization budget: how many points static INT8 (ONNX Runtime's search, NNCF's accuracy control) may lose
against the fp32 student on validation, and where that figure came from.

`quantize.max_drop` set (>= 0) is used as it is; 0 turns the search off. Left at -1 (the default) it follows the
recipe's `[budgets]` where one bounds it, else the search is off. The search measures points against the fp32
student on the validation split, the budgets against the teacher on the test split; the student's own drop against
the teacher is not known when the budget is needed (before measuring), so a budget is taken as an upper bound:
quantizing may spend at most all of it, never more.

- `max_accuracy_drop = N` (classifiers): N points. Top-1 disagreement with the fp32 student bounds the accuracy
  the int8 model can lose against it, so int8's drop against the teacher is at most the student's plus N.
- `min_teacher_agreement = A` (classifiers, percent): 100 - A points, the most disagreement with the teacher it
  allows (agreement with the teacher can fall by at most the disagreement with the student).
- `min_teacher_cosine = C` (embeddings): (1 - C) x 100 points of cosine, the loss it allows if the student matched
  the teacher exactly.

Several apply: the tightest wins. A budget that leaves no room (<= 0 points) turns the search on at 0. Budgets
against a baseline row (`max_accuracy_loss_pts`, `max_teacher_cosine_loss`) or absolute ones (`min_accuracy`) say
nothing about quantization alone and are not used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgekd.measure.quality import ACCURACY, TEACHER_COSINE
from edgekd.recipe import QuantizeSection

FROM_BUDGETS = -1.0  # quantize.max_drop's default: follow the recipe's budgets
# budget name -> (the task metric it bounds quantization for, the points it allows)
BUDGET_POINTS = {
    "max_accuracy_drop": (ACCURACY, lambda limit: limit),
    "min_teacher_agreement": (ACCURACY, lambda limit: 100.0 - limit),
    "min_teacher_cosine": (TEACHER_COSINE, lambda limit: (1.0 - limit) * 100),
}


@dataclass(frozen=True)
class QuantizeBudget:
    """An active accuracy budget for static INT8: at most `max_drop` points on validation (see the module
    docstring), from `source` (`quantize.max_drop` or `budgets.<name>`), at most `max_float_nodes` kept float."""

    max_drop: float
    source: str
    metric: str
    max_float_nodes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantize_budget(section: QuantizeSection, budgets: dict[str, float], metric: str) -> QuantizeBudget | None:
    """The run's budget for static INT8, or None when the search is off (see the module docstring)."""
    if section.max_drop != FROM_BUDGETS:
        if section.max_drop <= 0:
            return None
        return QuantizeBudget(section.max_drop, "quantize.max_drop", metric, section.max_float_nodes)
    derived = [(round(max(points(budgets[name]), 0.0), 6), f"budgets.{name}")
               for name, (bounds, points) in BUDGET_POINTS.items() if name in budgets and bounds == metric]
    if not derived:
        return None
    max_drop, source = min(derived)
    return QuantizeBudget(max_drop, source, metric, section.max_float_nodes)
