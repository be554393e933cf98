"""Progress on long steps, printed to stderr so stdout stays clean for --json output."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[str], None]]:
    """Yield `advance(status)`; shows a bar on a terminal and stays quiet elsewhere (CI logs, tests)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total, status="")
        yield lambda status="": progress.update(task, advance=1, status=status)


def step(message: str) -> None:
    console.print(f"[bold cyan]>[/] {message}", highlight=False)


@contextlib.contextmanager
def timed_step(message: str) -> Iterator[dict[str, str]]:
    """A stage's progress: its line when it starts and, when it ends, the same line with its wall time (and
    what the stage put in the yielded dict's "note", e.g. "reused"). Nothing is printed twice on a failure: the
    error says what happened."""
    step(message)
    t0 = time.perf_counter()
    info: dict[str, str] = {}
    yield info
    note = f", {info['note']}" if info.get("note") else ""
    console.print(f"[bold cyan]>[/] {message} [dim]done in {_seconds(time.perf_counter() - t0)}{note}[/]",
                  highlight=False)


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
