"""The measuring worker process: `python -m edgekd.measure.worker JOB.json COMMAND_FD REPLY_FD`.

Isolation is the point: one runtime's thread pools, allocator and caches cannot colour another's figures, and the
peak resident memory of the process is the artifact's own (plus the interpreter's, recorded separately as the
resident memory before loading). The job is a plain JSON file; commands and replies are JSON lines on the two
pipes named by their file descriptors (`edgekd.measure.session` has the protocol, `edgekd.measure.interleave`
the coordinator), never stdout, where runtimes print. The outputs on the eval split go to an .npy named by the
job, so the parent computes accuracy and fidelity from numbers, not from a live runtime.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from edgekd.measure.interleave import die_with_parent, measure_jobs
from edgekd.measure.session import MeasureJob, answer, open_session, run_job

__all__ = ["MeasureJob", "die_with_parent", "main", "run_in_subprocess", "run_job", "serve"]


def run_in_subprocess(job: MeasureJob, workdir: Path, timeout_s: float) -> dict[str, Any]:
    """Measure one job in a fresh interpreter; a crash, a hang or no result becomes a failed result, never a
    raise. An artifact of a runtime registered at run time is measured in this process instead (its row says
    "in-process"): a fresh interpreter does not have that runtime, and the job file never names code to import."""
    return measure_jobs([job], workdir, timeout_s)[0]


def serve(job: MeasureJob, commands: Any, replies: Any) -> int:
    """Open the session, say whether it is ready, then answer commands until `finish`, a failure, or the parent
    closing the command pipe (it is gone, or gave up on this artifact)."""

    def send(reply: dict[str, Any]) -> None:
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()

    session, reply = open_session(job, isolated=True)
    send(reply)
    while session is not None and reply["event"] in ("ready", "round"):
        line = commands.readline()
        if not line:
            break
        reply = answer(session, json.loads(line))
        send(reply)
    return 0


def main(argv: list[str]) -> int:
    """Exit 0 when every reply was sent (ok or failed); anything else means the worker itself broke."""
    job = MeasureJob(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    with os.fdopen(int(argv[1]), "rb") as commands, os.fdopen(int(argv[2]), "wb") as replies:
        return serve(job, commands, replies)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
