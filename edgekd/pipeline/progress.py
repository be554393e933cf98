"""Progress on long steps, printed to stderr so stdout stays clean for --json output."""

from __future__ import annotations

import contextlib
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
