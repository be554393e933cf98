"""`edgekd distill-and-export`: the main job, from a recipe to a run directory with its report."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from edgekd.cli.profile_cmd import render_estimates
from edgekd.errors import RecipeError
from edgekd.pipeline.rundirs import check_run_name
from edgekd.recipe import load_recipe
from edgekd.report.terminal import render_table


def distill_and_export(
    recipe: str = typer.Argument(None, help="Recipe TOML file or built-in name. Default: the built-in 'digits'."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a recipe field: section.key=value (repeatable)."),
    output_dir: Path = typer.Option(Path("export"), "--output-dir", "-o", envvar="EDGEKD_OUTPUT_DIR",
                                    help="Root for run directories."),
    run_name: str = typer.Option(None, "--run-name", help="Run directory name. Default: the recipe's name."),
    epochs: int = typer.Option(None, "--epochs", help="Shortcut for --set distill.epochs=N."),
    threads: int = typer.Option(None, "--threads", envvar="EDGEKD_THREADS", help="Threads for measurement."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over instead of resuming finished stages."),
    profile: list[str] = typer.Option([], "--profile", "-p", envvar="EDGEKD_PROFILES",
                                      help="Target hardware profile, by name or TOML path (repeatable). "
                                      "Default: the recipe's targets.profiles (host)."),
    openvino_precision: str = typer.Option(None, "--openvino-precision", help="OpenVINO inference precision: "
                                           "'f32' forces fp32 arithmetic, 'auto' lets the CPU pick (bf16 where "
                                           "supported). Default: each profile's setting."),
    bundle_archive: bool = typer.Option(False, "--bundle-archive", help="Also write bundle.tar.gz beside the bundle."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout instead of the table."),
) -> None:
    """Distil a student, export it to ONNX, quantize, build engines, measure everything, write one report."""
    overrides = list(set_)
    if epochs is not None:
        overrides.append(f"distill.epochs={epochs}")
    if threads is not None:
        overrides.append(f"measure.threads={threads}")
    if profile:
        overrides.append("targets.profiles=[" + ", ".join(json.dumps(p) for p in profile) + "]")
    if openvino_precision not in (None, "auto", "f32"):
        raise RecipeError(f"--openvino-precision must be 'auto' or 'f32', not '{openvino_precision}'")
    loaded = load_recipe(recipe, overrides)
    if run_name is not None:
        check_run_name(run_name, "run name (--run-name)")  # before anything is imported, created or removed
    from edgekd.bundle.files import archive_bundle  # torch and the runtimes load only for the commands that use them
    from edgekd.pipeline.run import distill_and_export as run_pipeline

    result = run_pipeline(loaded, output_dir, run_name=run_name, fresh=fresh, openvino_precision=openvino_precision)
    if not result.report:  # a non-zero rank under torchrun: rank 0 writes and prints the report
        return
    if bundle_archive:
        archive_bundle(result.run_dir / "bundle")
    if as_json:
        typer.echo(json.dumps(result.report, indent=2))
        return
    console = Console() if Console().is_terminal else Console(width=200)  # logs: keep the table unwrapped
    console.print(render_table(result.report))
    if result.report.get("estimates"):
        console.print(render_estimates(result.report["estimates"]))
    verdicts = result.report.get("verdicts")
    if verdicts:
        failing = [c for c in verdicts["checks"] if c["verdict"] != "pass"]
        console.print(f"budgets from the recipe: {verdicts['verdict'].upper()} ({len(verdicts['checks'])} checks, "
                      f"{len(failing)} not passed); `edgekd gate {result.run_dir}` exits non-zero on a failure")
    console.print(f"report: {result.run_dir / 'report.json'} and {result.run_dir / 'report.md'}")
