"""edgekd's Hugging Face export and INT8 against Hugging Face Optimum's, on the same BERT, side by side in one run.

The model: a BERT built from a config (random init, no download; 4 layers, hidden 128, 4 heads, a WordPiece
tokenizer over a few hundred words saved beside it), used as a sentence-embedding encoder. The inputs: a fixed
batch of sentences tokenized to 64 tokens with padding.

- edgekd: `load_hf_encoder` + `export_onnx` + the ONNX Runtime parity run (what distill-and-export's export stage
  does), then `quantize_int8_dynamic`. Its graph takes `input_ids` only, derives the attention mask inside, and
  returns the mean-pooled embedding; the sequence length is fixed at export (batch is the dynamic axis).
- Optimum: `optimum.exporters.onnx.main_export(task="feature-extraction")` (its defaults, validation included),
  then `ORTQuantizer` with `AutoQuantizationConfig.avx512_vnni` (or `avx2` on a CPU without VNNI),
  `is_static=False`: once with `per_channel=False` as Optimum's documentation shows, once with `per_channel=True`
  as edgekd quantizes. Its graph takes `input_ids`, `attention_mask`, `token_type_ids` and returns
  `last_hidden_state`; the embedding is mean-pooled from it in NumPy over the same mask, as a user must.

Compared: the mean-pooled embedding of each ONNX model against the fp32 PyTorch model's on the same token ids
(max |difference|, and cosine), file size, export and quantize wall time, and ONNX Runtime CPU latency at batch 1
(same session options and threads, warm-up excluded, rounds interleaved in a rotating order, one session alive at a
time; Optimum's timed call includes its NumPy pooling and gets the attention mask ready-made from the tokenizer).

Run it in its own environment: optimum-onnx 0.1 requires transformers < 4.58, edgekd's main environment has 5.x.
  python -m venv /tmp/optvenv && /tmp/optvenv/bin/pip install torch==2.13.0
  /tmp/optvenv/bin/pip install -e ".[hf,optimum]"
  /tmp/optvenv/bin/python benchmarks/hf_export_vs_optimum.py [--threads 1] [--seconds 2] [--rounds 3]
Writes benchmarks/results/hf_export_vs_optimum.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.export.onnx import export_onnx  # noqa: E402
from edgekd.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from edgekd.measure import TimingPolicy  # noqa: E402
from edgekd.measure.graph import files_on_disk  # noqa: E402
from edgekd.measure.quality import mean_cosine  # noqa: E402
from edgekd.measure.timing import summarize_ms, time_runs  # noqa: E402
from edgekd.models.hf import load_hf_encoder  # noqa: E402
from edgekd.quantize.ort_int8 import quantize_int8_dynamic  # noqa: E402
from edgekd.targets.this_host import cpu_model, isa_flags  # noqa: E402

SEQ_LEN = 64
DIAGNOSTIC = "SkipLayerNormFusion off"
OPSET = 18  # edgekd's recipe default (export.opset)
# The ops whose count tells whether ONNX Runtime fused the transformer blocks when it loaded the model.
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
             "DynamicQuantizeLinear", "MatMulInteger")  # fmt: skip


def make_words(count: int) -> list[str]:
    """`count` distinct made-up words of two or three syllables (deterministic)."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = ["".join(p) for p in itertools.product(syllables[::3], syllables[1::4])]
    return words[:count]


def make_bert(directory: Path, words: list[str]) -> Path:
    """A random-init 4-layer BERT (hidden 128, 4 heads) and its WordPiece tokenizer, saved to `directory`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(str(directory))
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=128)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(directory))
    return directory


def make_inputs(directory: Path, words: list[str], count: int = 8) -> tuple[np.ndarray, int]:
    """`count` sentences of 12 to 60 words, tokenized to SEQ_LEN tokens with padding; and the pad id."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    rng = np.random.default_rng(0)
    lengths = [40, *rng.integers(12, 61, count - 1)]  # the first one (timed at batch 1) is 42 tokens + 22 pads
    texts = [" ".join(rng.choice(words, n)) for n in lengths]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="np")
    return encoded["input_ids"].astype(np.int64), int(tokenizer.pad_token_id)


@contextlib.contextmanager
def quiet():
    """The exporters and quantizers print and warn at length; keep the benchmark's output readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def ort_session(path: Path, threads: int, disabled: tuple[str, ...] = (), optimized: Path | None = None):
    """The same session options as edgekd's ONNX Runtime runtime, for both sides; `disabled` names ORT graph
    optimizers to switch off (a diagnostic only: neither tool does that by default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled))  # fmt: skip


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the non-padding tokens, as edgekd's `mean_pool` does inside its graph."""
    weights = mask[..., None].astype(hidden.dtype)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)


@dataclass(frozen=True)
class Model:
    side: str  # "edgekd" or "optimum": which inputs the graph takes and what it returns
    path: Path
    disabled: tuple[str, ...] = ()


def make_runner(model: Model, threads: int, pad_id: int) -> Callable[[np.ndarray], np.ndarray]:
    """token ids -> mean-pooled embedding; Optimum's side feeds the tokenizer's mask and pools in NumPy."""
    session = ort_session(model.path, threads, model.disabled)
    if model.side == "edgekd":
        return lambda ids: session.run(None, {"input_ids": ids})[0]
    names = [i.name for i in session.get_inputs()]
    masks: dict[bytes, np.ndarray] = {}

    def run(ids: np.ndarray) -> np.ndarray:  # the tokenizer hands the mask over with the ids: built once, untimed
        key = ids.tobytes()
        if key not in masks:
            masks[key] = (ids != pad_id).astype(np.int64)
        mask = masks[key]
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
        return pooled(session.run(None, {n: feed[n] for n in names})[0], mask)

    return run


def graph_facts(model: Model, work: Path) -> dict:
    """Inputs, node count as exported and after ONNX Runtime's load-time optimisation, the fused ops, and the
    bytes of per-node metadata (the dynamo exporter records each node's PyTorch origin there)."""
    exported = onnx.load(str(model.path), load_external_data=False)
    optimized = work / f"{model.path.stem}.{len(model.disabled)}.ort-optimized.onnx"
    ort_session(model.path, 1, model.disabled, optimized)
    ops = Counter(n.op_type for n in onnx.load(str(optimized), load_external_data=False).graph.node)
    weights = {t.name for t in exported.graph.initializer}
    return {"inputs": [i.name for i in exported.graph.input if i.name not in weights],
            "opset": next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")),
            "nodes_exported": len(exported.graph.node), "nodes_after_ort_optimization": sum(ops.values()),
            "fused_ops_after_ort_optimization": {op: ops[op] for op in FUSED_OPS if ops[op]},
            "node_metadata_bytes": sum(len(m.key) + len(m.value) for n in exported.graph.node
                                       for m in n.metadata_props)}  # fmt: skip


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in files_on_disk([path], "onnx"))


def timed(work: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def export_edgekd(model_dir: Path, ids: np.ndarray, pad_id: int, out: Path) -> None:
    """What distill-and-export's export stage does: load, export (dynamo, checker), one ONNX Runtime parity run."""
    encoder = load_hf_encoder(model_dir, "embedding", 0, pad_id)
    export_onnx(encoder, ids, "input_ids", out, OPSET)
    make_runner(Model("edgekd", out), 1, pad_id)(ids)


def export_optimum(model_dir: Path, out_dir: Path) -> None:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), out_dir, task="feature-extraction", local_files_only=True)


def quantize_optimum(onnx_dir: Path, out_dir: Path, per_channel: bool) -> None:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    quantizer = ORTQuantizer.from_pretrained(str(onnx_dir), file_name="model.onnx")
    config = getattr(AutoQuantizationConfig, optimum_target())(is_static=False, per_channel=per_channel)
    quantizer.quantize(save_dir=str(out_dir), quantization_config=config)


def optimum_target() -> str:
    """Optimum's AutoQuantizationConfig for this CPU."""
    return "avx512_vnni" if "avx512_vnni" in isa_flags() else "avx2"


def produce(model_dir: Path, ids: np.ndarray, pad_id: int, out: Path) -> tuple[dict[str, Model], dict[str, float]]:
    """Every file of the comparison under `out`, and the seconds each step took."""
    models = {"edgekd fp32": Model("edgekd", out / "edgekd.onnx"),
              "optimum fp32": Model("optimum", out / "optimum" / "model.onnx"),
              "edgekd int8-dynamic": Model("edgekd", out / "edgekd.int8-dynamic.onnx"),
              "optimum int8-dynamic": Model("optimum", out / "optimum-int8" / "model_quantized.onnx"),
              "optimum int8-dynamic per-channel": Model("optimum", out / "optimum-int8-pc" / "model_quantized.onnx")}
    steps = {
        "edgekd export": lambda: export_edgekd(model_dir, ids, pad_id, models["edgekd fp32"].path),
        "optimum export": lambda: export_optimum(model_dir, out / "optimum"),
        "edgekd quantize": lambda: quantize_int8_dynamic(models["edgekd fp32"].path,
                                                         models["edgekd int8-dynamic"].path),
        "optimum quantize": lambda: quantize_optimum(out / "optimum", out / "optimum-int8", False),
        "optimum quantize per-channel": lambda: quantize_optimum(out / "optimum", out / "optimum-int8-pc", True),
    }  # fmt: skip
    with quiet():
        seconds = {name: timed(step) for name, step in steps.items()}
    return models, seconds


def accuracy(model: Model, ids: np.ndarray, expected: np.ndarray, pad_id: int, threads: int) -> dict[str, float]:
    """Max |difference| and per-sentence cosine of the model's embeddings against PyTorch's."""
    outputs = make_runner(model, threads, pad_id)(ids)
    cosines = [mean_cosine(outputs[i : i + 1], expected[i : i + 1]) for i in range(len(ids))]
    return {"max_abs_diff": float(np.max(np.abs(outputs - expected))), "cosine_mean": float(np.mean(cosines)),
            "cosine_min": float(np.min(cosines))}  # fmt: skip


def latency_rounds(models: dict[str, Model], sample: np.ndarray, pad_id: int, threads: int, rounds: int,
                   policy: TimingPolicy) -> list[dict[str, dict]]:  # fmt: skip
    """Per round, each model's batch-1 latency; the order rotates each round, one session alive at a time."""
    names, results = list(models), []
    for index in range(rounds):
        entry = {}
        for name in names[index % len(names) :] + names[: index % len(names)]:
            stats = summarize_ms(time_runs(make_runner(models[name], threads, pad_id), sample, policy))
            entry[name] = {"p50_ms": stats.p50, "mean_ms": stats.mean, "cv": stats.cv, "runs": stats.runs}
        results.append({n: entry[n] for n in names})
        print(f"round {index + 1}: " + ", ".join(f"{n} {e['p50_ms']:.3f} ms" for n, e in results[-1].items()))
    return results


def skip_layernorm_kernel_us(hidden: int, threads: int, policy: TimingPolicy) -> dict[str, float]:
    """p50 microseconds of ORT's fused SkipLayerNormalization against the Add + LayerNormalization it replaces, on
    one [1, SEQ_LEN, hidden] input with graph optimisation off: the kernel cost behind the fusion's effect."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.full(hidden, v, np.float32), n) for n, v in (("g", 1.0), ("b", 0.0))]
    shape = [1, SEQ_LEN, hidden]
    feed = {n: np.random.default_rng(i).standard_normal(shape).astype(np.float32) for i, n in enumerate("xs")}
    graphs = {"SkipLayerNormalization": [helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b"], ["y"],
                                                          domain="com.microsoft", epsilon=1e-12)],
              "Add + LayerNormalization": [helper.make_node("Add", ["x", "s"], ["a"]),
                                           helper.make_node("LayerNormalization", ["a", "g", "b"], ["y"],
                                                            epsilon=1e-12)]}  # fmt: skip
    out = {}
    for name, nodes in graphs.items():
        graph = helper.make_graph(nodes, "kernel", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                                                    for n in "xs"],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], weights)  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                        helper.make_opsetid("com.microsoft", 1)])  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        out[name] = round(summarize_ms(time_runs(lambda _, s=session: s.run(None, feed), None, policy)).p50 * 1e3, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # Optimum and the ORT quantizer log each step at INFO/WARNING
    policy = TimingPolicy(warmup_runs=20, min_runs=100, min_seconds=args.seconds)

    with tempfile.TemporaryDirectory(prefix="edgekd-bench-optimum-") as tmp:
        work = Path(tmp)
        words = make_words(300)
        model_dir = make_bert(work / "bert", words)
        ids, pad_id = make_inputs(model_dir, words)
        with torch.no_grad():
            expected = load_hf_encoder(model_dir, "embedding", 0, pad_id).eval()(torch.from_numpy(ids)).numpy()
        # Twice: the first pass pays each tool's lazy imports and first-call set-up; the second is what a
        # repeated export costs. The files measured are the second pass's (identical by construction).
        _, cold = produce(model_dir, ids, pad_id, work / "pass1")
        models, warm = produce(model_dir, ids, pad_id, work / "pass2")
        for name, model in list(models.items()):
            if "SkipLayerNormalization" in graph_facts(model, work)["fused_ops_after_ort_optimization"]:
                models[f"{name} [{DIAGNOSTIC}]"] = replace(model, disabled=("SkipLayerNormFusion",))
        facts = {name: {"bytes": size_bytes(m.path), **accuracy(m, ids, expected, pad_id, args.threads),
                        "graph": graph_facts(m, work)} for name, m in models.items()}  # fmt: skip
        for name, f in facts.items():
            print(f"{name}: {f['bytes']} B, max |diff| {f['max_abs_diff']:.2e}, cosine {f['cosine_mean']:.6f}, "
                  f"{f['graph']['fused_ops_after_ort_optimization']}")
        rounds = latency_rounds(models, ids[:1], pad_id, args.threads, args.rounds, policy)
    kernels = {f"hidden {h}": skip_layernorm_kernel_us(h, args.threads, policy) for h in (128, 768)}
    print(f"SkipLayerNormalization kernel p50 us: {kernels}")

    def median_of(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    def diagnostic(name: str) -> str:
        return f"{name} [{DIAGNOSTIC}]" if f"{name} [{DIAGNOSTIC}]" in facts else name

    pairs = {"fp32": ("edgekd fp32", "optimum fp32", "export"),
             "int8-dynamic": ("edgekd int8-dynamic", "optimum int8-dynamic", "quantize"),
             "int8-dynamic per-channel": ("edgekd int8-dynamic", "optimum int8-dynamic per-channel",
                                          "quantize per-channel")}  # fmt: skip
    comparison = {}
    for label, (ours, theirs, step) in pairs.items():
        ours_meta, theirs_meta = (facts[n]["graph"]["node_metadata_bytes"] for n in (ours, theirs))
        comparison[label] = {
            "p50_ratio": statistics.median(r[ours]["p50_ms"] / r[theirs]["p50_ms"] for r in rounds),
            "mean_ratio": statistics.median(r[ours]["mean_ms"] / r[theirs]["mean_ms"] for r in rounds),
            f"p50_ratio_{DIAGNOSTIC.replace(' ', '_')}": statistics.median(
                r[diagnostic(ours)]["p50_ms"] / r[diagnostic(theirs)]["p50_ms"] for r in rounds),
            "size_ratio": facts[ours]["bytes"] / facts[theirs]["bytes"],
            "size_ratio_without_node_metadata": (facts[ours]["bytes"] - ours_meta) /
                                                (facts[theirs]["bytes"] - theirs_meta),
            f"{step.split()[0]}_seconds_ratio_warm": warm[f"edgekd {step.split()[0]}"] / warm[f"optimum {step}"],
            f"{step.split()[0]}_seconds_ratio_cold": cold[f"edgekd {step.split()[0]}"] / cold[f"optimum {step}"],
            "max_abs_diff": [facts[ours]["max_abs_diff"], facts[theirs]["max_abs_diff"]],
            "cosine_mean": [facts[ours]["cosine_mean"], facts[theirs]["cosine_mean"]],
        }  # fmt: skip

    packages = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxscript")
    result = {
        "benchmark": "edgekd Hugging Face export + INT8 dynamic against Optimum (main_export + ORTQuantizer)",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpu": cpu_model(), "machine": platform.machine(), "python": platform.python_version(),
                 "isa_flags": list(isa_flags())},  # fmt: skip
        "versions": {p: version(p) for p in packages},
        "command": f"python benchmarks/hf_export_vs_optimum.py --threads {args.threads} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}",
        "model": {"architecture": "BertModel (random init from a config)", "layers": 4, "hidden": 128, "heads": 4,
                  "intermediate": 512, "vocab": len(words) + 5, "seq_len": SEQ_LEN, "eval_batch": len(ids),
                  "timed_sample_tokens": int((ids[0] != pad_id).sum())},  # fmt: skip
        "settings": {"threads": args.threads, "rounds": args.rounds, "batch": 1, "policy": vars(policy),
                     "edgekd_opset": OPSET, "optimum_quantization_config": optimum_target()},  # fmt: skip
        "step_seconds": {"cold": cold, "warm": warm},
        "models": facts,
        "rounds": rounds,
        "comparison_edgekd_over_optimum": comparison,
        "skip_layernorm_kernel_p50_us": kernels,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "hf_export_vs_optimum.json", result)
    write_text_atomic(args.results / "hf_export_vs_optimum.md", markdown(result, median_of))
    for label, c in comparison.items():
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in c.items() if isinstance(v, float)))
    return 0


def markdown(result: dict, median_of: Callable[[str, str], float]) -> str:
    """The results page: each figure with what it means, and the findings stated from the figures."""
    facts, comparison, model = result["models"], result["comparison_edgekd_over_optimum"], result["model"]
    settings, cold, warm = result["settings"], result["step_seconds"]["cold"], result["step_seconds"]["warm"]
    diag_key = f"p50_ratio_{DIAGNOSTIC.replace(' ', '_')}"
    lines = [f"# {result['benchmark']}", "",
             f"{result['created_at']}, {result['host']['cpu']} ({result['host']['machine']}), "
             f"{settings['threads']} thread(s), {settings['rounds']} interleaved rounds of at least "
             f"{settings['policy']['min_seconds']:g} s and {settings['policy']['min_runs']} runs per model after "
             f"{settings['policy']['warmup_runs']} warm-up runs; Optimum INT8 config "
             f"`AutoQuantizationConfig.{settings['optimum_quantization_config']}(is_static=False, per_channel=...)`.",
             "", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", "",
             f"Reproduce (in a venv with `.[hf,optimum]`, see benchmarks/README.md): `{result['command']}`", "",
             f"Model: {model['architecture']}, {model['layers']} layers, hidden {model['hidden']}, {model['heads']} "
             f"heads, vocab {model['vocab']}; inputs {model['eval_batch']} sentences tokenized to {model['seq_len']} "
             f"tokens with padding; latency on the first ({model['timed_sample_tokens']} real tokens) at batch 1. "
             "Compared output: the mean-pooled sentence embedding (edgekd's graph pools inside; Optimum's "
             "`last_hidden_state` is pooled in NumPy over the same mask), against the fp32 PyTorch model's.", "",
             "## edgekd / Optimum", "",
             "| pair | p50 ratio | mean ratio | p50 ratio, ORT SkipLayerNormFusion off | size ratio (without node "
             "metadata) | export or quantize time ratio, warm (cold) | max abs diff edgekd, Optimum | cosine edgekd, "
             "Optimum |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, c in comparison.items():
        step = "export" if "export_seconds_ratio_warm" in c else "quantize"
        lines.append(f"| {label} | {c['p50_ratio']:.3f} | {c['mean_ratio']:.3f} | {c[diag_key]:.3f} | "
                     f"{c['size_ratio']:.3f} ({c['size_ratio_without_node_metadata']:.3f}) | "
                     f"{c[f'{step}_seconds_ratio_warm']:.2f} ({c[f'{step}_seconds_ratio_cold']:.2f}) | "
                     f"{c['max_abs_diff'][0]:.2e}, {c['max_abs_diff'][1]:.2e} | "
                     f"{c['cosine_mean'][0]:.6f}, {c['cosine_mean'][1]:.6f} |")  # fmt: skip
    lines += ["", "## Per model", "",
              "| model | inputs | size KiB | p50 ms | mean ms | max abs diff vs PyTorch | cosine to PyTorch "
              "(mean / min) | nodes exported -> after ORT load | fused by ORT at load |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, f in facts.items():
        g = f["graph"]
        fused = ", ".join(f"{op} {n}" for op, n in g["fused_ops_after_ort_optimization"].items()) or "-"
        lines.append(f"| {name} | {', '.join(g['inputs'])} | {f['bytes'] / 1024:.0f} | "
                     f"{median_of(name, 'p50_ms'):.3f} | {median_of(name, 'mean_ms'):.3f} | {f['max_abs_diff']:.2e} "
                     f"| {f['cosine_mean']:.6f} / {f['cosine_min']:.6f} | {g['nodes_exported']} -> "
                     f"{g['nodes_after_ort_optimization']} | {fused} |")  # fmt: skip
    lines += ["", "Step seconds, cold (first in the process) / warm (again): " +
              ", ".join(f"{k} {cold[k]:.2f} / {warm[k]:.2f}" for k in warm) + ".", "",  # fmt: skip
              "## What the figures mean", "",
              "- Ratios are edgekd / Optimum: below 1 means edgekd is faster, smaller or quicker to produce. A "
              "latency ratio is the median of the per-round ratios; a per-model p50 or mean is the median over "
              "rounds.",
              "- Latency: ONNX Runtime CPU, batch 1, the same session options for both (edgekd's: intra-op threads "
              "as stated, inter-op 1, default graph optimisation); one session alive at a time. Optimum's timed "
              "call includes its NumPy mean pooling (a few microseconds) and gets the attention mask ready-made, as "
              "from a tokenizer; edgekd's derives the mask and pools inside the graph. ONNX opset: edgekd "
              f"{facts['edgekd fp32']['graph']['opset']}, Optimum {facts['optimum fp32']['graph']['opset']}.",
              "- fp32 pairs the two exports; int8-dynamic pairs edgekd's `quantize_int8_dynamic` file (per-channel "
              "weights, after ORT's `quant_pre_process`) with Optimum's per-tensor config (as its documentation "
              "shows) and with its per-channel one.",
              f"- Rows marked [{DIAGNOSTIC}] are the same file loaded with ONNX Runtime's `SkipLayerNormFusion` "
              "switched off (`disabled_optimizers`): neither tool does this by default; it is there to show what "
              "the fusion costs. A pair whose Optimum file has nothing for that fusion to fuse uses its default row.",
              "- Export time: edgekd's covers loading the directory, the dynamo export with the full ONNX checker, "
              "and one ONNX Runtime parity run (its export stage); Optimum's is `main_export` with its defaults "
              "(TorchScript export, then its own ONNX Runtime validation). Quantize time: edgekd's includes "
              "`quant_pre_process` (shape inference and ORT graph optimisation); Optimum quantizes directly.",
              "- Size is the .onnx file(s) on disk; in brackets, without the per-node metadata the dynamo exporter "
              "writes (each node's PyTorch origin), which is a fixed cost per node and large only on a model this "
              "small.", "- max abs diff and cosine: over the 8 sentences' embeddings, against the fp32 PyTorch "
              "model in eager attention (edgekd's loader); cosine per sentence, then mean and min.", "",
              "## Findings (from this run's figures)", "", *findings(result, median_of)]  # fmt: skip
    return "\n".join(lines) + "\n"


def findings(result: dict, median_of: Callable[[str, str], float]) -> list[str]:
    """Plain statements read off the figures, so that a re-run rewrites them with its own numbers."""
    facts, comparison = result["models"], result["comparison_edgekd_over_optimum"]
    diag_key = f"p50_ratio_{DIAGNOSTIC.replace(' ', '_')}"
    fp32, int8 = comparison["fp32"], comparison["int8-dynamic"]
    out = []
    for label, c in (("fp32", fp32), ("INT8 dynamic", int8)):
        word = "slower" if c["p50_ratio"] > 1 else "faster"
        out.append(f"- {label} latency: edgekd's file is {abs(c['p50_ratio'] - 1) * 100:.0f}% {word} than Optimum's "
                   f"at p50 (ratio {c['p50_ratio']:.3f}); with ORT's SkipLayerNormFusion off for both the ratio is "
                   f"{c[diag_key]:.3f}.")  # fmt: skip
    for name in ("edgekd fp32", "edgekd int8-dynamic"):
        off = f"{name} [{DIAGNOSTIC}]"
        if off in facts:
            gain = 1 - median_of(off, "p50_ms") / median_of(name, "p50_ms")
            fused = facts[name]["graph"]["fused_ops_after_ort_optimization"].get("SkipLayerNormalization", 0)
            out.append(f"- ORT fuses {fused} residual Add + LayerNormalization pairs of `{name}` into "
                       f"SkipLayerNormalization at load; switching that fusion off changes its p50 by "
                       f"{-gain * 100:+.0f}%. The dynamo exporter's clean Add -> LayerNormalization pattern is "
                       "what lets ORT fuse it; Optimum's TorchScript graph fuses fewer (see the table).")  # fmt: skip
    for shape, k in result["skip_layernorm_kernel_p50_us"].items():
        out.append(f"- The kernel itself, on one [1, {result['model']['seq_len']}, {shape.split()[1]}] input with "
                   f"graph optimisation off: SkipLayerNormalization {k['SkipLayerNormalization']:.1f} us against "
                   f"Add + LayerNormalization {k['Add + LayerNormalization']:.1f} us "
                   f"({k['SkipLayerNormalization'] / k['Add + LayerNormalization']:.2f}x).")
    out.append(f"- Accuracy: fp32 max abs diff {fp32['max_abs_diff'][0]:.1e} (edgekd) vs {fp32['max_abs_diff'][1]:.1e} "
               f"(Optimum); INT8 cosine to PyTorch {int8['cosine_mean'][0]:.6f} vs {int8['cosine_mean'][1]:.6f} "
               f"(Optimum per-channel {comparison['int8-dynamic per-channel']['cosine_mean'][1]:.6f}).")  # fmt: skip
    out.append(f"- Size: edgekd's fp32 file is {fp32['size_ratio']:.3f}x Optimum's, "
               f"{fp32['size_ratio_without_node_metadata']:.3f}x without the dynamo exporter's per-node metadata; "
               f"INT8 {int8['size_ratio']:.3f}x.")  # fmt: skip
    out.append(f"- Export time (warm): edgekd {fp32['export_seconds_ratio_warm']:.2f}x Optimum's; the dynamo exporter "
               "traces with torch.export and runs the full checker, Optimum uses the TorchScript exporter.")
    out.append("- Interface: edgekd's graph takes `input_ids` only (mask derived inside, as every edgekd model has one "
               "input) and returns the pooled embedding, with the sequence length fixed at export; Optimum's takes "
               "`input_ids`, `attention_mask`, `token_type_ids` with dynamic batch and sequence axes and returns "
               "per-token states, so its user pools outside the graph.")
    return out


if __name__ == "__main__":
    sys.exit(main())
