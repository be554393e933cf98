"""Stage bookkeeping for resumable runs: a stage that finished with the same inputs is not run again.

Each stage has a key: the hash of the recipe sections it reads and of the stage before it. When it
finishes, `<run>/stages/<name>.json` records the key and what the stage produced; on the next run the
stage is skipped if the key matches and its output files are still there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.fileio import sha256_json, write_json_atomic


def stage_key(sections: dict[str, Any], upstream: str = "") -> str:
    return sha256_json({"sections": sections, "upstream": upstream})


def run_stage(
    run_dir: Path,
    name: str,
    key: str,
    outputs: list[str],
    work: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Run `work` (which writes `outputs`, relative to run_dir, and returns a JSON-able summary) unless a
    finished record with the same key exists. Returns (summary, reused)."""
    record_path = run_dir / "stages" / f"{name}.json"
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            record = {}
        if record.get("key") == key and all((run_dir / out).exists() for out in outputs):
            return record["summary"], True
    summary = work()
    write_json_atomic(record_path, {"key": key, "outputs": outputs, "summary": summary})
    return summary, False


def timed_stage(run_dir: Path, name: str, key: str, outputs: list[str],
                work: Callable[[], dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """`run_stage` announced on the progress line, its summary with whether it was reused and its seconds."""
    from edgekd.progress import step

    step(name)
    t0 = time.perf_counter()
    summary, reused = run_stage(run_dir, name, key, outputs, work)
    return {**summary, "reused": reused, "seconds": round(time.perf_counter() - t0, 3)}
