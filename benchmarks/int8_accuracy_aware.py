"""Plain static INT8 against accuracy-aware static INT8 (quantize.max_drop), on the encoders of int8_transformers.py.

Same models, sentences, calibration / validation / test split and timing as benchmarks/int8_transformers.py.
Variants: ORT fp32, edgekd's plain static INT8 (safe ops, auto calibration) and the same under a budget of
`--max-drop` points of cosine to fp32 on the validation sentences (edgekd.quantize.accuracy_aware.search_keep_float);
OpenVINO fp32, plain NNCF int8 (transformer model type) and NNCF's accuracy control under the same budget and
validation sentences (edgekd.quantize.nncf_accuracy, what `build.openvino_int8 = "nncf"` runs under a budget).
Reported: cosine to the fp32 PyTorch model on the test sentences, p50 at batch 1 against ORT fp32 (interleaved
rounds, OpenVINO rows in the same rounds), the nodes kept in float with the points each bought, the operations
NNCF reverted, and each search's own time.

  HF_HUB_OFFLINE=1 python benchmarks/int8_accuracy_aware.py [--max-drop 1] [--threads 1] [--seconds 2] [--rounds 3]
Writes benchmarks/results/int8_accuracy_aware.{json,md}.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from int8_transformers import (  # noqa: E402
    LOCK,
    batch1_outputs,
    latency_rounds,
    lock,
    models,
    runner,
    save_results,
    sentences,
    token_ids,
)

from edgekd.export.onnx import export_onnx  # noqa: E402
from edgekd.measure import TimingPolicy  # noqa: E402
from edgekd.measure.quality import TEACHER_COSINE, mean_cosine  # noqa: E402
from edgekd.quantize.accuracy_aware import search_keep_float  # noqa: E402
from edgekd.quantize.budget import QuantizeBudget  # noqa: E402
from edgekd.quantize.calibration import quantize_static_calibrated  # noqa: E402
from edgekd.quantize.ort_int8 import calibration_feeds  # noqa: E402
from edgekd.runtimes.openvino_runtime import build_int8_ir_nncf, build_ir  # noqa: E402

PLAIN, AWARE = "ORT static INT8 (safe ops, auto calibration)", "ORT static INT8, accuracy-aware"
OV_FP32, NNCF_PLAIN, NNCF_AWARE = "OpenVINO fp32", "OpenVINO int8, NNCF", "OpenVINO int8, NNCF accuracy control"


def prepare(model: torch.nn.Module, work: Path, ids: dict, max_drop: float,
            max_float_nodes: int) -> tuple[dict[str, Path], dict, dict, dict]:  # fmt: skip
    fp32 = work / "student.onnx"
    export_onnx(model, ids["test"][:2], "input_ids", fp32, 18)
    log = work / "quantize.log"
    files = {"ORT fp32": fp32, PLAIN: work / "plain.onnx", AWARE: work / "aware.onnx", OV_FP32: work / "fp32.xml",
             NNCF_PLAIN: work / "nncf.xml", NNCF_AWARE: work / "nncf-aware.xml"}
    chosen = quantize_static_calibrated(fp32, files[PLAIN], "input_ids", ids["calibration"], ids["validation"],
                                        TEACHER_COSINE, method="auto", log_path=log)  # fmt: skip
    shutil.copyfile(files[PLAIN], files[AWARE])
    search = search_keep_float(fp32, files[AWARE], "input_ids", ids["calibration"], ids["validation"],
                               TEACHER_COSINE, max_drop, chosen["method"], max_float_nodes=max_float_nodes,
                               log_path=log)  # fmt: skip
    build_ir(fp32, files[OV_FP32])
    feeds = calibration_feeds(ids["calibration"], "input_ids")
    build_int8_ir_nncf(fp32, files[NNCF_PLAIN], feeds, transformer=True, log_path=log)
    budget = QuantizeBudget(max_drop, "--max-drop", TEACHER_COSINE, max_float_nodes)
    nncf = build_int8_ir_nncf(fp32, files[NNCF_AWARE], feeds, transformer=True, log_path=log,
                              under_budget=(budget, ids["validation"], "input_ids"))  # fmt: skip
    return files, chosen, search, nncf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-drop", type=float, default=1.0, help="points of cosine (x100) on validation")
    parser.add_argument("--max-float-nodes", type=int, default=8, help="quantize.max_float_nodes (both searches)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    policy = TimingPolicy(warmup_runs=20, min_runs=50, min_seconds=args.seconds)
    ids_all = token_ids(sentences(456, seed=0))
    ids = {"calibration": ids_all[:128], "validation": ids_all[128:256], "test": ids_all[256:]}
    results, prepared = {}, {}
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-aware-") as tmp:
        # exclusive from the start: the ORT search times each kept-float node's latency cost while preparing
        lock(fd, fcntl.LOCK_EX, "exclusive")
        for index, (label, model) in enumerate(models().items()):
            work = Path(tmp) / str(index)
            work.mkdir()
            with torch.no_grad():
                expected = model(torch.from_numpy(ids["test"])).numpy()
            files, chosen, search, nncf = prepare(model, work, ids, args.max_drop, args.max_float_nodes)
            cosine = {name: mean_cosine(batch1_outputs(runner(path, args.threads), ids["test"]), expected)
                      for name, path in files.items()}  # fmt: skip
            prepared[label] = files, chosen, search, nncf, cosine
            print(label, cosine, search["met"], [k["node"] for k in search["kept_float"]], nncf["reverted"],
                  flush=True)
        for label, (files, chosen, search, nncf, cosine) in prepared.items():
            rounds = latency_rounds(files, ids["test"][:1], args.threads, args.rounds, policy)
            results[label] = {
                "variants": {name: {"cosine_to_fp32_pytorch": round(cosine[name], 6),
                                    "p50_ms": round(statistics.median(r[name] for r in rounds), 4),
                                    "speedup_vs_ort_fp32": round(statistics.median(r["ORT fp32"] / r[name]
                                                                                   for r in rounds), 3)}
                             for name in files},
                "calibration": {k: v for k, v in chosen.items() if k != "candidates"},
                "search": {k: search[k] for k in ("max_drop", "met", "all_int8_drop_points", "drop_points", "tried",
                                                  "ranked_nodes", "seconds", "latency")},
                "kept_float": [{k: s[k] for k in ("node", "op_type", "input_sqnr_db", "bought_points",
                                                  "latency_cost_ms", "drop_points")} for s in search["kept_float"]],
                "nncf_accuracy_control": nncf,
                "rounds": rounds,
            }  # fmt: skip
        fcntl.flock(fd, fcntl.LOCK_UN)
    save_results(args, "int8_accuracy_aware", len(ids["test"]), results, render)
    return 0


def render(payload: dict) -> str:
    lines = ["# Plain against accuracy-aware static INT8", "",
             f"{payload['created_at']} on {payload['cpu']} (flags: {', '.join(payload['cpu_flags'])}), "
             f"{payload['threads']} thread(s), batch 1, {payload['seq_len']} tokens, {payload['rounds']} interleaved "
             f"rounds of >= {payload['seconds_per_round']} s per variant; cosine on {payload['test_sentences']} test "
             "sentences against the fp32 PyTorch model.", "", f"Command: `{payload['command']}`", ""]  # fmt: skip
    for label, result in payload["results"].items():
        search = result["search"]
        lines += [f"## {label}", "", "| variant | cosine to fp32 PyTorch | p50 ms | speed-up vs ORT fp32 |",
                  "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {n} | {v['cosine_to_fp32_pytorch']:.4f} | {v['p50_ms']:.3f} | {v['speedup_vs_ort_fp32']:.2f}x |"
                  for n, v in result["variants"].items()]  # fmt: skip
        lines += ["", f"Budget {search['max_drop']:g} points on validation: {'met' if search['met'] else 'NOT met'}; "
                  f"{search['all_int8_drop_points']:.2f} -> {search['drop_points']:.2f} points; "
                  f"{len(result['kept_float'])} of {search['ranked_nodes']} quantized compute nodes kept in float; "
                  f"search {search['seconds']:.0f} s ({search['latency']}).", "",
                  "| kept in float | op | input SQNR dB | points bought | p50 cost ms |", "|---|---|---|---|---|"]
        lines += [f"| {k['node']} | {k['op_type']} | {k['input_sqnr_db']:.1f} | {k['bought_points']:+.2f} | "
                  f"{k['latency_cost_ms']:+.3f} |" for k in result["kept_float"]] + [""]  # fmt: skip
        nncf = result.get("nncf_accuracy_control")
        if nncf:
            reverted = ", ".join(f"{r['name']} ({r['op_type']})" for r in nncf["reverted"]) or "none"
            lines += [f"NNCF accuracy control, budget {nncf['max_drop']:g} points: "
                      f"{'met' if nncf['met'] else 'NOT met'}; {nncf['plain_drop_points']:.2f} -> "
                      f"{nncf['drop_points']:.2f} points ({nncf['judged_on']}); reverted {len(nncf['reverted'])} of "
                      f"{nncf['quantized_ops']} int8 ops: {reverted}; search {nncf['seconds']:.0f} s.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
