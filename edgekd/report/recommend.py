"""The recommended artifact per target: what a user should ship, chosen from the measured rows.

For each target, the fastest measured student row (p50 at batch 1) that meets the run's budgets (the recipe's
[budgets], every check passing on that target) or, where the recipe set none, the fidelity threshold
(edgekd.measure.quality.COLLAPSE_*). A row flagged `quality-collapse` is never recommended, budgets or not.
The entry says by how much it beats the teacher and the fp32 student on the same target, and what it costs.
"""

from __future__ import annotations

from typing import Any

from edgekd.gate import PASS, evaluate
from edgekd.measure.quality import metric_drop, report_metric
from edgekd.runtimes import format_of

COLLAPSE = "quality-collapse"


def _p50(row: dict[str, Any]) -> float:
    return float(row["latency_ms"]["p50"])


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
        best = min(eligible, key=_p50)
        teacher, fp32 = _teacher(ok, target), _fp32_student(rows, target, ok)
        entry: dict[str, Any] = {"target": target, "artifact": best["artifact"], "basis": basis,
                                 "p50_ms": _p50(best), "drop_points": metric_drop(best, metric),
                                 "student_parity": best.get("student_parity")}  # fmt: skip
        if teacher:
            entry.update(teacher_artifact=f"{teacher['artifact']} on {teacher.get('target', 'host')}",
                         speedup_vs_teacher=round(_p50(teacher) / _p50(best), 3))  # fmt: skip
        if fp32:
            entry.update(fp32_student_artifact=f"{fp32['artifact']} on {fp32.get('target', 'host')}",
                         speedup_vs_fp32_student=round(_p50(fp32) / _p50(best), 3))  # fmt: skip
        if best.get("proxy"):
            entry["proxy"] = best["proxy"]
        result.append(entry)
    return result


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per target, for the terminal summary and report.md / report.html."""
    lines = []
    for entry in report.get("recommendations", []):
        if entry["artifact"] is None:
            lines.append(f"recommended on {entry['target']}: none ({entry['reason']})")
            continue
        parts = [f"p50 {entry['p50_ms']:.3f} ms"]
        if "speedup_vs_teacher" in entry:
            parts.append(f"{entry['speedup_vs_teacher']:.2f}x the teacher")
        if "speedup_vs_fp32_student" in entry:
            parts.append(f"{entry['speedup_vs_fp32_student']:.2f}x the fp32 student ({entry['fp32_student_artifact']})")
        if entry.get("drop_points") is not None:
            parts.append(f"drop {entry['drop_points']:+.2f} pts vs the teacher")
        why = "fastest meeting the budgets" if entry["basis"] == "budgets" else "fastest above the fidelity threshold"
        lines.append(f"recommended on {entry['target']}: {entry['artifact']} ({why}; {', '.join(parts)})")
    return lines
