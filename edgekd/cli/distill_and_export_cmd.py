"""`edgekd distill-and-export`: the main job, from a recipe to a run directory with its report."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from edgekd.pipeline import distill_and_export as run_pipeline
from edgekd.recipe import load_recipe
from edgekd.report import render_table


def distill_and_export(
    recipe: str = typer.Argument(None, help="Recipe TOML file or built-in name. Default: the built-in 'digits'."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a recipe field: section.key=value (repeatable)."),
    output_dir: Path = typer.Option(Path("export"), "--output-dir", "-o", envvar="EDGEKD_OUTPUT_DIR",
                                    help="Root for run directories."),
    run_name: str = typer.Option(None, "--run-name", help="Run directory name. Default: the recipe's name."),
    epochs: int = typer.Option(None, "--epochs", help="Shortcut for --set distill.epochs=N."),
    threads: int = typer.Option(None, "--threads", envvar="EDGEKD_THREADS", help="Threads for measurement."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over instead of resuming finished stages."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout instead of the table."),
) -> None:
    """Distil a student, export it to ONNX, quantize, build engines, measure everything, write one report."""
    overrides = list(set_)
    if epochs is not None:
        overrides.append(f"distill.epochs={epochs}")
    if threads is not None:
        overrides.append(f"measure.threads={threads}")
    result = run_pipeline(load_recipe(recipe, overrides), output_dir, run_name=run_name, fresh=fresh)
    if not result.report:  # a non-zero rank under torchrun: rank 0 writes and prints the report
        return
    if as_json:
        typer.echo(json.dumps(result.report, indent=2))
        return
    console = Console()
    console.print(render_table(result.report))
    console.print(f"report: {result.run_dir / 'report.json'} and {result.run_dir / 'report.md'}")
