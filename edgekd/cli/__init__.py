"""The `edgekd` command line: one module per command, one error boundary here.

Exit codes: 0 success; 1 a gate failed, a stage failed or an unexpected error; 2 bad input (usage errors
included) or an inconclusive gate; 130 interrupted.
"""

from __future__ import annotations

import sys

import typer

from edgekd.cli import distill_and_export_cmd, doctor_cmd, gate_cmd, output, profile_cmd, profiles_cmd, report_cmd
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
    """Entry point: run the app; an EdgekdError becomes one line on stderr and its exit code, a usage error is
    shown as typer shows it (exit 2), anything else is one line naming the exception (exit 1); --debug shows the
    traceback of either."""
    _state["debug"] = _debug_requested(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=argv, standalone_mode=False)  # returns typer.Exit's code in this mode
    except EdgekdError as exc:
        if _state["debug"]:
            raise
        output.print_error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        output.print_note(output.INTERRUPTED)
        sys.exit(130)
    except Exception as exc:
        code = output.usage_error_code(exc)
        if code is None:
            code = output.exit_code_of(exc)
        if code is None:
            if _state["debug"]:
                raise
            output.print_unexpected(exc)
            code = 1
        sys.exit(code)
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        output.print_note(output.INTERRUPTED)
    if isinstance(code, int) and code:
        sys.exit(code)


def _debug_requested(args: list[str]) -> bool:
    """--debug (or EDGEKD_DEBUG) before the command: known even when parsing fails later."""
    import os

    if os.environ.get("EDGEKD_DEBUG", "").lower() in ("1", "true", "yes"):
        return True
    return "--debug" in args
