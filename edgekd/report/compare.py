"""Two reports side by side: the delta of every figure, row by row (matched by artifact and target).

A delta is a regression when it is worse than its tolerance: timing figures get a relative tolerance because
two runs on a machine are never timed alike; accuracy, agreement and size get none, because they are exact on
the same eval split. The figures, their direction and tolerances are `edgekd.report.figures`' table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgekd.report.figures import FIGURES, Figure

COMPARE_METRICS: tuple[Figure, ...] = tuple(FIGURES[name] for name in (
    "accuracy", "teacher_agreement", "teacher_cosine", "p50_ms", "p50_ms_real_lengths", "p90_ms", "p99_ms",
    "throughput_per_s", "size_bytes", "peak_rss_bytes"))  # fmt: skip

SAME, BETTER, WORSE, REGRESSION = "same", "better", "worse (within tolerance)", "regression"


@dataclass(frozen=True)
class Delta:
    metric: str
    old: float | None
    new: float | None
    change: float | None  # new - old, in display units
    relative: float | None  # (new - old) / old
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RowComparison:
    artifact: str
    target: str
    presence: str  # "both", "only-new", "only-old", or "not-measured" (a status other than ok on either side)
    detail: str = ""
    deltas: list[Delta] = field(default_factory=list)

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.verdict == REGRESSION]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "target": self.target, "presence": self.presence, "detail": self.detail,
                "deltas": [d.to_dict() for d in self.deltas]}  # fmt: skip


def compare_metric(metric: Figure, old_row: dict[str, Any], new_row: dict[str, Any]) -> Delta | None:
    old, new = metric.value(old_row), metric.value(new_row)
    if old is None or new is None:  # e.g. a figure an older report version did not record
        return None
    old_display, new_display = old * metric.scale, new * metric.scale
    change = new_display - old_display
    relative = change / old_display if old_display else None
    worse = change < 0 if metric.higher_is_better else change > 0
    if change == 0:
        verdict = SAME
    elif not worse:
        verdict = BETTER
    elif relative is not None and abs(relative) <= metric.tolerance:
        verdict = WORSE
    else:
        verdict = REGRESSION
    return Delta(metric.name, old_display, new_display, change, relative, verdict)


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return row["artifact"], row.get("target", "host")


def compare_reports(new: dict[str, Any], old: dict[str, Any]) -> list[RowComparison]:
    """Measured rows of `new` against `old`, in `new`'s order, then rows only `old` has. Estimates are left out:
    comparing two models of a target says nothing about either run."""
    new_rows = {_key(r): r for r in new["rows"]}
    old_rows = {_key(r): r for r in old["rows"]}
    result = []
    for key, new_row in new_rows.items():
        old_row = old_rows.get(key)
        if old_row is None:
            result.append(RowComparison(*key, "only-new", "not in the old report"))
        elif new_row["status"] != "ok" or old_row["status"] != "ok":
            detail = f"old {old_row['status']}, new {new_row['status']}"
            if old_row["status"] == "ok":
                detail += f": {new_row.get('reason', '')}"
            comparison = RowComparison(*key, "not-measured", detail)
            if old_row["status"] == "ok":  # it was measured before and is not now: that is a regression
                comparison.deltas.append(Delta("status", None, None, None, None, REGRESSION))
            result.append(comparison)
        else:
            deltas = [d for m in COMPARE_METRICS if (d := compare_metric(m, old_row, new_row)) is not None]
            result.append(RowComparison(*key, "both", "", deltas))
    result += [RowComparison(*key, "only-old", "not in the new report") for key in old_rows if key not in new_rows]
    return result


def summary(comparisons: list[RowComparison]) -> str:
    regressions = sum(len(c.regressions) for c in comparisons)
    changed = sum(1 for c in comparisons for d in c.deltas if d.verdict != SAME)
    unmatched = sum(1 for c in comparisons if c.presence in ("only-new", "only-old"))
    if not changed and not unmatched and all(c.presence == "both" for c in comparisons):
        return f"no change: {len(comparisons)} rows, every figure identical"
    return (f"{regressions} regression(s), {changed} changed figure(s), {unmatched} unmatched row(s) "
            f"across {len(comparisons)} rows")  # fmt: skip


def delta_text(delta: Delta) -> str:
    if delta.metric == "status":
        return "no longer measured"
    if delta.change is None:
        return "not comparable"
    relative = "" if delta.relative is None else f" ({delta.relative:+.1%})"
    return f"{delta.old:.4g} -> {delta.new:.4g}{relative}"


def compare_lines(comparisons: list[RowComparison]) -> list[list[str]]:
    """One line per changed figure (or per unmatched row): artifact, target, metric, change, verdict."""
    lines = []
    for c in comparisons:
        if c.presence != "both" and not c.deltas:
            lines.append([c.artifact, c.target, "row", c.detail, c.presence])
        for d in c.deltas:
            if d.verdict != SAME:
                lines.append([c.artifact, c.target, d.metric, delta_text(d), d.verdict.upper() if d.verdict ==
                              REGRESSION else d.verdict])  # fmt: skip
    return lines


COMPARE_COLUMNS = ("artifact", "target", "figure", "old -> new", "verdict")


def render_compare_markdown(new: dict[str, Any], old: dict[str, Any], comparisons: list[RowComparison]) -> str:
    lines = [f"# edgekd compare: {new['run']['name']} ({new['run']['created_at']}) against "
             f"{old['run']['name']} ({old['run']['created_at']})", "", summary(comparisons), ""]  # fmt: skip
    changed = compare_lines(comparisons)
    if changed:
        lines += ["| " + " | ".join(COMPARE_COLUMNS) + " |", "|" + "---|" * len(COMPARE_COLUMNS)]
        for cells in changed:
            if cells[-1] == REGRESSION.upper():
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    tolerances = ", ".join(f"{m.name} {m.tolerance:.0%}" for m in COMPARE_METRICS if m.tolerance)
    lines += ["", f"Tolerances before a worse figure is a regression: {tolerances}; accuracy, agreement and size "
              "none."]  # fmt: skip
    return "\n".join(lines) + "\n"
