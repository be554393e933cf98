"""report.md: the report as Markdown (the run's summary, the measured table and every section)."""

from __future__ import annotations

from typing import Any

from edgekd.measure.quality import ACCURACY, report_metric
from edgekd.report import cells
from edgekd.report.recommend import recommendation_lines
from edgekd.report.summary import method_line, summary_lines


def _md_table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in rows]
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# edgekd report: {report['run']['name']}", ""]
    lines += [f"- {line}" for line in summary_lines(report)]
    recommended = recommendation_lines(report)
    if recommended:
        lines += ["", "## Recommended", "", *[f"- {line}" for line in recommended]]
    method = method_line(report)
    lines += ["", *([f"Method: {method}.", ""] if method else [])]
    metric = report_metric(report)
    samples = report["task"]["split"].get("test", "?")
    if metric == ACCURACY:
        legend = (f"Accuracy on the {samples}-sample test split; drop = teacher minus row, in percentage points; "
                  "agree = top-1 agreement with the teacher; KL = mean KL(teacher || row).")
    else:
        legend = (f"An embedding encoder: no classes, so each row is judged by the mean cosine of its embeddings "
                  f"with the teacher's on the {samples}-sample test split (the teacher scores 1); drop = "
                  "(1 - cosine) x 100 points; 1-NN acc = leave-one-out nearest-neighbour accuracy on the test "
                  "labels, where there are labels.")
    lines += ["## Measured", "", f"Latency at batch 1; throughput at the batch size shown. {legend}", ""]
    columns = cells.measured_columns(metric)
    lines += _md_table(cells.headings(columns), [cells.row_cells(row, columns) for row in cells.measured_rows(report)])
    stage_lines = cells.stage_drop_lines(report)
    if stage_lines:
        what = "Accuracy drop" if metric == ACCURACY else "Cosine-to-teacher drop"
        lines += [f"## {what} by stage (points; the stages add up to the total)", ""]
        header = ["artifact", "target", *cells.STAGE_LABELS.values(), "total"]
        lines += _md_table(header, [[a, t, *drops, total] for a, t, drops, total in stage_lines])
    parity = cells.parity_lines(report)
    if parity:
        lines += ["## Parity with the fp32 PyTorch student (same samples)", ""]
        lines += _md_table(cells.PARITY_COLUMNS, parity)
    through = cells.throughput_lines(report)
    if through:
        lines += ["## Throughput", ""]
        lines += _md_table(cells.THROUGHPUT_COLUMNS, through)
    flags = cells.flag_lines(report)
    if flags:
        lines += ["## Flags", "", *[f"- {line}" for line in flags], ""]
    verdicts = cells.verdict_lines(report)
    if verdicts:
        lines += [f"## Budgets from the recipe: {report['verdicts']['verdict'].upper()}", "",
                  "`edgekd gate` on this run gives the same verdicts, and its exit code, for CI.", ""]
        lines += _md_table(cells.VERDICT_COLUMNS, verdicts)
    estimates = cells.estimate_rows(report)
    if estimates:
        lines += ["## Estimates (not measured: modelled for targets not at hand)", ""]
        lines += _md_table(cells.ESTIMATE_COLUMNS, [cells.estimate_cells(row) for row in estimates])
    return "\n".join(lines).rstrip() + "\n"
