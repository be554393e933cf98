"""DDP under torchrun (2 CPU processes, gloo): the same student as one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "ddp_worker.py"  # a script, not a test module: pytest does not collect it


def _run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEKD_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-6000:]  # enough to hold the failing rank's own error


def _torchrun(nproc: int) -> list[str]:
    return ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    _run([str(WORKER), str(single)], tmp_path)
    _run([*_torchrun(2), str(WORKER), str(ddp)], tmp_path)
    one, two = (json.loads((d / "result.json").read_text()) for d in (single, ddp))
    assert two["world"] == 2 and one["world"] == 1
    assert two["test"] == pytest.approx(one["test"], abs=0.01)  # within noise: float sums in another order
    a, b = load_file(str(single / "student.safetensors")), load_file(str(ddp / "student.safetensors"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4), name


@pytest.mark.slow
def test_distill_and_export_under_torchrun(tmp_path):
    """The CLI itself under torchrun: both ranks distil, rank 0 alone exports, measures and reports."""
    args = [*_torchrun(2), "-m", "edgekd", "distill-and-export", "--output-dir", str(tmp_path), "--json"]
    for override in ("teacher.epochs=2", "distill.epochs=2", "measure.min_runs=3", "measure.min_seconds=0.01",
                     "measure.warmup_runs=1", "build.openvino=false"):  # fmt: skip
        args += ["--set", override]
    _run(args, tmp_path)
    report = json.loads((tmp_path / "digits" / "report.json").read_text())
    assert {row["status"] for row in report["rows"]} == {"ok"}
