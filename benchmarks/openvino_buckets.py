"""OpenVINO sequence buckets against dynamic shapes, on the IRs of deploy_vs_by_hand's two edgekd runs: ms per
text at the test texts' real lengths (each call one text, lengths mixed as an app sends them) and peak memory.

For each IR (fp32, int8) of each run: the IR as edgekd built it with buckets (rt_info `edgekd/sequence_buckets`)
and the same IR without them, each loaded through edgekd's OpenVINO runner in a process of its own (peak RSS of
that process, VmHWM, after running every text), latency in interleaved rounds in this process: per round each
variant runs all texts in turn, the median of the per-text means over rounds is reported, and the ratio is the
median of the per-round ratios.

  HF_HUB_OFFLINE=1 python benchmarks/deploy_vs_by_hand.py prepare     # the runs, if not made yet
  flock -x /tmp/edgekd-cpu.lock python benchmarks/openvino_buckets.py [--rounds 5] [--seconds 1] [--texts 64]
Writes benchmarks/results/openvino_buckets.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(os.environ.get("EDGEKD_BENCH_WORK", "/tmp/edgekd-deploy-bench"))
RUNS = ("minilm-3l", "bert-4x256")
IRS = ("student.xml", "student.int8.xml")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")


def texts(run_dir: Path, count: int) -> list[dict[str, np.ndarray]]:
    """The first `count` test texts, each at its own token length (the padding cut off)."""
    from edgekd.pipeline.layout import TEST_SPLIT
    from edgekd.samples import load_inputs, real_lengths, take, trim_to_length

    inputs = dict(load_inputs(run_dir / TEST_SPLIT))
    inputs.pop("labels", None)  # the test split carries its labels beside the model's inputs
    lengths = real_lengths(inputs)
    return [{k: np.ascontiguousarray(v) for k, v in trim_to_length(take(inputs, slice(i, i + 1)),
                                                                     max(int(n), 1)).items()}
            for i, n in enumerate(lengths[:count])]  # fmt: skip


def without_buckets(xml: Path, target: Path) -> Path:
    """A copy of the IR with its sequence-bucket rt_info line removed, beside it with the same weights (a hard
    link to its .bin, or a copy)."""
    text = re.sub(r'\s*<sequence_buckets value="[^"]*"\s*/>', "", xml.read_text(encoding="utf-8"))
    target.write_text(text, encoding="utf-8")
    weights = target.with_suffix(".bin")
    weights.unlink(missing_ok=True)
    try:
        os.link(xml.with_suffix(".bin"), weights)
    except OSError:
        shutil.copyfile(xml.with_suffix(".bin"), weights)
    return target


def peak_rss_mb(xml: Path, run_dir: Path, count: int) -> float:
    """Peak RSS of a fresh process that loads `xml` with edgekd's runner and runs every text."""
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'benchmarks')!r}]\n"
            "from pathlib import Path\nfrom openvino_buckets import texts\n"
            "from edgekd.runtimes.openvino_runtime import RUNTIME\n"
            f"run = RUNTIME.load(Path({str(xml)!r}), 1)\n"
            f"for feed in texts(Path({str(run_dir)!r}), {count}):\n    run(feed)\n"
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))\n")
    # VmHWM (kB) of the child's own image: ru_maxrss would carry the parent's peak over fork and exec
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def per_text_ms(run, feeds: list[dict[str, np.ndarray]], seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while calls < len(feeds) or time.perf_counter() - started < seconds:
        run(feeds[calls % len(feeds)])
        calls += 1
    return (time.perf_counter() - started) * 1e3 / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    import openvino as ov

    from edgekd.fileio import write_json_atomic, write_text_atomic
    from edgekd.runtimes.openvino_buckets import buckets_of
    from edgekd.runtimes.openvino_runtime import RUNTIME
    from edgekd.targets.this_host import cpu_model, isa_flags

    results = []
    for run_name in RUNS:
        run_dir = WORK / "export" / run_name
        feeds = texts(run_dir, args.texts)
        for ir in IRS:
            xml = run_dir / "openvino" / ir
            buckets = buckets_of(ov.Core().read_model(str(xml)))
            plain = without_buckets(xml, xml.with_name(xml.stem + ".no-buckets.xml"))
            variants = {"buckets": RUNTIME.load(xml, 1), "dynamic": RUNTIME.load(plain, 1)}
            for run in variants.values():  # every length once, untimed: kernels prepared, buckets compiled
                for feed in feeds:
                    run(feed)
            rounds = []
            for r in range(args.rounds):
                order = list(variants)[:: 1 if r % 2 == 0 else -1]
                rounds.append({name: per_text_ms(variants[name], feeds, args.seconds) for name in order})
            lengths = sorted(f["attention_mask"].shape[1] for f in feeds)
            entry = {"run": run_name, "ir": ir, "buckets": list(buckets), "texts": len(feeds),
                     "tokens": {"min": lengths[0], "median": statistics.median(lengths), "max": lengths[-1]},
                     "ms_per_text": {k: round(statistics.median(r[k] for r in rounds), 4) for k in variants},
                     "dynamic_over_buckets": round(statistics.median(r["dynamic"] / r["buckets"] for r in rounds), 3),
                     "peak_rss_mb": {"buckets": round(peak_rss_mb(xml, run_dir, args.texts), 1),
                                     "dynamic": round(peak_rss_mb(plain, run_dir, args.texts), 1)},
                     "rounds": rounds}  # fmt: skip
            plain.unlink()
            plain.with_suffix(".bin").unlink(missing_ok=True)
            print(json.dumps({k: v for k, v in entry.items() if k != "rounds"}), flush=True)
            results.append(entry)
    payload = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
               "cpu_flags": sorted(set(isa_flags()) & set(FLAGS)), "threads": 1, "rounds": args.rounds,
               "seconds_per_round": args.seconds, "command": "python benchmarks/openvino_buckets.py "
               + " ".join(sys.argv[1:]), "results": results}  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "openvino_buckets.json", payload)
    write_text_atomic(args.results / "openvino_buckets.md", render(payload))
    print(render(payload))
    return 0


def render(payload: dict) -> str:
    lines = ["# OpenVINO sequence buckets against dynamic shapes", "",
             f"{payload['created_at']} on {payload['cpu']} (flags: {', '.join(payload['cpu_flags'])}), 1 thread, "
             f"batch 1, {payload['rounds']} interleaved rounds of >= {payload['seconds_per_round']} s per variant; "
             "each call one test text at its own length. Peak RSS: VmHWM of a fresh process loading the IR with "
             "edgekd's runner and running every text.", "", f"Command: `{payload['command']}`", "",
             "| run | IR | buckets kept by edgekd | texts (tokens) | ms per text, buckets | ms per text, dynamic | "
             "dynamic / buckets | peak RSS MB, buckets | peak RSS MB, dynamic |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in payload["results"]:
        kept = ",".join(map(str, e["buckets"])) or "none (dynamic)"
        tokens = f"{e['texts']} ({e['tokens']['min']}-{e['tokens']['max']}, median {e['tokens']['median']:g})"
        lines.append(f"| {e['run']} | {e['ir']} | {kept} | {tokens} | {e['ms_per_text']['buckets']:.3f} | "
                     f"{e['ms_per_text']['dynamic']:.3f} | {e['dynamic_over_buckets']:.2f}x | "
                     f"{e['peak_rss_mb']['buckets']:.0f} | {e['peak_rss_mb']['dynamic']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
