"""Measure several artifacts with their batch-1 latency rounds taken in turns, each artifact in its own process.

Why: a machine's speed drifts (another job starts halfway). Timed one after another, that drift lands on one
artifact's rounds and not another's, and the ratios between rows (int8 vs fp32 speed-ups) mix moments. Here one
worker per artifact stays alive for the whole pass: each loads its artifact and writes its eval outputs (one
after another, so load times do not compete), then round r of every artifact is timed before round r + 1 of
any, the order rotating (round r starts at the r-th live artifact, then list order) so no artifact always goes
first; one worker times at any moment while the others block on their command pipe. Then each finishes its
other figures (latency at real lengths, throughput, memory) one at a time, and exits.

Isolation stays: thread pools, allocators and the peak resident memory stay per process. The price is memory:
every artifact of a group is loaded at once (about 100-250 MB a worker for the built-in tiny CNN, mostly the
runtime itself), so at most `MAX_LIVE_WORKERS` are alive; a longer list is measured in groups of that size,
each interleaved within itself.

The protocol is one JSON object a line (`edgekd.measure.session`) over two pipes of its own, never stdout: what
a runtime prints goes to the worker's log file, whose last line is the reason when a worker dies. A worker
that crashes, hangs past its budget or answers nonsense becomes a failed result, and the others carry on.
Artifacts of a runtime a fresh interpreter does not know, and every artifact with `in_process`, are sessions in
this process: they take their turns the same way (one process, so no per-artifact memory figure).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgekd.measure.drift import drift_spread, own_spread, round_factors
from edgekd.measure.session import MeasureJob, answer, failed, open_session, result_of

MAX_LIVE_WORKERS = 8  # the default run's artifacts, all in one interleaved group (~1 GB for the tiny CNN)
# Between two artifacts' turns: the last one's thread pool may still spin-wait for work (ONNX Runtime's intra-op
# threads do by default, TBB's too) and would take cores from the next one's timed runs. Not timed; a default run
# spends 8 artifacts x 10 rounds x this on it.
TURN_GAP_S = 0.005
ORDER_RULE = ("rotating: round r of every artifact before round r+1 of any; round r starts at the r-th "
              f"(mod N) artifact, then list order; one artifact timed at a time, {TURN_GAP_S * 1e3:g} ms idle "
              "between turns")  # fmt: skip
EXIT_GRACE_S = 10.0  # how long a worker that sent its result may take to exit before it is killed


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In the forked child before exec (Linux): the kernel sends SIGKILL to this worker when the thread that
    started it dies, even by kill -9, so no measurement keeps running for a run that is gone."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not glibc: the worker also exits when its command pipe closes
        pass


class LocalWorker:
    """A session in this process, answering the same commands as a worker process."""

    def __init__(self, job: MeasureJob) -> None:
        self.session, self.first_reply = open_session(job, isolated=False)

    def request(self, command: dict[str, Any]) -> dict[str, Any]:
        return answer(self.session, command)

    def close(self) -> None:
        self.session = None  # the runner goes with it


class ProcessWorker:
    """A worker process for one job, and its pipes. `timeout_s` bounds the time it spends on its own commands
    (loading, its rounds, finishing), not the time it waits while others are timed."""

    def __init__(self, job: MeasureJob, job_path: Path, log_path: Path, timeout_s: float) -> None:
        from edgekd.fileio import write_json_atomic

        self.timeout_s, self.budget_s, self.log_path, self._buffer = timeout_s, timeout_s, log_path, b""
        write_json_atomic(job_path, job.to_dict())
        command_read, self._commands = os.pipe()
        self._replies, reply_write = os.pipe()
        # The worker imports exactly what this process can: this edgekd (not another install) and the user's own
        # model modules (named by import path in the recipe), wherever this process found them.
        package_root = str(Path(__file__).resolve().parents[2])
        search_path = [package_root, *(p or os.getcwd() for p in sys.path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(search_path))}
        try:
            with log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "edgekd.measure.worker", str(job_path), str(command_read),
                     str(reply_write)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, pass_fds=(command_read, reply_write),
                    preexec_fn=die_with_parent if sys.platform == "linux" else None,
                )  # fmt: skip
        finally:
            os.close(command_read)
            os.close(reply_write)
        self.first_reply = self._receive()

    def request(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.process.poll() is not None:
            return self._exited()
        try:
            os.write(self._commands, json.dumps(command).encode() + b"\n")
        except BrokenPipeError:
            return self._exited()
        return self._receive()

    def _receive(self) -> dict[str, Any]:
        """The next reply line, within what is left of the budget; a failed reply when none comes."""
        started = time.monotonic()
        while b"\n" not in self._buffer:
            left = self.budget_s - (time.monotonic() - started)
            ready, _, _ = select.select([self._replies], [], [], max(left, 0.0))
            if not ready:
                self.kill()
                return failed(f"measuring took longer than {self.timeout_s:.0f} s and was stopped")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                return self._exited()
            self._buffer += chunk
        self.budget_s -= time.monotonic() - started
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
            if not isinstance(reply, dict) or "event" not in reply:
                raise ValueError("not a reply object")
        except ValueError as exc:
            self.kill()
            return failed(f"the measuring process sent an unreadable reply ({exc}): {line[:200]!r}")
        return reply

    def _exited(self) -> dict[str, Any]:
        code = self.process.wait()
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return failed(f"the measuring process exited with code {code}: {(lines or ['no output'])[-1]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Close the pipes (a worker still waiting for a command exits on that) and reap the process."""
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.process.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()


def measure_jobs(jobs: list[MeasureJob], workdir: Path, timeout_s: float, in_process: bool = False,
                 max_live: int = MAX_LIVE_WORKERS) -> list[dict[str, Any]]:  # fmt: skip
    """One result per job, in order (status ok with the figures, or failed with the reason); never raises for
    an artifact's failure. Jobs share one timing policy. `timeout_s`: each process worker's budget."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(jobs), max_live):
        with MeasurePass(jobs[start:start + max_live], workdir, timeout_s, in_process, first_index=start) as group:
            group.open()
            results += group.measure()
    return results


class MeasurePass:
    """The workers of one interleaved group: `open` starts them one at a time (each loads its artifact and
    writes its outputs), `measure` takes the rounds in turns and then each worker's other figures. Leaving the
    `with` block kills any worker still alive (an interrupt, a bug here): none outlives its pass."""

    def __init__(self, jobs: list[MeasureJob], workdir: Path, timeout_s: float, in_process: bool = False,
                 first_index: int = 0) -> None:  # fmt: skip
        self.jobs, self.timeout_s, self.in_process = jobs, timeout_s, in_process
        self.stems = [workdir / f"worker-{first_index + i}" for i in range(len(jobs))]
        self.results: dict[int, dict[str, Any]] = {}
        self.live: dict[int, LocalWorker | ProcessWorker] = {}

    def __enter__(self) -> MeasurePass:
        return self

    def __exit__(self, *_: object) -> None:
        for worker in self.live.values():
            if isinstance(worker, ProcessWorker):
                worker.kill()
            worker.close()
        self.live.clear()

    def open(self) -> None:
        """Start the workers one after another, so that their load times do not compete."""
        from edgekd.runtimes import known_to_new_processes

        for i, (job, stem) in enumerate(zip(self.jobs, self.stems, strict=True)):
            if self.in_process or not known_to_new_processes(job.artifact["runtime"]):
                worker = self.live[i] = LocalWorker(job)  # a runtime registered at run time, unknown to a new process
            else:
                worker = self.live[i] = ProcessWorker(job, stem.with_suffix(".job.json"), stem.with_suffix(".log"),
                                                      self.timeout_s)  # fmt: skip
            if worker.first_reply["event"] != "ready":
                self._drop(i, worker.first_reply)

    def measure(self) -> list[dict[str, Any]]:
        """The rounds in turns, then every live worker's other figures, one artifact at a time; one result per
        job, in order."""
        turns = self._take_rounds(self.jobs[0].policy["rounds"] if self.jobs else 0)
        for i, worker in list(self.live.items()):
            reply = worker.request({"do": "finish", "interleaving": turns.get(i)})
            self.results[i] = result_of(reply)
            self.live.pop(i).close()
        results = [self.results[i] for i in range(len(self.jobs))]
        separate_machine_drift(results)
        return results

    def _drop(self, i: int, reply: dict[str, Any]) -> None:
        self.results[i] = result_of(reply)
        self.live.pop(i).close()

    def _take_rounds(self, rounds: int) -> dict[int, dict[str, Any]]:
        """Every live worker's batch-1 rounds in turns (ORDER_RULE); a worker that fails is dropped with its
        reason. Per worker, its record of the turns (LatencyStats fields), where several took turns."""
        slots: dict[int, list[int]] = {i: [] for i in self.live}
        starts: dict[int, list[int]] = {i: [] for i in self.live}
        for r in range(rounds):
            order = list(self.live)
            shift = r % len(order) if order else 0
            for slot, i in enumerate(order[shift:] + order[:shift]):
                if len(order) > 1:
                    time.sleep(TURN_GAP_S)
                reply = self.live[i].request({"do": "round", "after_others": len(order) > 1})
                if reply["event"] != "round":
                    self._drop(i, reply)
                    continue
                slots[i].append(slot)
                starts[i].append(reply["started_ns"])
        across = sum(1 for s in starts.values() if s)  # the workers that timed at least one round
        if across < 2:
            return {}
        first = min((s for i in self.live for s in starts[i]), default=0)
        return {i: {"interleaved_across": across, "round_slots": slots[i],
                    "round_start_s": [round((s - first) / 1e9, 6) for s in starts[i]]} for i in self.live}  # fmt: skip


def separate_machine_drift(results: list[dict[str, Any]]) -> None:
    """Where a pass's artifacts took their rounds in turns, record in each ok result's latency the machine's
    drift over those rounds (`shared_drift`) and the artifact's spread without it (`own_round_spread`, which then
    decides `noisy`): a machine that slowed down for everyone does not make every row noisy (measure.drift)."""
    timed = [r["latency_ms"] for r in results if r.get("status") == "ok" and r["latency_ms"].get("interleaved_across")]
    factors = round_factors([t["round_p50"] for t in timed])
    if factors is None:
        return
    shared = round(drift_spread(factors), 6)
    for latency in timed:
        latency.update(shared_drift=shared, own_round_spread=round(own_spread(latency["round_p50"], factors), 6),
                       round_factors=[round(f, 6) for f in factors])  # fmt: skip
