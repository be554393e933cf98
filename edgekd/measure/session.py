"""One artifact loaded for measuring, in the phases a coordinator drives: open (load, the outputs on the eval
split, warm-up), batch-1 latency one round at a time, then the remaining figures (latency at real lengths,
throughput, memory) on `finish`.

The same session runs in a worker process (`edgekd.measure.worker`) or in this one; `run_job` runs the phases
back to back, `edgekd.measure.interleave` takes turns between the sessions of several artifacts. Messages in and
out are plain JSON-ready dicts (`answer`), so both places speak the same protocol.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.fileio import atomic_path
from edgekd.measure.quality import predict
from edgekd.measure.timing import (
    TimingPolicy,
    latency_stats,
    latency_timer,
    measure_latency_real_lengths,
    measure_throughput,
)
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


class ArtifactSession:
    """An artifact loaded, its outputs on the eval split written to `job.outputs_path`, its batch-1 call warmed
    up. Raises on failure (the caller records it as the row's reason)."""

    def __init__(self, job: MeasureJob, isolated: bool) -> None:
        from edgekd.build.artifacts import Artifact, load_runner

        self.job, self.isolated = job, isolated
        self.artifact = Artifact(**job.artifact)
        self.policy = TimingPolicy(**job.policy)
        self.inputs = load_inputs(Path(job.inputs_path))
        self.rss_before_load = _current_rss_bytes()
        t0 = time.perf_counter()
        factory = (job.factory[0], dict(job.factory[1])) if job.factory else None
        self.runner = load_runner(self.artifact, Path(job.run_dir), job.threads, job.num_classes, factory)
        self.load_seconds = time.perf_counter() - t0
        outputs = predict(self.runner, self.inputs, job.eval_batch_size)
        with atomic_path(Path(job.outputs_path)) as tmp:
            np.save(tmp, outputs)
        self.latency = latency_timer(self.runner, self.inputs, self.policy)

    def time_round(self, after_others: bool) -> tuple[int, int]:
        """One batch-1 latency round; (start, end) on the machine-wide monotonic clock, in ns. `after_others`:
        other artifacts ran since this one's last round, so it is re-warmed first (untimed)."""
        rewarm = self.latency.rewarm_runs() if after_others else 0
        started = time.monotonic_ns()
        self.latency.round(rewarm)
        return started, time.monotonic_ns()

    def finish(self, interleaving: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's figures: the latency of the rounds taken (with `interleaving`, LatencyStats' record of the
        turns taken, where there were several artifacts), then the rest, timed now."""
        from edgekd.runtimes import RUNTIMES

        job, artifact, runner, inputs, policy = self.job, self.artifact, self.runner, self.inputs, self.policy
        record = {k: tuple(v) if isinstance(v, list) else v for k, v in (interleaving or {}).items()}
        latency = replace(latency_stats(self.latency.timed), **record)
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
            entry = runtime.throughput_mode(path, inputs, artifact.precision, job.threads, execution_precision,
                                            policy)  # fmt: skip
            execution_precision = execution_precision or entry.get("execution_precision")
            throughput.append(entry)
        return {
            "status": "ok",
            "reason": "",
            "latency_ms": latency.to_dict(),
            "latency_real_lengths_ms": real_lengths,
            "throughput": throughput,
            "execution_precision": execution_precision,
            "load_seconds": round(self.load_seconds, 4),
            "isolation": "subprocess" if self.isolated else "in-process",
            "memory": {
                # in-process the peak belongs to the whole run, not to this artifact: not reported
                "peak_rss_bytes": _peak_rss_bytes() if self.isolated else None,
                "rss_before_load_bytes": self.rss_before_load if self.isolated else None,
            },
        }


def run_job(job: MeasureJob, isolated: bool) -> dict[str, Any]:
    """Load, predict the eval split, time latency (all rounds in a row) and throughput. Raises on failure."""
    session = ArtifactSession(job, isolated)
    for _ in range(session.policy.rounds):
        session.time_round(after_others=False)
    return session.finish()


# --- the protocol: one JSON object per command and per reply ------------------------------------------------
# replies: {"event": "ready"} | {"event": "round", "started_ns", "ended_ns"} | {"event": "result", "result"}
#          | {"event": "failed", "reason"}; commands: {"do": "round", "after_others": bool}
#          | {"do": "finish", "interleaving": {...} | null}


def failed(reason: str) -> dict[str, Any]:
    return {"event": "failed", "reason": reason}


def _failure(exc: BaseException, isolated: bool) -> dict[str, Any]:
    """A failure of the artifact (one artifact failing is its row's status, never the run's end)."""
    if isolated:  # the worker's log, whose last line the parent reports if no reply comes back
        traceback.print_exc(file=sys.stderr)
    return failed(str(exc) if isinstance(exc, EdgekdError) else f"{type(exc).__name__}: {exc}")


def open_session(job: MeasureJob, isolated: bool) -> tuple[ArtifactSession | None, dict[str, Any]]:
    """The session and the `ready` reply, or None and the `failed` reply."""
    try:
        return ArtifactSession(job, isolated), {"event": "ready"}
    except Exception as exc:
        return None, _failure(exc, isolated)


def answer(session: ArtifactSession, command: dict[str, Any]) -> dict[str, Any]:
    """The reply to one command; any failure of the artifact is a `failed` reply."""
    try:
        if command["do"] == "round":
            started, ended = session.time_round(bool(command["after_others"]))
            return {"event": "round", "started_ns": started, "ended_ns": ended}
        if command["do"] == "finish":
            return {"event": "result", "result": session.finish(command.get("interleaving"))}
        return failed(f"the measuring process got an unknown command {command['do']!r}")
    except Exception as exc:
        return _failure(exc, session.isolated)


def result_of(reply: dict[str, Any]) -> dict[str, Any]:
    """A worker's final reply as the row's result: its figures, or status failed with the reason."""
    if reply["event"] == "result":
        return reply["result"]
    return {"status": "failed", "reason": reply.get("reason", f"unexpected reply {reply['event']!r}")}
