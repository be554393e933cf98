"""`edgekd gate`: fail a CI build when a report breaks its budgets. Exit 0 pass, 1 fail, 2 inconclusive/usage."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgekd.errors import EdgekdError
from edgekd.gate import EXIT_CODES, evaluate, load_budgets, profile_budgets, recipe_budgets
from edgekd.hardware import load_profile
from edgekd.measure.quality import TEACHER_COSINE, report_metric
from edgekd.report import load_report


def gate(
    report: Path = typer.Argument(..., help="report.json, or the run directory that holds it."),
    profile: str = typer.Option(None, "--profile", "-p", help="Check this target's rows against the profile's "
                                "default budgets (a --budgets file and flags override them)."),
    budgets_file: Path = typer.Option(None, "--budgets", help="TOML file of budgets (flags override it)."),
    baseline: Path = typer.Option(None, "--baseline", help="A baseline report.json (e.g. main's) that the "
                                  "relative budgets (max_p50_increase_pct, ...) compare rows with."),
    artifact: list[str] = typer.Option([], "--artifact", "-a", help="Glob of rows to check (repeatable). "
                                       "Default: every student row."),
    max_accuracy_drop: float = typer.Option(None, help="Max accuracy drop against the teacher, points."),
    min_accuracy: float = typer.Option(None, help="Min accuracy, percent."),
    min_teacher_agreement: float = typer.Option(None, help="Min top-1 agreement with the teacher, percent."),
    min_teacher_cosine: float = typer.Option(None, help="Min mean cosine of the outputs with the teacher's "
                                             "(-1 to 1): the budget for embedding encoders."),
    min_neighbour_accuracy: float = typer.Option(None, help="Min 1-nearest-neighbour accuracy of an embedding "
                                                 "encoder on labelled eval samples, percent."),
    max_p50_ms: float = typer.Option(None, help="Max median latency at batch 1, ms."),
    max_p90_ms: float = typer.Option(None, help="Max p90 latency at batch 1, ms."),
    max_p95_ms: float = typer.Option(None, help="Max p95 latency at batch 1, ms."),
    max_p99_ms: float = typer.Option(None, help="Max p99 latency at batch 1, ms."),
    min_throughput_per_s: float = typer.Option(None, help="Min throughput, samples per second."),
    max_size_mb: float = typer.Option(None, help="Max artifact size on disk, MB (10^6 bytes)."),
    max_p50_increase_pct: float = typer.Option(None, help="Max p50 increase over the baseline row, percent."),
    max_p95_increase_pct: float = typer.Option(None, help="Max p95 increase over the baseline row, percent."),
    max_size_increase_pct: float = typer.Option(None, help="Max size increase over the baseline row, percent."),
    max_accuracy_loss_pts: float = typer.Option(None, help="Max accuracy loss against the baseline row, points."),
    max_teacher_cosine_loss: float = typer.Option(None, help="Max loss of cosine to the teacher against the "
                                                  "baseline row (embedding encoders)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> None:
    """Check a report against budgets; name every row, budget and measured value that breaks one."""
    checked = load_report(report)
    target = load_profile(profile) if profile else None
    # later layers override earlier ones: profile defaults, the run's recipe [budgets], a budgets file, flags
    budgets = profile_budgets(target, report_metric(checked)) if target else {}
    budgets.update(recipe_budgets(checked))
    budgets.update(load_budgets(budgets_file) if budgets_file else {})
    flags = {
        "max_accuracy_drop": max_accuracy_drop, "min_accuracy": min_accuracy,
        "min_teacher_agreement": min_teacher_agreement, "min_teacher_cosine": min_teacher_cosine,
        "min_neighbour_accuracy": min_neighbour_accuracy,
        "max_p50_ms": max_p50_ms, "max_p90_ms": max_p90_ms,
        "max_p95_ms": max_p95_ms, "max_p99_ms": max_p99_ms, "min_throughput_per_s": min_throughput_per_s,
        "max_size_mb": max_size_mb, "max_p50_increase_pct": max_p50_increase_pct,
        "max_p95_increase_pct": max_p95_increase_pct, "max_size_increase_pct": max_size_increase_pct,
        "max_accuracy_loss_pts": max_accuracy_loss_pts, "max_teacher_cosine_loss": max_teacher_cosine_loss,
    }  # fmt: skip
    budgets.update({k: v for k, v in flags.items() if v is not None})
    if not budgets and target and report_metric(checked) == TEACHER_COSINE:
        raise EdgekdError(f"profile '{target.name}' has no default budget that applies to this report: it is of an "
                          "embedding encoder, which has no accuracy; pass e.g. --min-teacher-cosine 0.98")  # fmt: skip
    overall, checks = evaluate(checked, budgets, artifact, target.name if target else None,
                               load_report(baseline) if baseline else None)  # fmt: skip
    if as_json:
        typer.echo(json.dumps({"verdict": overall, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        table = Table(title=f"edgekd gate: {overall.upper()}")
        for column in ("artifact", "budget", "verdict", "detail"):
            table.add_column(column)
        for c in checks:
            style = {"fail": "red", "inconclusive": "yellow", "skipped": "dim"}.get(c.verdict)
            table.add_row(c.artifact, c.budget, c.verdict, c.detail, style=style)
        Console().print(table)
    raise typer.Exit(EXIT_CODES[overall])
