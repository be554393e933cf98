"""The CLI as a user types it: `python -m edgekd`, help, and the error boundary."""

import subprocess
import sys

from tests.conftest import run_cli


def test_python_dash_m_shows_commands():
    proc = subprocess.run([sys.executable, "-m", "edgekd", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "distill-and-export" in proc.stdout and "gate" in proc.stdout


def test_unknown_builtin_recipe_is_one_line(capsys):
    code, _, err = run_cli(["distill-and-export", "digitz"], capsys)
    assert code == 2
    assert "did you mean 'digits'" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgekd", "--debug", "gate", str(tmp_path / "x.json"),
                           "--max-p50-ms", "1"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ReportError" in proc.stderr
