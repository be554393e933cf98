"""The CI gate: budgets (data, not code) checked against a report's rows → pass / fail / inconclusive."""

from __future__ import annotations

import dataclasses
import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError, RecipeError, did_you_mean
from edgekd.measure.quality import TEACHER_COSINE, report_metric
from edgekd.report import row_value

CLASS_BUDGETS = ("max_accuracy_drop", "min_accuracy", "min_teacher_agreement")  # need class outputs


@dataclass(frozen=True)
class BudgetSpec:
    """One kind of budget: where the measured value lives in a row and which side is bad."""

    name: str
    field_path: tuple[str, ...]
    upper: bool  # True: measured must be <= budget; False: measured must be >= budget
    unit: str
    scale: float = 1.0  # multiply the row's value by this to get the budget's unit


BUDGET_SPECS: dict[str, BudgetSpec] = {
    spec.name: spec
    for spec in (
        BudgetSpec("max_accuracy_drop", ("accuracy_drop",), True, "pts"),
        BudgetSpec("min_accuracy", ("accuracy",), False, "%", 100.0),
        BudgetSpec("min_teacher_agreement", ("teacher_agreement",), False, "%", 100.0),
        BudgetSpec("min_teacher_cosine", ("fidelity", "mean_cosine"), False, ""),  # embedding encoders' metric
        BudgetSpec("max_p50_ms", ("latency_ms", "p50"), True, "ms"),
        BudgetSpec("max_p90_ms", ("latency_ms", "p90"), True, "ms"),
        BudgetSpec("max_p95_ms", ("latency_ms", "p95"), True, "ms"),
        BudgetSpec("max_p99_ms", ("latency_ms", "p99"), True, "ms"),
        BudgetSpec("min_throughput_per_s", ("throughput_per_s",), False, "/s"),
        BudgetSpec("max_size_mb", ("size_bytes",), True, "MB", 1e-6),
    )
}

PASS, FAIL, INCONCLUSIVE, SKIPPED = "pass", "fail", "inconclusive", "skipped"
EXIT_CODES = {PASS: 0, FAIL: 1, INCONCLUSIVE: 2}


@dataclass(frozen=True)
class Check:
    artifact: str
    budget: str
    limit: float | None
    measured: float | None
    verdict: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_budgets(path: Path) -> dict[str, float]:
    """Read budgets from TOML: top-level keys or a [budgets] table, named as the CLI flags are."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"budgets file '{path}' does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"budgets file '{path}' is not valid TOML: {exc}") from None
    data = data.get("budgets", data)
    budgets = {}
    for key, value in data.items():
        if key not in BUDGET_SPECS:
            raise RecipeError(f"budgets file '{path}': unknown budget '{key}'{did_you_mean(key, BUDGET_SPECS)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"budgets file '{path}': '{key}' must be a number, got {value!r}")
        budgets[key] = float(value)
    return budgets


def select_rows(report: dict[str, Any], patterns: list[str], target: str | None = None) -> list[dict[str, Any]]:
    """Rows whose artifact name matches any glob in `patterns` (by default every student row), on `target` only
    when one is named."""
    rows = [row for row in report["rows"] if target is None or row.get("target", "host") == target]
    if not patterns:
        return [row for row in rows if row.get("role", "student") != "teacher"]
    return [row for row in rows if any(fnmatch.fnmatchcase(row["artifact"], p) for p in patterns)]


def profile_budgets(profile: Any, metric: str = "accuracy") -> dict[str, float]:
    """A hardware profile's default budgets ([budgets] in its TOML; 0 means none). For a report of an embedding
    encoder the accuracy defaults do not apply (it has no classes), so they are left out."""
    budgets = {k: float(v) for k, v in dataclasses.asdict(profile.budgets).items() if v}
    return {k: v for k, v in budgets.items() if metric != TEACHER_COSINE or k not in CLASS_BUDGETS}


def evaluate(
    report: dict[str, Any], budgets: dict[str, float], patterns: list[str], target: str | None = None
) -> tuple[str, list[Check]]:
    if not budgets:
        raise EdgekdError("no budgets given: pass e.g. --max-accuracy-drop 2, --budgets budgets.toml, or "
                          "--profile NAME for a profile's default budgets")  # fmt: skip
    rows = select_rows(report, patterns, target)
    embeddings = report_metric(report) == TEACHER_COSINE
    checks: list[Check] = []
    for row in rows:
        name = row["artifact"]
        if row["status"] == "skipped":
            checks.append(Check(name, "status", None, None, SKIPPED, f"not measured: {row['reason']}"))
            continue
        if row["status"] == "failed":
            checks.append(Check(name, "status", None, None, FAIL, f"failed: {row['reason']}"))
            continue
        for budget_name, limit in budgets.items():
            spec = BUDGET_SPECS[budget_name]
            raw = row_value(row, spec.field_path)
            if raw is None:
                why = ("this report is of an embedding encoder, judged by cosine to the teacher: it has no "
                       "accuracy; use min_teacher_cosine" if embeddings and budget_name in CLASS_BUDGETS
                       else "not measured in this report")  # fmt: skip
                checks.append(Check(name, budget_name, limit, None, INCONCLUSIVE, why))
                continue
            measured = raw * spec.scale
            ok = measured <= limit if spec.upper else measured >= limit
            sign = "<=" if spec.upper else ">="
            detail = f"{measured:.4g} {spec.unit} {'' if ok else 'not '}{sign} {limit:.4g} {spec.unit}"
            checks.append(Check(name, budget_name, limit, measured, PASS if ok else FAIL, detail))
    if not rows:
        wanted = (", ".join(patterns) or "student rows") + (f" on {target}" if target else "")
        return INCONCLUSIVE, [Check(wanted, "rows", None, None, INCONCLUSIVE, "no row in the report matches")]
    verdicts = {c.verdict for c in checks}
    if verdicts == {SKIPPED}:
        return INCONCLUSIVE, checks  # nothing selected was measured: no pass can be claimed
    overall = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS
    return overall, checks
