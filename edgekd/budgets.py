"""The budget table: every budget a recipe, a budgets file, a profile or `edgekd gate`'s options may name, each a
limit on one figure of `edgekd.report.figures` (a limit on the figure itself, its change against a baseline row,
or the speed-up over the teacher measured in the same run).

Data only, apart from the gate that judges reports by it (`edgekd.gate`): the recipe's checks read the names from
here, so the recipe does not depend on the gate and what it imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekd.report.figures import FIGURES, Figure

# what a budget compares a row's figure with: a limit, the baseline report's row, or the teacher in the same run
ABSOLUTE, INCREASE_PCT, LOSS, SPEEDUP = "absolute", "increase_pct", "loss", "speedup"


@dataclass(frozen=True)
class BudgetSpec:
    """One kind of budget on one figure of `edgekd.report.figures`: a limit on the figure itself (in the
    figure's unit, or `unit` / `scale` where the budget reads it otherwise), on its change against a baseline,
    or on the speed-up over the teacher. `help` is the gate's option help; the options are made from this table."""

    name: str
    figure: Figure
    help: str
    kind: str = ABSOLUTE
    unit_override: str | None = None
    scale_override: float | None = None

    @property
    def field_path(self) -> tuple[str, ...]:
        return self.figure.path

    @property
    def upper(self) -> bool:
        """True: measured must be <= budget (a max_ budget); False: measured must be >= budget."""
        return not self.figure.higher_is_better if self.kind == ABSOLUTE else self.kind != SPEEDUP

    @property
    def unit(self) -> str:
        if self.unit_override is not None:
            return self.unit_override
        return {INCREASE_PCT: "%", SPEEDUP: "x"}.get(self.kind, self.figure.unit)

    @property
    def scale(self) -> float:
        """Multiply the row's value by this to get the budget's unit."""
        return self.figure.scale if self.scale_override is None else self.scale_override

    @property
    def against_baseline(self) -> str:
        """"increase_pct": (new - old) / old x 100; "loss": (old - new) x scale; "" for the others."""
        return self.kind if self.kind in (INCREASE_PCT, LOSS) else ""

    @property
    def against_teacher(self) -> bool:
        """measured = the teacher row's value / this row's (a speed-up, same run)."""
        return self.kind == SPEEDUP


def _budgets(*specs: tuple[Any, ...]) -> dict[str, BudgetSpec]:
    """The table below: (name, figure's name, help[, kind[, unit, scale where the budget reads it otherwise]])."""
    return {spec[0]: BudgetSpec(spec[0], FIGURES[spec[1]], *spec[2:]) for spec in specs}


BUDGET_SPECS: dict[str, BudgetSpec] = _budgets(
    ("max_accuracy_drop", "accuracy_drop", "Max accuracy drop against the teacher, points."),
    ("min_accuracy", "accuracy", "Min accuracy, percent."),
    ("min_teacher_agreement", "teacher_agreement", "Min top-1 agreement with the teacher, percent."),
    ("min_teacher_cosine", "teacher_cosine", "Min mean cosine of the outputs with the teacher's (-1 to 1): the "
     "budget for embedding encoders."),
    ("min_neighbour_accuracy", "neighbour_accuracy", "Min 1-nearest-neighbour accuracy of an embedding encoder on "
     "labelled eval samples, percent."),
    ("max_p50_ms", "p50_ms", "Max median latency at batch 1, ms."),
    ("max_p90_ms", "p90_ms", "Max p90 latency at batch 1, ms."),
    ("max_p95_ms", "p95_ms", "Max p95 latency at batch 1, ms."),
    ("max_p99_ms", "p99_ms", "Max p99 latency at batch 1, ms."),
    ("min_throughput_per_s", "throughput_per_s", "Min throughput, samples per second."),
    ("max_size_mb", "size_bytes", "Max artifact size on disk, MB (10^6 bytes).", ABSOLUTE, "MB", 1e-6),
    ("max_p50_ms_real_lengths", "p50_ms_real_lengths", "Max median latency at batch 1 with each eval text at its "
     "own token length (token models), ms."),
    ("max_peak_rss_mb", "peak_rss_bytes", "Max peak resident memory of the process running the artifact, MB "
     "(10^6 bytes; measured where each artifact runs in a process of its own).", ABSOLUTE, "MB", 1e-6),
    ("max_p50_increase_pct", "p50_ms", "Max p50 increase over the baseline row, percent.", INCREASE_PCT),
    ("max_p95_increase_pct", "p95_ms", "Max p95 increase over the baseline row, percent.", INCREASE_PCT),
    ("max_size_increase_pct", "size_bytes", "Max size increase over the baseline row, percent.", INCREASE_PCT),
    ("max_accuracy_loss_pts", "accuracy", "Max accuracy loss against the baseline row, points.", LOSS, "pts"),
    ("max_teacher_cosine_loss", "teacher_cosine", "Max loss of cosine to the teacher against the baseline row "
     "(embedding encoders).", LOSS),
    ("min_speedup_vs_teacher", "p50_ms", "Min speed-up of p50 over the teacher measured in the same run (e.g. 3 = "
     "three times as fast).", SPEEDUP),
)
