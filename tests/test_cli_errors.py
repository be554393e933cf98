"""The installed CLI's error boundary, on whatever typer pip installed: usage errors exit 2 as typer shows them,
unexpected exceptions are one line (exit 1), and no output ever carries a traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli_subprocess import run_edgekd


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["gate"], "Missing argument"),
        (["gate", "report.json", "--no-such-option"], "No such option"),
        (["distill-and-export", "--epochs", "abc"], "--epochs"),
        (["report", "--format", "pdf", "x.json"], None),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], says: str | None) -> None:
    result = run_edgekd(args)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "ModuleNotFoundError" not in output
    if says:
        assert says in output


def test_an_edgekd_error_is_one_plain_line_with_brackets_kept(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "[budgets]/x"\n', encoding="utf-8")
    result = run_edgekd(["distill-and-export", str(recipe)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "'[budgets]/x'" in result.stderr  # printed as text, not eaten as terminal markup
    assert result.stderr.startswith("error: ")


def _boom_script(tmp_path: Path) -> Path:
    """The real entry point with one extra command that fails the way a bug would."""
    script = tmp_path / "boom.py"
    script.write_text(textwrap.dedent("""
        import sys
        from edgekd.cli import app, main

        @app.command("boom")
        def boom() -> None:
            raise RuntimeError("kaboom")

        main(sys.argv[1:])
    """), encoding="utf-8")
    return script


def test_an_unexpected_exception_is_one_line_and_exit_1(tmp_path: Path) -> None:
    script = _boom_script(tmp_path)
    result = subprocess.run([sys.executable, str(script), "boom"], capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "unexpected RuntimeError: kaboom" in result.stderr
    assert "--debug" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    script = _boom_script(tmp_path)
    result = subprocess.run([sys.executable, str(script), "--debug", "boom"], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: kaboom" in result.stderr


def test_help_and_version_paths_exit_0() -> None:
    result = run_edgekd(["gate", "--help"])
    assert result.returncode == 0
    assert "Traceback" not in result.stdout + result.stderr
