"""`edgekd profile BUNDLE -p PROFILE`: on the device, verify a bundle, build its engines, measure, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgekd.report.terminal import render_table
from edgekd.targets.profiles import load_profile


def render_estimates(estimates: list[dict[str, Any]]) -> Table:
    table = Table(title="estimates (roofline lower bounds from the profiles' figures; not measurements)")
    for column in ("target", "artifact", "precision", ">= latency ms", "bound", "MFLOPs", "KB moved"):
        table.add_column(column, justify="left" if column in ("target", "artifact", "precision", "bound")
                         else "right")  # fmt: skip
    for e in estimates:
        table.add_row(e["target"], e["artifact"], e["precision"], f"{e['latency_ms_lower_bound']:.4g}", e["bound"],
                      f"{e['flops'] / 1e6:.3g}", f"{e['bytes'] / 1e3:.3g}")  # fmt: skip
    return table


def profile(
    bundle: Path = typer.Argument(..., help="A bundle directory (export/<run>/bundle) or its .tar.gz."),
    profile_name: str = typer.Option("host", "--profile", "-p", envvar="EDGEKD_PROFILE",
                                     help="The profile this device is: a name or a TOML path."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o",
                                    help="Where engines and the report go. Default: profile-<PROFILE> beside the "
                                    "bundle."),
    merge: Path = typer.Option(None, "--merge-into", help="Also merge the rows into this run report.json."),
    threads: int = typer.Option(None, "--threads", envvar="EDGEKD_THREADS", help="Threads for measurement."),
    as_json: bool = typer.Option(False, "--json", help="Print the device report as JSON instead of the table."),
) -> None:
    """Profile a bundle on this device: checksums, safe extraction, device engines, measurements, one report."""
    from edgekd.pipeline.on_device import merge_into, profile_bundle  # the runtimes load only when a bundle is profiled

    result = profile_bundle(bundle, load_profile(profile_name), output_dir, threads)
    if merge is not None:
        merge_into(merge, result.report)
    if as_json:
        typer.echo(json.dumps(result.report, indent=2))
        return
    console = Console()
    console.print(render_table(result.report))
    console.print(f"report: {result.output_dir / 'report.json'}" + (f"; merged into {merge}" if merge else ""))
