"""The CI gate: budgets (data, not code) checked against a report's rows → pass / fail / inconclusive.

Budgets are absolute (p95 <= 5 ms), relative to the teacher (accuracy drop <= 2 points), or relative to a
baseline report of the same rows (p50 at most 10% slower than main's). A latency verdict that a noisy row
(spread > 25% of the mean) cannot support, because the budget lies within one standard deviation of the
figure, is inconclusive rather than a false pass or fail.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError, RecipeError, ReportError, did_you_mean
from edgekd.measure.quality import TEACHER_COSINE, report_metric, row_value

# budgets on class outputs: they do not apply to an embedding encoder
CLASS_BUDGETS = ("max_accuracy_drop", "min_accuracy", "min_teacher_agreement", "max_accuracy_loss_pts")


@dataclass(frozen=True)
class BudgetSpec:
    """One kind of budget: where the measured value lives in a row and which side is bad."""

    name: str
    field_path: tuple[str, ...]
    upper: bool  # True: measured must be <= budget; False: measured must be >= budget
    unit: str
    scale: float = 1.0  # multiply the row's value by this to get the budget's unit
    against_baseline: str = ""  # "increase_pct": (new - old) / old x 100; "loss": (old - new) x scale


BUDGET_SPECS: dict[str, BudgetSpec] = {
    spec.name: spec
    for spec in (
        BudgetSpec("max_accuracy_drop", ("accuracy_drop",), True, "pts"),
        BudgetSpec("min_accuracy", ("accuracy",), False, "%", 100.0),
        BudgetSpec("min_teacher_agreement", ("teacher_agreement",), False, "%", 100.0),
        BudgetSpec("min_teacher_cosine", ("fidelity", "mean_cosine"), False, ""),  # embedding encoders' metric
        BudgetSpec("min_neighbour_accuracy", ("neighbour_accuracy",), False, "%", 100.0),  # labelled embeddings
        BudgetSpec("max_p50_ms", ("latency_ms", "p50"), True, "ms"),
        BudgetSpec("max_p90_ms", ("latency_ms", "p90"), True, "ms"),
        BudgetSpec("max_p95_ms", ("latency_ms", "p95"), True, "ms"),
        BudgetSpec("max_p99_ms", ("latency_ms", "p99"), True, "ms"),
        BudgetSpec("min_throughput_per_s", ("throughput_per_s",), False, "/s"),
        BudgetSpec("max_size_mb", ("size_bytes",), True, "MB", 1e-6),
        BudgetSpec("max_p50_increase_pct", ("latency_ms", "p50"), True, "%", against_baseline="increase_pct"),
        BudgetSpec("max_p95_increase_pct", ("latency_ms", "p95"), True, "%", against_baseline="increase_pct"),
        BudgetSpec("max_size_increase_pct", ("size_bytes",), True, "%", against_baseline="increase_pct"),
        BudgetSpec("max_accuracy_loss_pts", ("accuracy",), True, "pts", 100.0, against_baseline="loss"),
        BudgetSpec("max_teacher_cosine_loss", ("fidelity", "mean_cosine"), True, "", against_baseline="loss"),
    )
}
LATENCY = "latency_ms"

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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"budgets file '{path}' is not valid UTF-8 TOML: {exc}") from None
    data = data.get("budgets", data)
    if not isinstance(data, dict):
        raise RecipeError(f"budgets file '{path}': 'budgets' must be a table of budgets (max_accuracy_drop = 2, "
                          f"...), got {data!r}")  # fmt: skip
    budgets = {}
    for key, value in data.items():
        if key not in BUDGET_SPECS:
            raise RecipeError(f"budgets file '{path}': unknown budget '{key}'{did_you_mean(key, BUDGET_SPECS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecipeError(f"budgets file '{path}': '{key}' must be a finite number, got {value!r}")
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


def recipe_budgets(report: dict[str, Any]) -> dict[str, float]:
    """The budgets the run's recipe declared ([budgets]; reports before they existed have none)."""
    declared = report.get("recipe", {}).get("budgets", {})
    if not isinstance(declared, dict):
        raise ReportError(f"the report's recipe budgets are {declared!r}, not a table; the report was edited")
    for key, value in declared.items():  # fail closed: a budget the gate cannot check is never a pass
        if key not in BUDGET_SPECS:
            raise ReportError(f"the report's recipe declares budget '{key}', which this edgekd does not know"
                              f"{did_you_mean(key, BUDGET_SPECS)}; upgrade edgekd or fix the recipe's [budgets]")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ReportError(f"the report's recipe budget '{key}' is {value!r}, not a finite number")
    return {k: float(v) for k, v in declared.items()}


def report_verdicts(report: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe's own budgets checked against the run's rows, for the report itself (None without budgets).
    Budgets relative to a baseline report are left to `edgekd gate --baseline`."""
    budgets = {k: v for k, v in recipe_budgets(report).items() if not BUDGET_SPECS[k].against_baseline}
    if not budgets:
        return None
    overall, checks = evaluate(report, budgets, [])
    return {"verdict": overall, "budgets": budgets, "checks": [c.to_dict() for c in checks]}


def evaluate(
    report: dict[str, Any], budgets: dict[str, float], patterns: list[str], target: str | None = None,
    baseline: dict[str, Any] | None = None,
) -> tuple[str, list[Check]]:
    """Check every selected row against every budget; `baseline` is the report relative budgets compare with."""
    if not budgets:
        raise EdgekdError("no budgets given: pass e.g. --max-accuracy-drop 2, --budgets budgets.toml, "
                          "--profile NAME for a profile's default budgets, or declare [budgets] in the recipe")
    relative = [name for name in budgets if BUDGET_SPECS[name].against_baseline]
    if relative and baseline is None:
        raise EdgekdError(f"budget '{relative[0]}' compares with a baseline report: pass --baseline "
                          "OLD/report.json (e.g. the report of the main branch)")  # fmt: skip
    baseline_rows = {(r["artifact"], r.get("target", "host")): r for r in (baseline or {}).get("rows", [])}
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
        old = baseline_rows.get((name, row.get("target", "host")))
        for budget_name, limit in budgets.items():
            spec = BUDGET_SPECS[budget_name]
            if spec.against_baseline:
                checks.append(_check_against_baseline(row, old, spec, limit))
                continue
            raw = row_value(row, spec.field_path)
            if raw is None:
                why = ("this report is of an embedding encoder, judged by cosine to the teacher: it has no "
                       "accuracy; use min_teacher_cosine" if embeddings and budget_name in CLASS_BUDGETS
                       else "not measured in this report")  # fmt: skip
                checks.append(Check(name, budget_name, limit, None, INCONCLUSIVE, why))
                continue
            measured = raw * spec.scale
            noise = _latency_noise(spec, row) * spec.scale
            checks.append(_verdict(name, spec, limit, measured, noise))
    if not rows:
        wanted = (", ".join(patterns) or "student rows") + (f" on {target}" if target else "")
        return INCONCLUSIVE, [Check(wanted, "rows", None, None, INCONCLUSIVE, "no row in the report matches")]
    verdicts = {c.verdict for c in checks}
    if verdicts == {SKIPPED}:
        return INCONCLUSIVE, checks  # nothing selected was measured: no pass can be claimed
    overall = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS
    return overall, checks


def _latency_noise(spec: BudgetSpec, *rows: dict[str, Any] | None) -> float:
    """The largest latency standard deviation (ms) among `rows` flagged noisy, for latency budgets; else 0."""
    if spec.field_path[0] != LATENCY:
        return 0.0
    noisy = [r for r in rows if r and any(f["code"] == "noisy" for f in r.get("flags", []))]
    return max((row_value(r, (LATENCY, "std")) or 0.0 for r in noisy), default=0.0)


def _verdict(artifact: str, spec: BudgetSpec, limit: float, measured: float, noise: float,
             context: str = "") -> Check:  # fmt: skip
    """pass / fail, or inconclusive when the row is noisy and the limit lies within `noise` of the figure."""
    ok = measured <= limit if spec.upper else measured >= limit
    sign = "<=" if spec.upper else ">="
    unit = f" {spec.unit}" if spec.unit else ""
    detail = f"{measured:.4g}{unit} {'' if ok else 'not '}{sign} {limit:.4g}{unit}{context}"
    if noise and abs(measured - limit) <= noise:
        return Check(artifact, spec.name, limit, measured, INCONCLUSIVE,
                     f"{detail}, but within the noise (latency std {noise:.3g} {spec.unit or 'ms'} on a row flagged "
                     "noisy): re-measure on a quiet machine or with measure.preset = \"thorough\"")  # fmt: skip
    return Check(artifact, spec.name, limit, measured, PASS if ok else FAIL, detail)


def _check_against_baseline(row: dict[str, Any], old: dict[str, Any] | None, spec: BudgetSpec,
                            limit: float) -> Check:  # fmt: skip
    """A relative budget: this row against the baseline's row of the same artifact and target."""
    name = row["artifact"]
    if old is None or old.get("status") != "ok":
        why = "no such row in the baseline report" if old is None else f"baseline row is {old['status']}"
        return Check(name, spec.name, limit, None, INCONCLUSIVE, f"{why}: nothing to compare with")
    new_value, old_value = row_value(row, spec.field_path), row_value(old, spec.field_path)
    if new_value is None or old_value is None:
        return Check(name, spec.name, limit, None, INCONCLUSIVE, "not measured in both reports")
    if spec.against_baseline == "increase_pct":
        if old_value <= 0:
            return Check(name, spec.name, limit, None, INCONCLUSIVE, "baseline figure is 0: no relative change")
        measured = (new_value - old_value) / old_value * 100
        # the noise of a latency figure, in percent of the baseline: the spread of either noisy row
        noise = _latency_noise(spec, row, old) / old_value * 100
    else:
        measured, noise = (old_value - new_value) * spec.scale, 0.0
    context = f" (baseline {old_value:.4g}, now {new_value:.4g})"
    return _verdict(name, spec, limit, measured, noise, context)
