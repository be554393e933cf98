"""Can a CI job rely on `edgekd gate --rebench`? It must never fail a model against itself and must reliably
fail a copy made 20% slower, on this shared machine.

Bundles (edgekd's own bundle writer): `base`, an MLP of 5 equal 1024-wide layers (ONNX for ONNX Runtime, and its
OpenVINO IR); `copy`, the same model built again; `slower`, the same with a 6th layer (20% more work, measured
below). Each trial is one `edgekd gate CANDIDATE --rebench base --max-p50-increase-pct 10 --json` process:
10 trials of `copy` and 10 of `slower`, alternating. A trial fails when any artifact's check fails. Target:
`copy` never fails, `slower` fails >= 9 of 10.
Run: `flock -x /tmp/edgekd-cpu.lock python benchmarks/rebench_gate.py [--trials 10] [--threads 2]` (about 4
minutes); writes benchmarks/results/rebench_gate.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from edgekd.targets.this_host import cpu_model, isa_flags  # noqa: E402
from tests.mlp_bundles import mlp_bundle  # noqa: E402

BUDGET_PCT = 10.0
ISA_RECORDED = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
LAYERS, WIDTH = 5, 1024


def trial(candidate: Path, base: Path, threads: int) -> dict:
    cmd = [sys.executable, "-m", "edgekd", "gate", str(candidate),
           "--rebench", str(base), "--max-p50-increase-pct", str(BUDGET_PCT), "--threads", str(threads), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    if done.returncode not in (0, 1, 3):
        raise SystemExit(f"edgekd gate exited {done.returncode}: {done.stderr[-800:]}")
    document = json.loads(done.stdout)
    return {"verdict": document["verdict"], "exit_code": done.returncode,
            "checks": [{"artifact": c["artifact"], "verdict": c["verdict"], "increase_pct": c["measured"],
                        "interval_pct": c["interval"], "rounds": int(c["detail"].split(" ABBA")[0].split()[-1])}
                       for c in document["checks"]]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekd-rebench-bench-") as tmp:
        base = mlp_bundle(Path(tmp) / "base", LAYERS, WIDTH, openvino=True)
        candidates = {"copy": mlp_bundle(Path(tmp) / "copy", LAYERS, WIDTH, openvino=True),
                      "slower": mlp_bundle(Path(tmp) / "slower", LAYERS + 1, WIDTH, openvino=True)}  # fmt: skip
        trials: dict[str, list[dict]] = {name: [] for name in candidates}
        for index in range(args.trials):
            for name, path in candidates.items():
                entry = trial(path, base, args.threads)
                trials[name].append(entry)
                print(f"trial {index + 1} {name}: {entry['verdict']} " + ", ".join(
                    f"{c['artifact']} {c['increase_pct']:+.1f}% [{c['interval_pct'][0]:+.1f}, "
                    f"{c['interval_pct'][1]:+.1f}] in {c['rounds']} rounds" for c in entry["checks"]), flush=True)
    counts = {name: {v: sum(t["verdict"] == v for t in ts) for v in ("pass", "fail", "inconclusive")}
              for name, ts in trials.items()}  # fmt: skip
    passed = counts["copy"]["fail"] == 0 and counts["slower"]["fail"] >= 0.9 * args.trials
    result = {
        "benchmark": "edgekd gate --rebench: a model against itself and against a copy made 20% slower",
        "command": f"flock -x /tmp/edgekd-cpu.lock python benchmarks/rebench_gate.py --trials {args.trials} "
                   f"--threads {args.threads}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpu": cpu_model(), "machine": platform.machine(), "python": platform.python_version(),
                 "cpu_flags": [f for f in isa_flags() if f in ISA_RECORDED]},
        "model": {"layers": LAYERS, "width": WIDTH, "slower_layers": LAYERS + 1, "input": [1, 64]},
        "budget": {"max_p50_increase_pct": BUDGET_PCT},
        "trials": trials,
        "counts": counts,
        "passed": passed,
    }  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "rebench_gate.json", result)
    write_text_atomic(args.results / "rebench_gate.md", render(result))
    print(render(result))
    return 0 if passed else 1


def render(result: dict) -> str:
    lines = [f"# {result['benchmark']}", "", f"`{result['command']}`", "",
             f"{result['created_at']}, {result['host']['cpu']} ({', '.join(result['host']['cpu_flags'])}); MLP of "
             f"{result['model']['layers']} x {result['model']['width']}-wide layers (slower copy: "
             f"{result['model']['slower_layers']}), ONNX Runtime and OpenVINO artifacts; budget "
             f"max_p50_increase_pct = {result['budget']['max_p50_increase_pct']:g}; each trial one gate process, "
             "trials of both candidates alternating, all under one exclusive lock.", "",
             "| candidate | pass | fail | inconclusive |", "|---|---|---|---|"]  # fmt: skip
    for name, c in result["counts"].items():
        lines.append(f"| {name} | {c['pass']} | {c['fail']} | {c['inconclusive']} |")
    lines += ["", "| trial | candidate | verdict | artifact | increase % | 95% interval % | ABBA rounds |",
              "|---|---|---|---|---|---|---|"]
    for name, trials in result["trials"].items():
        for i, t in enumerate(trials, 1):
            for c in t["checks"]:
                lo, hi = c["interval_pct"]
                lines.append(f"| {i} | {name} | {t['verdict']} | {c['artifact']} | {c['increase_pct']:+.1f} | "
                             f"{lo:+.1f} to {hi:+.1f} | {c['rounds']} |")
    lines += ["", f"Result: {'PASS' if result['passed'] else 'FAIL'} (copy never fails; slower fails >= 9 of 10)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
