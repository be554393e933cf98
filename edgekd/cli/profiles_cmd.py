"""`edgekd profiles list | show NAME`: the hardware profiles, and whether this machine can measure each."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

from edgekd.targets.profiles import load_profile, measurable_reason, profile_text, shipped_profile_names
from edgekd.targets.this_host import host_facts

app = typer.Typer(help="Hardware profiles: list them, show one.", no_args_is_help=True)


@app.command("list")
def list_profiles(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every shipped profile with its device class, runtimes, precisions and whether it is measurable here."""
    profiles = [load_profile(name) for name in shipped_profile_names()]
    entries = [{"name": p.name, "device_class": p.device_class, "runtimes": list(p.runtimes),
                "precisions": list(p.precisions), "measurable_here": measurable_reason(p) is None,
                "why_not": measurable_reason(p) or "", "description": p.description} for p in profiles]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    table = Table(title="hardware profiles (edgekd profiles show NAME)")
    for column in ("name", "class", "runtimes", "precisions", "here"):
        table.add_column(column)
    for e in entries:
        here = ("measured" if e["measurable_here"] else "proxy + estimate" if e["device_class"] == "mobile"
                else "estimate; measure on the device")  # fmt: skip
        table.add_row(e["name"], e["device_class"], ", ".join(e["runtimes"]), ", ".join(e["precisions"]), here)
    Console().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="A profile name or a path to your own profile TOML."),
    as_json: bool = typer.Option(False, "--json", help="Print the validated profile as JSON."),
) -> None:
    """One profile: its TOML (with the source of each figure) and, for `host`, what was detected."""
    profile = load_profile(name)
    data = asdict(profile)
    if profile.device_class == "host":
        data["detected"] = host_facts()
    data["measurable_here"] = measurable_reason(profile) or "yes"
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    text, _ = profile_text(name)
    console = Console(soft_wrap=True)
    console.print(f"# {profile.source}", highlight=False)
    console.print(text, highlight=False, markup=False)
    if profile.device_class == "host":
        console.print("# detected: " + json.dumps(data["detected"]), highlight=False, markup=False)
    console.print(f"# measurable here: {data['measurable_here']}", highlight=False, markup=False)
