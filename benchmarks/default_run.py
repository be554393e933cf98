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
        # per run: each row's flags and timing spreads, so a flag that fires on every row (or never) shows
        "flags": {r["label"]: {row["artifact"]: {"flags": [f["code"] for f in row.get("flags", [])],
                                                 "round_spread": row.get("latency_ms", {}).get("round_spread"),
                                                 "own_round_spread": row.get("latency_ms", {}).get("own_round_spread"),
                                                 "shared_drift": row.get("latency_ms", {}).get("shared_drift")}
                               for row in r["report"]["rows"]} for r in (cold, warm, resume)},  # fmt: skip
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
    lines += ["", "Row flags per run (spread: round medians' robust spread with the machine's shared drift divided "
              "out; drift: that shared drift):", "", "| run | drift | rows flagged noisy | other flags |",
              "|---|---|---|---|"]  # fmt: skip
    for label, per_row in result["flags"].items():
        noisy = [name for name, row in per_row.items() if "noisy" in row["flags"]]
        other = sorted({f for row in per_row.values() for f in row["flags"] if f != "noisy"})
        drift = next((row["shared_drift"] for row in per_row.values() if row["shared_drift"] is not None), None)
        lines.append(f"| {label} | {'-' if drift is None else f'{drift:.0%}'} | "
                     f"{len(noisy)} of {len(per_row)}{': ' + ', '.join(noisy) if noisy else ''} | "
                     f"{', '.join(other) or '-'} |")  # fmt: skip
    (RESULTS / "default_run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
