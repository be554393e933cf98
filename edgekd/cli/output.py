"""The CLI's one channel for errors: one plain line on stderr (never parsed as markup, so `[budgets]` stays),
usage errors as typer shows them, and the exit codes README documents.

Written against typer's public names only (`typer.BadParameter`, `Abort`, `Exit`): typer 0.12-0.15 raise click's
classes, typer >= 0.16 its vendored copy (`typer._click`), so the classes are recognised by their place in the
exception hierarchy, never imported from `click`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

INTERRUPTED = "interrupted: finished stages are kept; run the same command again to resume"


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(message: str) -> None:
    """`error: <message>`, the message printed as plain text."""
    _stderr().print(Text.assemble(("error:", "bold red"), " ", str(message)))


def print_note(message: str) -> None:
    _stderr().print(Text(str(message)))


def _classes_named(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _click_exception_base() -> type[BaseException]:
    """The ClickException class this typer raises (click's, or typer's vendored copy)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def usage_error_code(exc: BaseException) -> int | None:
    """Show a usage error as typer does and return its exit code; None when `exc` is not a usage error."""
    if not isinstance(exc, _click_exception_base()):
        return None
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # typer's own rendering (boxed, with the usage line)
    except Exception:  # an older typer without it, or no rich: click's plain form
        exc.show()
    return int(getattr(exc, "exit_code", 2))


def exit_code_of(exc: BaseException) -> int | None:
    """The exit code an Exit / Abort carries (typer's or click's), or None for other exceptions."""
    if _classes_named(exc, "Exit") and hasattr(exc, "exit_code"):
        return int(exc.exit_code)
    if _classes_named(exc, "Abort"):
        print_note("aborted")
        return 130
    return None


def print_unexpected(exc: BaseException) -> None:
    print_error(f"unexpected {type(exc).__name__}: {exc}\nRun again with --debug for the traceback; if the cause is "
                "not your model or data, please report it.")
