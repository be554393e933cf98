"""Measure ONE artifact, normally in a process of its own: `python -m edgekd.measure.worker JOB.json RESULT.json`.

Isolation is the point: one runtime's thread pools, allocator and caches cannot colour another's figures, and the
peak resident memory of the process is the artifact's own (plus the interpreter's, recorded separately as the
resident memory before loading). The job and the result are plain JSON; the outputs on the eval split go to an
.npy named by the job, so the parent computes accuracy and fidelity from numbers, not from a live runtime.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.fileio import atomic_path, write_json_atomic
from edgekd.measure.quality import predict
from edgekd.measure.timing import TimingPolicy, measure_latency, measure_latency_real_lengths, measure_throughput
from edgekd.samples import load_inputs


@dataclass(frozen=True)
class MeasureJob:
    artifact: dict[str, Any]  # Artifact.to_dict()
    run_dir: str
    inputs_path: str  # .npz of the eval inputs (under the graph's input names; see edgekd.samples)
    outputs_path: str  # where the worker writes the outputs (.npy)
    threads: int
    num_classes: int
    eval_batch_size: int
    policy: dict[str, Any]  # TimingPolicy fields
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    openvino_throughput: bool = True  # also the runtime's own throughput mode, where it has one (OpenVINO's streams)
    # the recipe's (import path, kwargs) for a PyTorch artifact made by a user factory: code comes from the
    # recipe, never from the run directory's .model.json
    factory: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _current_rss_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process. On Linux VmHWM (of this process image), because ru_maxrss
    carries the parent's resident size at fork across exec and would report the parent's memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def run_job(job: MeasureJob, isolated: bool) -> dict[str, Any]:
    """Load, predict the eval split, time latency and throughput. Raises on failure (the caller records it)."""
    from edgekd.build.artifacts import Artifact, load_runner
    from edgekd.runtimes import RUNTIMES

    artifact = Artifact(**job.artifact)
    policy = TimingPolicy(**job.policy)
    inputs = load_inputs(Path(job.inputs_path))
    rss_before_load = _current_rss_bytes()
    t0 = time.perf_counter()
    factory = (job.factory[0], dict(job.factory[1])) if job.factory else None
    runner = load_runner(artifact, Path(job.run_dir), job.threads, job.num_classes, factory)
    load_seconds = time.perf_counter() - t0
    outputs = predict(runner, inputs, job.eval_batch_size)
    with atomic_path(Path(job.outputs_path)) as tmp:
        np.save(tmp, outputs)
    latency = measure_latency(runner, inputs, policy)
    real_lengths = measure_latency_real_lengths(runner, inputs, policy)  # token inputs: at each text's length
    # batch 1 throughput is 1 / mean latency of the batch-1 runs just timed: no second timing of the same thing
    throughput = [{"batch_size": b, "mode": "sync",
                   "per_s": 1e3 / latency.mean if b == 1 else measure_throughput(runner, inputs, b, policy)}
                  for b in job.batch_sizes]  # fmt: skip
    path = Path(job.run_dir) / artifact.path
    runtime = RUNTIMES.get(artifact.runtime)  # None for PyTorch artifacts: no probes
    probe = runtime.execution_precision if runtime else None
    execution_precision = probe(path, job.threads) if probe else None  # where the runtime can tell
    if execution_precision and artifact.precision == "int8":
        execution_precision = f"int8+{execution_precision}"  # int8 layers, the float rest in this precision
    if runtime and runtime.throughput_mode and job.openvino_throughput:
        # the same arithmetic as the latency runs: what the runtime reported, else what the artifact asks for
        entry = runtime.throughput_mode(path, inputs, artifact.precision, job.threads, execution_precision, policy)
        execution_precision = execution_precision or entry.get("execution_precision")
        throughput.append(entry)
    return {
        "status": "ok",
        "reason": "",
        "latency_ms": latency.to_dict(),
        "latency_real_lengths_ms": real_lengths,
        "throughput": throughput,
        "execution_precision": execution_precision,
        "load_seconds": round(load_seconds, 4),
        "isolation": "subprocess" if isolated else "in-process",
        "memory": {
            # in-process the peak belongs to the whole run, not to this artifact: not reported
            "peak_rss_bytes": _peak_rss_bytes() if isolated else None,
            "rss_before_load_bytes": rss_before_load if isolated else None,
        },
    }


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In the forked child before exec (Linux): the kernel sends SIGKILL to this worker when the process that
    started it dies, even by kill -9, so no measurement keeps running for a run that is gone."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not glibc: the parent's timeout still bounds the worker
        pass


def run_in_subprocess(job: MeasureJob, workdir: Path, timeout_s: float) -> dict[str, Any]:
    """Run `job` in a fresh interpreter; a crash, a hang or no result becomes a failed result, never a raise.
    An artifact of a runtime registered at run time is measured in this process instead (its row says
    "in-process"): a fresh interpreter does not have that runtime, and the job file never names code to import."""
    import subprocess

    from edgekd.runtimes import known_to_new_processes

    if not known_to_new_processes(job.artifact["runtime"]):
        return run_here(job)
    job_path, result_path = workdir / "job.json", workdir / "result.json"
    write_json_atomic(job_path, job.to_dict())
    result_path.unlink(missing_ok=True)
    # The worker imports exactly what this process can: this edgekd (not another install) and the user's own
    # model modules (named by import path in the recipe), wherever this process found them.
    package_root = str(Path(__file__).resolve().parents[2])
    search_path = [package_root, *(p or os.getcwd() for p in sys.path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(search_path))}
    try:
        done = subprocess.run([sys.executable, "-m", "edgekd.measure.worker", str(job_path), str(result_path)],
                              capture_output=True, text=True, env=env, timeout=timeout_s,
                              preexec_fn=die_with_parent if sys.platform == "linux" else None)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"measuring took longer than {timeout_s:.0f} s and was stopped"}
    if result_path.is_file():
        return json.loads(result_path.read_text(encoding="utf-8"))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "failed", "reason": f"the measuring process exited with code {done.returncode}: {tail}"}


def run_here(job: MeasureJob, isolated: bool = False) -> dict[str, Any]:
    """`run_job`, with a failure of the artifact as a failed result (one artifact failing is a row's status)."""
    try:
        return run_job(job, isolated=isolated)
    except Exception as exc:
        from edgekd.errors import EdgekdError

        reason = str(exc) if isinstance(exc, EdgekdError) else f"{type(exc).__name__}: {exc}"
        if isolated:  # the worker's stderr, whose last line the parent reports if no result comes back
            traceback.print_exc(file=sys.stderr)
        return {"status": "failed", "reason": reason}


def main(argv: list[str]) -> int:
    """Exit 0 when a result (ok or failed) was written; anything else means the worker itself broke."""
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = MeasureJob(**json.loads(job_path.read_text(encoding="utf-8")))
    write_json_atomic(result_path, run_here(job, isolated=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
