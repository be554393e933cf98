"""Time the README's main job, `edgekd distill-and-export` on the built-in default, cold and warm.

Cold: empty teacher cache and no run directory (the teacher is trained). Warm: teacher cached, run directory
removed (everything else runs again). Resume: the same command again on the finished run directory.
Goal (issue 2): cold under 3 minutes on 2 cores (aim <= 120 s), warm <= 60 s.

    python benchmarks/default_run.py            # writes benchmarks/results/default_run.{json,md}
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed_run(work: Path, cache: Path, label: str) -> dict:
    env = {**os.environ, "EDGEKD_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekd", "distill-and-export", "--output-dir", str(work), "--json"],
                          env=env, capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{label} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout)
    return {"label": label, "wall_seconds": round(seconds, 2), "report": report}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cold = timed_run(tmp / "export", tmp / "cache", "cold (teacher trained)")
        shutil.rmtree(tmp / "export")
        warm = timed_run(tmp / "export", tmp / "cache", "warm (teacher cached)")
        resume = timed_run(tmp / "export", tmp / "cache", "resume (all stages reused, measured again)")
    report = warm["report"]
    rows = {r["artifact"]: r for r in report["rows"]}
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": report["run"]["host"],
        "threads": report["run"]["threads"],
        "runs": [{"label": r["label"], "wall_seconds": r["wall_seconds"],
                  "stage_seconds": {k: v.get("seconds") for k, v in r["report"]["stages"].items()
                                    if isinstance(v, dict)}} for r in (cold, warm, resume)],  # fmt: skip
        "goal_seconds": {"cold": 180, "cold_aim": 120, "warm": 60},
        "rows": {name: {"status": r["status"], "accuracy": r.get("accuracy"),
                        "p50_ms": r.get("latency_ms", {}).get("p50")} for name, r in rows.items()},  # fmt: skip
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "default_run.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Default run timing (`edgekd distill-and-export`, built-in digits recipe)",
        "",
        f"Measured {result['measured_at']} on {result['host']['cpu']}, {result['host']['cores']} cores, "
        f"{result['threads']} threads. Produced by `python benchmarks/default_run.py`.",
        "",
        "| run | wall s | goal |",
        "|---|---|---|",
    ]
    goals = ["< 180 s (aim 120 s)", "<= 60 s", "-"]
    for run, goal in zip(result["runs"], goals, strict=True):
        lines.append(f"| {run['label']} | {run['wall_seconds']:.1f} | {goal} |")
    lines += ["", "Stage seconds (cold): " + ", ".join(f"{k} {v}" for k, v in result["runs"][0]["stage_seconds"].items()
                                                     if v is not None)]  # fmt: skip
    (RESULTS / "default_run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
