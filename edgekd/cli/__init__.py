"""The `edgekd` command line: one module per command, one error boundary here.

Exit codes: 0 success; 1 a gate failed or a stage failed; 2 bad input or an inconclusive gate.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from edgekd.cli import distill_and_export_cmd, doctor_cmd, gate_cmd, profile_cmd, profiles_cmd, report_cmd
from edgekd.errors import EdgekdError

app = typer.Typer(
    name="edgekd",
    help="Distil a small student from a teacher, export it to edge runtimes, and measure it in one report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar="EDGEKD_DEBUG", help="Show tracebacks on errors."),
) -> None:
    _state["debug"] = debug


app.command("distill-and-export")(distill_and_export_cmd.distill_and_export)
app.command("gate")(gate_cmd.gate)
app.command("report")(report_cmd.report)
app.command("profile")(profile_cmd.profile)
app.add_typer(profiles_cmd.app, name="profiles")
app.command("doctor")(doctor_cmd.doctor)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; an EdgekdError becomes one line on stderr and its exit code, anything else a
    line naming the exception (exit 1); --debug shows the traceback of either."""
    try:
        code = app(args=argv, standalone_mode=False)  # returns typer.Exit's code in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except EdgekdError as exc:
        if _state["debug"]:
            raise
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: finished stages are kept; run the same command again to resume")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors and aborts
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if _state["debug"]:
            raise
        # not an error edgekd anticipated: still one line, with where to look next
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc}\nRun again with --debug for the traceback; "
            "if the cause is not your model or data, please report it.", highlight=False)
        sys.exit(1)
