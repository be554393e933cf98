"""`edgekd report`: re-render a run's report (terminal table, Markdown, HTML or JSON), or compare two reports."""

from __future__ import annotations

import io
import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgekd.fileio import write_text_atomic
from edgekd.report.compare import (
    COMPARE_COLUMNS,
    REGRESSION,
    compare_lines,
    compare_reports,
    render_compare_markdown,
    summary,
)
from edgekd.report.document import load_report
from edgekd.report.html import render_compare_html, render_html
from edgekd.report.markdown import render_markdown
from edgekd.report.terminal import render_table


class Format(StrEnum):
    table = "table"
    md = "md"
    html = "html"
    json = "json"


def report(
    source: Path = typer.Argument(..., help="A run directory or its report.json."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table (terminal), md, html or json."),
    compare: Path = typer.Option(None, "--compare", help="Another run or report.json: show the deltas row by row, "
                                 "regressions highlighted."),  # fmt: skip
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file (atomically) instead of stdout."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="With --compare: exit 1 when any figure regressed."),  # fmt: skip
) -> None:
    """Re-render a report, or compare it with another one (`--compare OLD`)."""
    new = load_report(source)
    if compare is None:
        text = {Format.md: render_markdown, Format.html: render_html,
                Format.json: lambda r: json.dumps(r, indent=2) + "\n"}.get(fmt)  # fmt: skip
        _emit(None if text is None else text(new), lambda: render_table(new), output)
        return
    old = load_report(compare)
    comparisons = compare_reports(new, old)
    renderers = {
        Format.md: lambda: render_compare_markdown(new, old, comparisons),
        Format.html: lambda: render_compare_html(new, old, comparisons),
        Format.json: lambda: json.dumps({"summary": summary(comparisons),
                                         "regressions": sum(len(c.regressions) for c in comparisons),
                                         "rows": [c.to_dict() for c in comparisons]}, indent=2) + "\n",  # fmt: skip
    }
    _emit(renderers[fmt]() if fmt in renderers else None, lambda: _compare_table(comparisons), output)
    if fail_on_regression and any(c.regressions for c in comparisons):
        raise typer.Exit(1)


def _emit(text: str | None, table, output: Path | None) -> None:
    """Write `text` (or the rich table when the format is `table`) to `output` or stdout."""
    if text is None:
        if output is None:
            Console().print(table())
            return
        console = Console(width=200, file=io.StringIO())
        console.print(table())
        text = console.file.getvalue()
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomic(output, text)
        typer.echo(f"wrote {output}", err=True)


def _compare_table(comparisons) -> Table:
    table = Table(title=f"edgekd compare: {summary(comparisons)}")
    for column in COMPARE_COLUMNS:
        table.add_column(column)
    lines = compare_lines(comparisons)
    if not lines:
        table.add_row("(every row)", "", "every figure", "identical", "same")
    for cells in lines:
        table.add_row(*cells, style="bold red" if cells[-1] == REGRESSION.upper() else None)
    return table
