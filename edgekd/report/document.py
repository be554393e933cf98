"""The report document: reading and writing report.json (with report.md and report.html beside it),
and `publish_report`, the one tail every report goes through.

A run, `edgekd profile` on a device, and a device's rows merged into a run's report all end in
`publish_report`: the recipe's budgets checked into `verdicts`, the recommended artifact per target, the schema
check and the three files. The typed document they start from is `edgekd.report.model.Report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import ReportError
from edgekd.fileio import read_json, write_json_atomic, write_text_atomic
from edgekd.gate import report_verdicts
from edgekd.pipeline.layout import REPORT_HTML, REPORT_JSON, REPORT_MD
from edgekd.report.html import render_html
from edgekd.report.markdown import render_markdown
from edgekd.report.recommend import recommendations
from edgekd.report.schema import validate_report


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate a report.json (or the report.json inside a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    report = read_json(path, f"report '{path}' does not exist; run `edgekd distill-and-export` first", ReportError)
    validate_report(report, f"report '{path}'")
    return report


def write_report(report: dict[str, Any], path: Path) -> None:
    """report.json at `path`, and report.md and report.html beside it when `path` is named report.json."""
    write_json_atomic(path, report)
    if path.name == REPORT_JSON:
        write_text_atomic(path.with_name(REPORT_MD), render_markdown(report))
        write_text_atomic(path.with_name(REPORT_HTML), render_html(report))


def publish_report(report: dict[str, Any], path: Path, origin: str = "the new report") -> dict[str, Any]:
    """Finish a report document and write it to `path`: the recipe's budgets as `verdicts` (where it declares
    any), the recommendations, the schema check, then the files. Returns the document as written."""
    verdicts = report_verdicts(report)
    if verdicts:  # the recipe declared budgets: the report says how the run fares against them
        report["verdicts"] = verdicts
    report["recommendations"] = recommendations(report)
    validate_report(report, origin)
    write_report(report, Path(path))
    return report


def merged_report(report: dict[str, Any], device_report: dict[str, Any], origin: str) -> dict[str, Any]:
    """A run's report (`origin` names it) with a device report's rows: rows of the same artifact and target
    replaced, the target's estimates dropped (it is measured now), and the device facts kept under `devices`."""
    if report["run"].get("recipe_hash") != device_report["run"]["recipe_hash"]:
        raise ReportError(f"{origin} is from another run (recipe hash differs from the bundle's); merge a device "
                          "report only into the run that made the bundle")  # fmt: skip
    target = device_report["run"]["profile"]
    new_keys = {(row["artifact"], row["target"]) for row in device_report["rows"]}
    report["rows"] = [r for r in report["rows"] if (r["artifact"], r["target"]) not in new_keys]
    report["rows"] += device_report["rows"]
    report["estimates"] = [e for e in report.get("estimates", []) if e["target"] != target]
    report.setdefault("devices", {})[target] = {"measured_at": device_report["run"]["created_at"],
                                                "host": device_report["run"]["host"],
                                                "runtime_versions": device_report["run"]["runtime_versions"]}
    return report
