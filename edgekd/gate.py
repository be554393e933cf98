"""The CI gate: budgets (data, not code) checked against a report's rows → pass / fail / inconclusive.

Budgets are absolute (p95 <= 5 ms), relative to the teacher measured in the same run (accuracy drop <= 2
points, p50 at least 3x faster), or relative to a baseline (p50 at most 10% slower than main's: a baseline report,
or `edgekd.measure.rebench` measuring both again in one process). Latency verdicts come from 95% intervals: pass when
the whole interval is within the budget, fail when the whole interval breaks it, inconclusive in between — each
with its evidence. Reports from before intervals existed fall back to the figure and the noisy row's std.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.budgets import BUDGET_SPECS, BudgetSpec
from edgekd.errors import (
    EXIT_GATE_FAIL,
    EXIT_GATE_INCONCLUSIVE,
    EXIT_GATE_PASS,
    EdgekdError,
    RecipeError,
    ReportError,
    did_you_mean,
    printable,
)
from edgekd.measure.quality import TEACHER_COSINE, report_metric
from edgekd.report.figures import row_value

# budgets on class outputs: they do not apply to an embedding encoder
CLASS_BUDGETS = ("max_accuracy_drop", "min_accuracy", "min_teacher_agreement", "max_accuracy_loss_pts")


LATENCY = "latency_ms"

PASS, FAIL, INCONCLUSIVE, SKIPPED = "pass", "fail", "inconclusive", "skipped"
EXIT_CODES = {PASS: EXIT_GATE_PASS, FAIL: EXIT_GATE_FAIL, INCONCLUSIVE: EXIT_GATE_INCONCLUSIVE}


@dataclass(frozen=True)
class Check:
    artifact: str
    budget: str
    limit: float | None
    measured: float | None
    verdict: str
    detail: str
    interval: tuple[float, float] | None = None  # the measured value's 95% interval, where the verdict used one

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["interval"] = list(self.interval) if self.interval else None
        return out


def overall_verdict(checks: list[Check]) -> str:
    """fail if any check fails, else inconclusive if any is (or nothing was measured), else pass."""
    verdicts = {c.verdict for c in checks}
    if not verdicts or verdicts == {SKIPPED}:
        return INCONCLUSIVE  # nothing selected was measured: no pass can be claimed
    return FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS


def exit_code(overall: str, inconclusive_policy: str | None = None) -> int:
    """The gate's exit code; `inconclusive_policy` ("pass" / "fail") says what an inconclusive verdict counts as."""
    if overall == INCONCLUSIVE and inconclusive_policy:
        return EXIT_CODES[inconclusive_policy]
    return EXIT_CODES[overall]


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
            raise RecipeError(f"budgets file '{path}': unknown budget '{printable(key)}'"
                              f"{did_you_mean(key, BUDGET_SPECS)}")  # fmt: skip
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
    baseline: dict[str, Any] | None = None, rebenched: dict[str, list[Check]] | None = None,
) -> tuple[str, list[Check]]:
    """Check every selected row against every budget. `baseline` is the report relative budgets compare with;
    `rebenched` holds, per artifact, the checks of a same-run re-measurement (`edgekd.measure.rebench`) that replace
    the report-to-report comparison of the budgets they cover."""
    if not budgets:
        raise EdgekdError("no budgets given: pass e.g. --max-accuracy-drop 2, --budgets budgets.toml, "
                          "--profile NAME for a profile's default budgets, or declare [budgets] in the recipe")
    relative = [name for name in budgets if BUDGET_SPECS[name].against_baseline]
    if relative and baseline is None and rebenched is None:
        raise EdgekdError(f"budget '{relative[0]}' compares with a baseline: pass --baseline OLD/report.json "
                          "(e.g. the report of the main branch) or --rebench OLD (its bundle, measured again here)")
    baseline_rows = {(r["artifact"], r.get("target", "host")): r for r in (baseline or {}).get("rows", [])}
    machines = machine_difference(report, baseline) if baseline is not None else ""
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
        same_run = {c.budget: c for c in (rebenched or {}).get(name, [])}
        for budget_name, limit in budgets.items():
            spec = BUDGET_SPECS[budget_name]
            if budget_name in same_run:
                checks.append(same_run[budget_name])
            elif spec.against_baseline:
                checks.append(_check_against_baseline(row, old, spec, limit, machines))
            elif spec.against_teacher:
                checks.append(_check_against_teacher(row, teacher_row(report, row), spec, limit))
            else:
                checks.append(_check_absolute(row, spec, limit, embeddings))
    if not rows:
        wanted = (", ".join(patterns) or "student rows") + (f" on {target}" if target else "")
        return INCONCLUSIVE, [Check(wanted, "rows", None, None, INCONCLUSIVE, "no row in the report matches")]
    return overall_verdict(checks), checks


def machine_difference(report: dict[str, Any], baseline: dict[str, Any]) -> str:
    """A sentence when the baseline was measured on another machine (CPU, cores or threads differ), else ""."""
    def machine(r: dict[str, Any]) -> tuple[Any, ...]:
        run = r.get("run", {})
        return run.get("host", {}).get("cpu"), run.get("host", {}).get("cores"), run.get("threads")

    new, old = machine(report), machine(baseline)
    if new == old:
        return ""
    return (f"; the baseline was measured on another machine ({old[0]}, {old[1]} cores, {old[2]} threads; now "
            f"{new[0]}, {new[1]} cores, {new[2]} threads): a cross-machine comparison; --rebench compares in one run")


def teacher_row(report: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher's measured row on the row's target, else the teacher's row on the host."""
    teachers = [r for r in report["rows"] if r.get("role") == "teacher" and r.get("status") == "ok"]
    same = [r for r in teachers if r.get("target", "host") == row.get("target", "host")]
    return (same or teachers or [None])[0]


def latency_interval(row: dict[str, Any] | None, spec: BudgetSpec) -> tuple[float, float] | None:
    """The row's 95% interval of the budget's latency percentile (reports before 1.3 have none)."""
    if row is None or spec.field_path[0] != LATENCY:
        return None
    ci = (row.get(LATENCY) or {}).get(f"{spec.field_path[1]}_ci95")
    return (float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None


MORE_TIMING = "measure longer (measure.preset = \"thorough\") or on a quieter machine"


def interval_verdict(artifact: str, spec: BudgetSpec, limit: float, measured: float,
                     interval: tuple[float, float], what: str, advice: str = MORE_TIMING) -> Check:  # fmt: skip
    """pass when the whole 95% interval keeps the budget, fail when the whole interval breaks it, else
    inconclusive; the detail gives the figure, its interval and the budget."""
    low, high = min(interval[0], measured), max(interval[1], measured)  # the figure lies in its own interval
    interval = (low, high)
    unit = f" {spec.unit}" if spec.unit else ""
    sign = "<=" if spec.upper else ">="
    passed = high <= limit if spec.upper else low >= limit
    failed = low > limit if spec.upper else high < limit
    evidence = f"{what} {measured:.4g}{unit} (95% interval {low:.4g} to {high:.4g}{unit})"
    if passed:
        return Check(artifact, spec.name, limit, measured, PASS, f"{evidence} {sign} {limit:.4g}{unit}", interval)
    if failed:
        return Check(artifact, spec.name, limit, measured, FAIL,
                     f"{evidence}: the whole interval breaks {sign} {limit:.4g}{unit}", interval)
    return Check(artifact, spec.name, limit, measured, INCONCLUSIVE,
                 f"{evidence}: the interval straddles the budget {sign} {limit:.4g}{unit}; {advice}", interval)


def _check_absolute(row: dict[str, Any], spec: BudgetSpec, limit: float, embeddings: bool) -> Check:
    name = row["artifact"]
    raw = row_value(row, spec.field_path)
    if raw is None:
        why = ("this report is of an embedding encoder, judged by cosine to the teacher: it has no accuracy; use "
               "min_teacher_cosine" if embeddings and spec.name in CLASS_BUDGETS else "not measured in this report")
        return Check(name, spec.name, limit, None, INCONCLUSIVE, why)
    interval = latency_interval(row, spec)
    if interval is not None:
        return interval_verdict(name, spec, limit, raw * spec.scale, interval, spec.field_path[1])
    return _verdict(name, spec, limit, raw * spec.scale, _latency_noise(spec, row) * spec.scale)


def _check_against_teacher(row: dict[str, Any], teacher: dict[str, Any] | None, spec: BudgetSpec,
                           limit: float) -> Check:  # fmt: skip
    """Speed-up over the teacher measured in the same run: teacher p50 / row p50, its interval from both."""
    name = row["artifact"]
    new, old = row_value(row, spec.field_path), row_value(teacher or {}, spec.field_path)
    if teacher is None or not new or not old:
        return Check(name, spec.name, limit, None, INCONCLUSIVE, "the teacher's latency was not measured in this run")
    row_ci, teacher_ci = latency_interval(row, spec), latency_interval(teacher, spec)
    interval = ((teacher_ci[0] / row_ci[1], teacher_ci[1] / row_ci[0]) if row_ci and teacher_ci and row_ci[0] > 0
                else (old / new, old / new))  # fmt: skip
    return interval_verdict(name, spec, limit, old / new, interval,
                            f"speed-up over the teacher {teacher['artifact']} (p50 {old:.4g} / {new:.4g} ms):")


def ratio_interval(new: float, new_ci: tuple[float, float], old: float,
                   old_ci: tuple[float, float]) -> tuple[float, float]:  # fmt: skip
    """95% interval of new / old from two independent intervals: their relative (log) half-widths add in
    quadrature, as the errors of independent measurements do."""
    below = math.hypot(math.log(new / new_ci[0]), math.log(old_ci[1] / old))
    above = math.hypot(math.log(new_ci[1] / new), math.log(old / old_ci[0]))
    return new / old * math.exp(-below), new / old * math.exp(above)


def _latency_noise(spec: BudgetSpec, *rows: dict[str, Any] | None) -> float:
    """The largest latency standard deviation (ms) among `rows` flagged noisy, for latency budgets; else 0
    (reports before 1.3, which have no intervals)."""
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
                            limit: float, machines: str = "") -> Check:  # fmt: skip
    """A relative budget: this row against the baseline's row of the same artifact and target."""
    name = row["artifact"]
    if old is None or old.get("status") != "ok":
        why = "no such row in the baseline report" if old is None else f"baseline row is {old['status']}"
        return Check(name, spec.name, limit, None, INCONCLUSIVE, f"{why}: nothing to compare with")
    new_value, old_value = row_value(row, spec.field_path), row_value(old, spec.field_path)
    if new_value is None or old_value is None:
        return Check(name, spec.name, limit, None, INCONCLUSIVE, "not measured in both reports")
    context = f" (baseline {old_value:.4g}, now {new_value:.4g}){machines}"
    if spec.against_baseline != "increase_pct":
        return _verdict(name, spec, limit, (old_value - new_value) * spec.scale, 0.0, context)
    if old_value <= 0:
        return Check(name, spec.name, limit, None, INCONCLUSIVE, "baseline figure is 0: no relative change")
    measured = (new_value - old_value) / old_value * 100
    new_ci, old_ci = latency_interval(row, spec), latency_interval(old, spec)
    if new_ci and old_ci and min(new_ci[0], old_ci[0]) > 0:
        low, high = ratio_interval(new_value, new_ci, old_value, old_ci)
        return interval_verdict(name, spec, limit, measured, ((low - 1) * 100, (high - 1) * 100),
                                f"increase over the baseline{context}:")
    # the noise of a latency figure, in percent of the baseline: the spread of either noisy row
    noise = _latency_noise(spec, row, old) / old_value * 100
    return _verdict(name, spec, limit, measured, noise, context)
