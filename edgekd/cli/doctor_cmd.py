"""`edgekd doctor`: which runtimes, providers and devices this machine has, and which profiles it can
measure for real (the others get estimates, or need `edgekd profile` on the device)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgekd.runtimes import RUNTIMES
from edgekd.targets.profiles import load_profile, measurable_reason, shipped_profile_names
from edgekd.targets.this_host import host_facts


def _providers() -> dict[str, Any]:
    """What each registered runtime says it can run on here (ONNX Runtime's providers, OpenVINO's devices,
    the trtexec path)."""
    found: dict[str, Any] = {}
    for runtime in RUNTIMES.values():
        if runtime.providers:
            found.update(runtime.providers())
    return found


def _runtime(runtime) -> dict[str, Any]:
    status = runtime.status()
    try:
        version = runtime.version() if status.usable else None
    except ImportError:
        version = None
    return {"version": version, "usable": status.usable, "why_not": status.why_not or ""}


def diagnose() -> dict[str, Any]:
    return {
        "host": host_facts(),
        "runtimes": {name: _runtime(runtime) for name, runtime in RUNTIMES.items()},
        "providers": _providers(),
        "profiles": {name: measurable_reason(load_profile(name)) or "measurable here"
                     for name in shipped_profile_names()},  # fmt: skip
    }


def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Show this machine's runtimes, providers, devices, and which profiles it can measure for real."""
    facts = diagnose()
    if as_json:
        typer.echo(json.dumps(facts, indent=2, default=str))
        return
    console = Console()
    host = facts["host"]
    console.print(f"host: {host['cpu']}, {host['cores']} cores, {host['machine']}; ISA: {', '.join(host['isa'])}; "
                  f"GPU: {', '.join(g['name'] for g in host.get('gpus', [])) or 'none'}", highlight=False)
    runtimes = Table(title="runtimes")
    for column in ("runtime", "version", "usable here"):
        runtimes.add_column(column)
    for name, info in facts["runtimes"].items():
        runtimes.add_row(name, info["version"] or "-", "yes" if info["usable"] else info["why_not"])
    console.print(runtimes)
    for name, value in facts["providers"].items():
        console.print(f"{name}: {value}", highlight=False)
    profiles = Table(title="profiles")
    profiles.add_column("profile")
    profiles.add_column("here")
    for name, verdict in facts["profiles"].items():
        profiles.add_row(name, verdict)
    console.print(profiles)
