"""The report as a table for the terminal (`edgekd distill-and-export`, `profile`, `report`)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgekd.measure.quality import DROP_FIGURES, METRIC_FIGURES, report_metric
from edgekd.report.cells import (
    estimate_cells,
    estimate_rows,
    flag_lines,
    headings,
    measured_rows,
    row_cells,
)
from edgekd.report.recommend import recommendation_lines
from edgekd.report.summary import method_line, summary_lines

LEFT = ("artifact", "precision", "status", "flags")


def terminal_columns(metric: str) -> tuple[str, ...]:
    """The terminal is narrow: the columns a reader scans first (report.md / report.html have them all)."""
    return ("artifact", "precision", "status", "size_bytes", METRIC_FIGURES[metric].name, DROP_FIGURES[metric].name,
            "p50_ms", "p99_ms", "spread", "throughput_per_s", "flags")  # fmt: skip


def render_table(report: dict[str, Any]) -> Table:
    caption = [*summary_lines(report), *filter(None, [method_line(report)]), *flag_lines(report),
               *recommendation_lines(report)]
    table = Table(title=f"edgekd report: {report['run']['name']}", caption="\n".join(caption))
    metric = report_metric(report)
    columns = terminal_columns(metric)
    for column, heading in zip(columns, headings(columns), strict=True):
        table.add_column(heading, justify="left" if column in LEFT else "right", no_wrap=column == "artifact")
    for row in measured_rows(report):
        style = "yellow" if row["status"] != "ok" or row.get("flags") else None
        table.add_row(*row_cells(row, columns), style=style)
    for row in estimate_rows(report):
        p50 = estimate_cells(row)[4]
        table.add_row(f"{row['artifact']} on {row.get('target', '-')} (ESTIMATE)", row.get("precision", "-"),
                      "estimated", "", "", "", p50, "", "", "", "", style="dim")  # fmt: skip
    return table
