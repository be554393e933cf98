"""The one table of a row's figures: name, where a row holds it, unit, which way is better, the column heading.

The report's measured table (`report.cells`), `edgekd report --compare` (`report.compare`) and the gate's
budgets (`edgekd.budgets`, from which `edgekd gate`'s CLI options are generated) all name figures from here, so a
figure is added, renamed or re-scaled in one place. Rows are read as the report's JSON holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

LOWER, HIGHER = False, True  # which way a figure is better


@dataclass(frozen=True)
class Figure:
    name: str  # as `report --compare` and the gate's budgets call it
    read: tuple[str, ...] | Callable[[Mapping[str, Any]], float | None]  # a path into the row, or a function
    unit: str  # the unit of value x scale
    higher_is_better: bool
    label: str = ""  # the heading of its column in the report's tables
    scale: float = 1.0  # the row stores value; value x scale is in `unit` (fractions -> percent)
    tolerance: float = 0.0  # a worse change within this fraction of the old value is no regression (compare)
    fmt: str = ""  # its cell in the report's tables: a format spec for the stored value

    @property
    def path(self) -> tuple[str, ...]:
        if callable(self.read):
            raise TypeError(f"figure '{self.name}' is computed from a row, it has no path")
        return self.read

    def value(self, row: Mapping[str, Any]) -> float | None:
        """The figure in the row's own terms (before `scale`), or None where the row did not record it."""
        return self.read(row) if callable(self.read) else row_value(row, self.read)


def row_value(row: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    """The number at `path` in a row (e.g. ("latency_ms", "p95")), or None where this report did not record it."""
    value: Any = row
    for part in path:
        if not isinstance(value, Mapping) or value.get(part) is None:
            return None
        value = value[part]
    return float(value)


def _cosine_drop(row: Mapping[str, Any]) -> float | None:
    """(1 - cosine to the teacher) x 100: an embedding row's drop in points, as accuracy_drop is a classifier's."""
    cosine = row_value(row, ("fidelity", "mean_cosine"))
    return None if cosine is None else round((1.0 - cosine) * 100, 4)


def _spread(row: Mapping[str, Any]) -> float | None:
    """The robust spread of the timing rounds' medians, the machine's shared drift divided out where it could be
    (the spread that decides `noisy`; reports before 1.3: std / mean)."""
    latency = row.get("latency_ms") or {}
    for key in ("own_round_spread", "round_spread", "cv"):
        if key in latency:
            return row_value(latency, (key,))
    return None


FIGURES: dict[str, Figure] = {
    figure.name: figure
    for figure in (
        Figure("size_bytes", ("size_bytes",), "B", LOWER, "size"),  # bytes on disk are exact
        Figure("params", ("params",), "", LOWER, "params"),
        Figure("flops", ("flops",), "MFLOPs", LOWER, "MFLOPs", 1e-6, fmt=".3f"),
        Figure("accuracy", ("accuracy",), "%", HIGHER, "accuracy", 100.0, fmt=".2%"),  # exact on the same split
        Figure("accuracy_drop", ("accuracy_drop",), "pts", LOWER, "drop (pts)", fmt="+.2f"),
        Figure("teacher_agreement", ("teacher_agreement",), "%", HIGHER, "agree", 100.0, fmt=".1%"),
        # embeddings' metric; recomputed from float outputs, so the last digits may move between runs
        Figure("teacher_cosine", ("fidelity", "mean_cosine"), "", HIGHER, "cosine", tolerance=1e-4, fmt=".4f"),
        Figure("cosine_drop", _cosine_drop, "pts", LOWER, "drop (pts)", fmt="+.2f"),
        Figure("neighbour_accuracy", ("neighbour_accuracy",), "%", HIGHER, "1-NN acc", 100.0, fmt=".1%"),
        Figure("mean_kl", ("fidelity", "mean_kl"), "nats", LOWER, "KL", fmt=".4f"),
        Figure("p50_ms", ("latency_ms", "p50"), "ms", LOWER, "p50 ms", tolerance=0.10),  # run-to-run timing noise
        Figure("p50_ms_real_lengths", ("p50_ms_real_lengths",), "ms", LOWER, tolerance=0.10),  # token models only
        Figure("p90_ms", ("latency_ms", "p90"), "ms", LOWER, "p90 ms", tolerance=0.15, fmt=".3f"),
        Figure("p95_ms", ("latency_ms", "p95"), "ms", LOWER, "p95 ms", fmt=".3f"),
        Figure("p99_ms", ("latency_ms", "p99"), "ms", LOWER, "p99 ms", tolerance=0.25, fmt=".3f"),  # tails: noisier
        Figure("spread", _spread, "", LOWER, "spread", fmt=".0%"),
        Figure("throughput_per_s", ("throughput_per_s",), "/s", HIGHER, "thru/s", tolerance=0.10),
        Figure("peak_rss_bytes", ("memory", "peak_rss_bytes"), "B", LOWER, "peak RSS", tolerance=0.10),
    )
}
