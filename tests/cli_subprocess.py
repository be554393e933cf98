"""Run the installed `edgekd` command in a subprocess, as a user's shell does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def edgekd_command() -> list[str]:
    """The console script pip installed beside this Python (falls back to `python -m edgekd`)."""
    script = Path(sys.executable).with_name("edgekd")
    if script.is_file():
        return [str(script)]
    found = shutil.which("edgekd")
    return [found] if found else [sys.executable, "-m", "edgekd"]


def run_edgekd(args: list[str], cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("EDGEKD_DEBUG", None)
    return subprocess.run([*edgekd_command(), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip
