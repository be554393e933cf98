"""The recommended artifact per target: what a user should ship, chosen from the measured rows.

For each target, the fastest measured student row (p50 at batch 1) that meets the run's budgets (the recipe's
[budgets], every check passing on that target) or, where the recipe set none, the fidelity threshold
(edgekd.measure.quality.COLLAPSE_*). A row flagged `quality-collapse` is never recommended, budgets or not.
The entry says by how much it beats the teacher and the fp32 student on the same target, and what it costs.

Token models are ranked at the eval texts' real lengths (`p50_ms_real_lengths`: what an app sends) where every
row was timed so: runtimes rank differently there than at the padded export length (OpenVINO's int8 IR, fastest
at 128 tokens, is the slowest on mixed short lengths on some hosts). The fastest at the padded length, when it is
another row, is named beside it (`at_padded_length`) for apps that send full-length inputs.
"""

from __future__ import annotations

from typing import Any

from edgekd.gate import PASS, evaluate
from edgekd.measure.quality import metric_drop, report_metric
from edgekd.runtimes import format_of

COLLAPSE = "quality-collapse"


REAL_LENGTHS, PADDED = "real-lengths", "padded-length"
TIE = 1.05  # a runner-up within 5% is named as a tie: p50 moves more than that between runs (figures.py allows 10%)


def _p50(row: dict[str, Any], basis: str = PADDED) -> float:
    if basis == REAL_LENGTHS:
        return float(row["p50_ms_real_lengths"])
    return float(row["latency_ms"]["p50"])


def _basis(rows: list[dict[str, Any]]) -> str:
    """Real lengths where every row (students, teacher) was timed at them, else the padded length."""
    if rows and all(r.get("p50_ms_real_lengths") is not None for r in rows):
        return REAL_LENGTHS
    return PADDED


def _speedups(best: dict[str, Any], teacher: dict[str, Any] | None, fp32: dict[str, Any] | None,
              basis: str) -> dict[str, Any]:  # fmt: skip
    entry: dict[str, Any] = {}
    if teacher:
        entry.update(teacher_artifact=f"{teacher['artifact']} on {teacher.get('target', 'host')}",
                     speedup_vs_teacher=round(_p50(teacher, basis) / _p50(best, basis), 3))  # fmt: skip
    if fp32:
        entry.update(fp32_student_artifact=f"{fp32['artifact']} on {fp32.get('target', 'host')}",
                     speedup_vs_fp32_student=round(_p50(fp32, basis) / _p50(best, basis), 3))  # fmt: skip
    return entry


def _fp32_student(rows: list[dict[str, Any]], target: str, everywhere: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fp32 student on `target` in a portable file (ONNX or ORT format, what the bundle carries), else the
    PyTorch student."""
    same = [r for r in rows if r["precision"] == "fp32" and format_of(r["format"]).in_bundle]
    if same:
        return same[0]
    return next((r for r in everywhere if r["artifact"] == "student" and r["format"] == "pytorch"), None)


def _teacher(everywhere: list[dict[str, Any]], target: str) -> dict[str, Any] | None:
    teachers = [r for r in everywhere if r.get("role") == "teacher"]
    return next((r for r in teachers if r.get("target", "host") == target), teachers[0] if teachers else None)


def _passing(report: dict[str, Any], budgets: dict[str, float], target: str) -> set[str] | None:
    """Artifacts on `target` whose every budget check passes; None when the run has no budgets."""
    if not budgets:
        return None
    _, checks = evaluate(report, budgets, [], target)
    failing = {c.artifact for c in checks if c.verdict != PASS}
    return {c.artifact for c in checks} - failing


def recommendations(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per target with measured student rows: the recommended artifact, or why there is none."""
    metric = report_metric(report)
    budgets = (report.get("verdicts") or {}).get("budgets", {})
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    targets = list(dict.fromkeys(r.get("target", "host") for r in ok if r.get("role") == "student"))
    result = []
    for target in targets:
        rows = [r for r in ok if r.get("target", "host") == target and r.get("role") == "student"]
        passing = _passing(report, budgets, target)
        eligible = [r for r in rows if not any(f["code"] == COLLAPSE for f in r.get("flags", []))
                    and (passing is None or r["artifact"] in passing)]  # fmt: skip
        basis = "budgets" if budgets else "fidelity"
        if not eligible:
            why = ("no student row meets the recipe's budgets" if budgets else
                   "every student row fell below the fidelity threshold")  # fmt: skip
            result.append({"target": target, "artifact": None, "basis": basis, "reason": why})
            continue
        teacher, fp32 = _teacher(ok, target), _fp32_student(rows, target, ok)
        latency = _basis([*eligible, *[r for r in (teacher, fp32) if r]])
        ranked = sorted(eligible, key=lambda r: _p50(r, latency))
        best = ranked[0]
        entry: dict[str, Any] = {"target": target, "artifact": best["artifact"], "basis": basis,
                                 "latency_basis": latency, "p50_ms": _p50(best),
                                 "drop_points": metric_drop(best, metric),
                                 "student_parity": best.get("student_parity")}  # fmt: skip
        if latency == REAL_LENGTHS:
            entry["p50_ms_real_lengths"] = _p50(best, REAL_LENGTHS)
            entry["lengths"] = best["latency_real_lengths_ms"]["lengths"]
        entry.update(_speedups(best, teacher, fp32, latency))
        if best.get("proxy"):
            entry["proxy"] = best["proxy"]
        if len(ranked) > 1:  # how close the next row came: within the timing noise, the order may swap between runs
            entry["runner_up"] = {"artifact": ranked[1]["artifact"],
                                  "slower_by": round(_p50(ranked[1], latency) / _p50(best, latency), 3)}  # fmt: skip
        padded_best = min(eligible, key=_p50)
        if latency == REAL_LENGTHS and padded_best is not best:
            entry["at_padded_length"] = {"artifact": padded_best["artifact"], "p50_ms": _p50(padded_best),
                                         **_speedups(padded_best, teacher, fp32, PADDED)}  # fmt: skip
        result.append(entry)
    return result


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per target, for the terminal summary and report.md / report.html."""
    lines = []
    for entry in report.get("recommendations", []):
        if entry["artifact"] is None:
            lines.append(f"recommended on {entry['target']}: none ({entry['reason']})")
            continue
        real = entry.get("latency_basis") == REAL_LENGTHS
        parts = [f"p50 {entry['p50_ms_real_lengths']:.3f} ms at real lengths (median {entry['lengths']['p50']:g} "
                 f"tokens), {entry['p50_ms']:.3f} ms at {entry['lengths']['padded_to']}" if real else
                 f"p50 {entry['p50_ms']:.3f} ms"]  # fmt: skip
        parts += _speedup_parts(entry)
        if entry.get("drop_points") is not None:
            parts.append(f"drop {entry['drop_points']:+.2f} pts vs the teacher")
        why = "fastest meeting the budgets" if entry["basis"] == "budgets" else "fastest above the fidelity threshold"
        where = " at the eval texts' real lengths" if real else ""
        runner_up = entry.get("runner_up")
        if runner_up and runner_up["slower_by"] < TIE:
            parts.append(f"{runner_up['artifact']} only {runner_up['slower_by']:.2f}x slower: a tie within timing "
                         "noise, either may come first in another run")  # fmt: skip
        lines.append(f"recommended on {entry['target']}: {entry['artifact']} ({why}{where}; {', '.join(parts)})")
        padded = entry.get("at_padded_length")
        if padded:
            figures = ", ".join([f"p50 {padded['p50_ms']:.3f} ms", *_speedup_parts(padded)])
            lines.append(f"recommended on {entry['target']} for inputs padded to {entry['lengths']['padded_to']} "
                         f"tokens: {padded['artifact']} ({figures})")
    return lines


def _speedup_parts(entry: dict[str, Any]) -> list[str]:
    parts = []
    if "speedup_vs_teacher" in entry:
        parts.append(f"{entry['speedup_vs_teacher']:.2f}x the teacher")
    if "speedup_vs_fp32_student" in entry:
        parts.append(f"{entry['speedup_vs_fp32_student']:.2f}x the fp32 student ({entry['fp32_student_artifact']})")
    return parts
