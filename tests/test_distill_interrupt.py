"""Ctrl-C during distillation, as a user meets it: a checkpoint, exit 130 with how to resume, then the same
command resumes where it stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # two CLI runs in subprocesses: about a minute on a quiet 2-core machine, more when shared
def test_sigint_checkpoints_and_the_same_command_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEKD_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "edgekd", "distill-and-export", "--output-dir", str(tmp_path), "--set",
               "teacher.epochs=1", "--set", "distill.epochs=40", "--set", "distill.checkpoint_every=1", "--set",
               "distill.train_scratch_baseline=false", "--set", "measure.min_runs=3", "--set",
               "measure.min_seconds=0.01", "--set", "build.openvino=false"]  # fmt: skip
    checkpoint = tmp_path / "digits" / "checkpoints" / "student-kd.pt"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before the student's first checkpoint"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Run the same command again to resume" in err
    assert "Traceback" not in err
    assert checkpoint.exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming student (KD) at epoch" in resumed.stderr
    assert (tmp_path / "digits" / "report.json").is_file()
    assert not checkpoint.exists()  # a finished stage clears its resume points
