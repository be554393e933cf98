"""Stage bookkeeping for resumable runs: a stage that finished with the same inputs is not run again.

Each stage has a key: the hash of the recipe sections it reads and of the stage before it. When it
finishes, `<run>/stages/<name>.json` records the key and what the stage produced; on the next run the
stage is skipped if the key matches and its output files still have the sha256 recorded then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.fileio import remove_stale_temps, sha256_file, sha256_json, write_json_atomic


def stage_key(sections: dict[str, Any], upstream: str = "") -> str:
    return sha256_json({"sections": sections, "upstream": upstream})


def output_digests(run_dir: Path, outputs: list[str]) -> dict[str, str] | None:
    """sha256 of every output (an OpenVINO IR's .bin with its .xml, a directory's files in order); None when
    one is missing or empty, so the stage runs again rather than passing on a truncated file."""
    digests: dict[str, str] = {}
    for out in outputs:
        path = run_dir / out
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if path.suffix == ".xml" and path.with_suffix(".bin").exists():
            files.append(path.with_suffix(".bin"))
        for file in files:
            if file.is_symlink() or not file.is_file() or file.stat().st_size == 0:
                return None
            digests[file.relative_to(run_dir).as_posix()] = sha256_file(file)
    return digests


def run_stage(
    run_dir: Path,
    name: str,
    key: str,
    outputs: list[str],
    work: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Run `work` (which writes `outputs`, relative to run_dir, and returns a JSON-able summary) unless a
    finished record with the same key exists and every output still has the sha256 recorded when the stage
    finished (a stage output edited, truncated or emptied since is made again, never reused).
    Returns (summary, reused)."""
    record_path = run_dir / "stages" / f"{name}.json"
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = {}
        record = record if isinstance(record, dict) else {}
        recorded = record.get("sha256")
        if record.get("key") == key and recorded and recorded == output_digests(run_dir, outputs):
            return record["summary"], True
    summary = work()
    write_json_atomic(record_path, {"key": key, "outputs": outputs, "sha256": output_digests(run_dir, outputs),
                                    "summary": summary})  # fmt: skip
    return summary, False


def timed_stage(run_dir: Path, name: str, key: str, outputs: list[str],
                work: Callable[[], dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """`run_stage` announced on the progress line, its summary with whether it was reused and its seconds."""
    from edgekd.distill.distributed import is_main
    from edgekd.pipeline.progress import timed_step

    with timed_step(name) as progress:
        if is_main():  # no write is in flight here: temp files in the run directory are a killed run's leftovers
            remove_stale_temps(run_dir)
        t0 = time.perf_counter()
        summary, reused = run_stage(run_dir, name, key, outputs, work)
        progress["note"] = "reused (finished earlier with the same inputs)" if reused else ""
    return {**summary, "reused": reused, "seconds": round(time.perf_counter() - t0, 3)}
