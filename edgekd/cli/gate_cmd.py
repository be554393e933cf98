"""`edgekd gate`: fail a CI build when a report breaks its budgets.

Exit 0 pass, 1 fail, 2 usage or malformed input, 3 inconclusive (`--inconclusive pass|fail` decides instead).
The budget options (--max-p95-ms, ...) are made from the gate's table of budgets, one per entry, with its help.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgekd.budgets import BUDGET_SPECS
from edgekd.cli.gate_output import publish_to_ci, verdict_document, write_junit
from edgekd.errors import EdgekdError
from edgekd.gate import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Check,
    evaluate,
    exit_code,
    load_budgets,
    machine_difference,
    overall_verdict,
    profile_budgets,
    recipe_budgets,
    select_rows,
)
from edgekd.measure.quality import TEACHER_COSINE, report_metric
from edgekd.measure.rebench import REBENCH_BUDGETS, RebenchPolicy, rebench
from edgekd.report.document import load_report
from edgekd.targets.profiles import load_profile

INCONCLUSIVE_POLICIES = (PASS, FAIL)


def with_budget_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option per budget of the gate's table (--max-p95-ms, ...), placed before --json, each
    with its help: typer reads the options from the signature set here, and passes them in `**budget_flags`."""
    fixed = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(command).parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]  # fmt: skip
    budgets = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=float,
                                 default=typer.Option(None, help=spec.help)) for name, spec in BUDGET_SPECS.items()]
    *options, last = fixed
    command.__signature__ = inspect.Signature([*options, *budgets, last])  # type: ignore[attr-defined]
    return command


@with_budget_options
def gate(
    report: Path = typer.Argument(..., help="report.json, or the run directory that holds it."),
    profile: str = typer.Option(None, "--profile", "-p", help="Check this target's rows against the profile's "
                                "default budgets (a --budgets file and flags override them)."),
    budgets_file: Path = typer.Option(None, "--budgets", help="TOML file of budgets (flags override it)."),
    baseline: Path = typer.Option(None, "--baseline", help="A baseline report.json (e.g. main's) that the "
                                  "relative budgets (max_p50_increase_pct, ...) compare rows with."),
    rebench_from: Path = typer.Option(None, "--rebench", help="A baseline bundle or run directory: its artifacts "
                                      "and the candidate's are measured again here, interleaved (ABBA), and "
                                      "max_p50/p95_increase_pct are judged from that same-run comparison."),
    rebench_rounds: int = typer.Option(10, min=3, help="ABBA rounds of --rebench before more are added."),
    rebench_max_rounds: int = typer.Option(40, min=3, help="Cap on ABBA rounds while the verdict is inconclusive."),
    threads: int = typer.Option(None, min=1, help="Threads for --rebench (default: the candidate run's)."),
    inconclusive: str = typer.Option(None, "--inconclusive", help="What an inconclusive verdict counts as: "
                                     "'pass' (exit 0) or 'fail' (exit 1). Default: exit 3."),
    junit: Path = typer.Option(None, "--junit", help="Write a JUnit XML file: one test case per check."),
    artifact: list[str] = typer.Option([], "--artifact", "-a", help="Glob of rows to check (repeatable). "
                                       "Default: every student row."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
    **budget_flags: float | None,
) -> None:
    """Check a report against budgets; name every row, budget and measured value that breaks one.

    Exit 0 pass, 1 fail, 2 usage or malformed input, 3 inconclusive. On GitHub Actions the verdicts are also
    appended to $GITHUB_STEP_SUMMARY and each failed check is annotated."""
    if inconclusive is not None and inconclusive not in INCONCLUSIVE_POLICIES:
        raise EdgekdError(f"--inconclusive '{inconclusive}' is not a policy: use 'pass' or 'fail'")
    checked = _candidate_report(report, rebench_from)
    target = load_profile(profile) if profile else None
    # later layers override earlier ones: profile defaults, the run's recipe [budgets], a budgets file, flags
    budgets = profile_budgets(target, report_metric(checked)) if target and checked else {}
    budgets.update(recipe_budgets(checked) if checked else {})
    budgets.update(load_budgets(budgets_file) if budgets_file else {})
    budgets.update({k: v for k, v in budget_flags.items() if v is not None})
    if not budgets and target and checked and report_metric(checked) == TEACHER_COSINE:
        raise EdgekdError(f"profile '{target.name}' has no default budget that applies to this report: it is of an "
                          "embedding encoder, which has no accuracy; pass e.g. --min-teacher-cosine 0.98")  # fmt: skip
    baseline_report = load_report(baseline) if baseline else None
    notes: list[str] = []
    if rebench_from is not None:
        if not any(b in REBENCH_BUDGETS for b in budgets):
            raise EdgekdError("--rebench compares latency with the baseline measured again: give a budget for it, "
                              "e.g. --max-p50-increase-pct 10")
        if baseline_report is None and (Path(rebench_from) / "report.json").is_file():
            baseline_report = load_report(rebench_from)  # its sizes and accuracies, for the other relative budgets
        policy = RebenchPolicy(rounds=rebench_rounds, max_rounds=max(rebench_max_rounds, rebench_rounds))
        names = [r["artifact"] for r in select_rows(checked, artifact, target.name if target else None)] if checked \
            else None  # fmt: skip
        rebenched = rebench(Path(report), Path(rebench_from), names if names is not None else artifact,
                            budgets, threads or _run_threads(checked), policy)  # fmt: skip
        if baseline_report is None:  # rows the bundles do not carry cannot fall back to a baseline report
            why = ("not re-measured: the candidate's bundle does not carry this artifact (bundles carry the ONNX "
                   "variants; engines are built where they run) and no baseline report was given (--baseline)")
            for name in names or []:
                rebenched.setdefault(name, [Check(name, b, budgets[b], None, INCONCLUSIVE, why)
                                            for b in budgets if b in REBENCH_BUDGETS])  # fmt: skip
        notes.append(f"latency increases re-measured on this machine ({os.uname().nodename}) in one process, "
                     f"baseline and candidate interleaved (ABBA): a same-run comparison")
    else:
        rebenched = None
    if checked is None:  # a bundle alone: only the same-run comparison can be judged
        unusable = [b for b in budgets if b not in REBENCH_BUDGETS]
        if unusable:
            raise EdgekdError(f"budget '{unusable[0]}' needs the candidate's report: pass its run directory or "
                              "report.json rather than the bundle alone")
        checks = [c for cs in (rebenched or {}).values() for c in cs]
        overall = overall_verdict(checks)
    else:
        overall, checks = evaluate(checked, budgets, artifact, target.name if target else None, baseline_report,
                                   rebenched)  # fmt: skip
        elsewhere = machine_difference(checked, baseline_report) if baseline_report and rebenched is None else ""
        notes += [elsewhere.removeprefix("; ")] if elsewhere else []
    code = exit_code(overall, inconclusive)
    if junit:
        write_junit(junit, checks, inconclusive)
    for line in publish_to_ci(overall, checks, notes, code):
        typer.echo(line, err=True)  # the runner reads workflow commands from stderr too; stdout stays --json
    if as_json:
        typer.echo(json.dumps(verdict_document(overall, checks, code, inconclusive, notes), indent=2))
    else:
        table = Table(title=f"edgekd gate: {overall.upper()}")
        for column in ("artifact", "budget", "verdict", "detail"):
            table.add_column(column)
        for c in checks:
            style = {"fail": "red", "inconclusive": "yellow", "skipped": "dim"}.get(c.verdict)
            table.add_row(c.artifact, c.budget, c.verdict, c.detail, style=style)
        Console().print(table)
        for note in notes:
            Console().print(f"note: {note}", highlight=False)
    raise typer.Exit(code)


def _candidate_report(path: Path, rebench_from: Path | None) -> dict[str, Any] | None:
    """The candidate's report; None where --rebench is given a bundle alone (no report beside it)."""
    path = Path(path)
    has_report = path.is_file() and path.suffix == ".json" or (path / "report.json").is_file()
    if rebench_from is not None and not has_report and ((path / "manifest.json").is_file() or path.is_file()):
        return None
    return load_report(path)


def _run_threads(report: dict[str, Any] | None) -> int:
    return int((report or {}).get("run", {}).get("threads") or os.cpu_count() or 1)
