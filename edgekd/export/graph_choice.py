"""The fastest ONNX Runtime graph, by measurement: candidate graphs of one model timed side by side in this
process (interleaved rounds, same threads, batch 1 on a real sample), and the fastest whose outputs match the
exported graph's ships — if it is faster by more than the noise.

The decision reads paired ratios: in each round every candidate's median is divided by the exported graph's
median of the same round, so a drift of the machine's speed between rounds cancels; a candidate's ratio is the
median of its rounds' ratios, and it replaces the exported graph only when that is below 1 - `SWITCH_MARGIN`
(a tie keeps the simplest graph). Five rounds of 20 runs, as before, left four candidates within 7% of each
other on a busy machine and kept a graph that measured quietly is 1.14x slower than Optimum's export.

Candidates for a transformer encoder: the graph as exported; the same with ONNX Runtime's SkipLayerNormFusion
switched off in the session (ORT 1.32's fused kernel was measured slower than the Add + LayerNormalization it
replaces: benchmarks/results/hf_export_vs_optimum.md); ONNX Runtime's transformer optimizer (attention,
LayerNorm and GELU fusion) with and without that fusion. A session setting travels in the chosen file's
metadata (`edgekd.ort.disabled_optimizers`), which edgekd's ONNX Runtime runtime applies and an app copies.
OpenVINO and TensorRT keep building from the standard-op export.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.fileio import atomic_path, scratch_cwd
from edgekd.runtimes.ort_session import DISABLED_OPTIMIZERS_KEY, ort_session
from edgekd.samples import Inputs, named

SWITCH_MARGIN = 0.02  # a candidate must beat the exported graph by more than this (median paired ratio)
ROUND_SECONDS = 0.15  # each candidate's share of a round: enough runs for a stable median at any model size
SKIP_LAYER_NORM = "SkipLayerNormFusion"


@dataclass(frozen=True)
class GraphCandidate:
    name: str
    path: Path
    disabled_optimizers: tuple[str, ...] = ()
    how: str = ""  # one line: what this graph is


@dataclass
class GraphChoice:
    chosen: GraphCandidate
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> p50_ms, ratio, parity, ...

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {"chosen": self.chosen.name, "path": self.chosen.path.relative_to(root).as_posix(),
                "disabled_optimizers": list(self.chosen.disabled_optimizers), "candidates": self.figures,
                "method": "one process, interleaved rounds in shuffled order (each candidate >= the runs given and "
                          f">= {ROUND_SECONDS:g} s a round), batch 1 on the first eval sample at its padded length; "
                          "p50 = median of the round medians; ratio = median over rounds of p50 / the as-exported "
                          f"graph's p50 in the same round; a candidate replaces it only below {1 - SWITCH_MARGIN:g}"}


def write_with_setting(source: Path, target: Path, disabled: tuple[str, ...]) -> None:
    """Copy `source` to `target` recording the session setting in its metadata."""
    import onnx

    model = onnx.load(str(source))
    kept = [p for p in model.metadata_props if p.key != DISABLED_OPTIMIZERS_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if disabled:
        model.metadata_props.add(key=DISABLED_OPTIMIZERS_KEY, value=",".join(disabled))
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))


def transformer_candidates(source: Path, work_dir: Path, num_heads: int, hidden_size: int) -> list[GraphCandidate]:
    """The exported graph, and ONNX Runtime's transformer optimizer's (model_type bert), each with ORT's
    SkipLayerNormFusion on and off. An optimizer failure leaves its candidates out, never the run."""
    import logging

    candidates = [
        GraphCandidate("as-exported", source, how="the exported standard-op graph, ORT's default session"),
        GraphCandidate("as-exported/skip-layernorm-fusion-off", source, (SKIP_LAYER_NORM,),
                       "the exported graph, session with ORT's SkipLayerNormFusion off"),
    ]  # fmt: skip
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # it logs each fusion it tries
        source_path = str(Path(source).resolve())  # resolved here: scratch_cwd() leaves the working directory
        for skip_fusion in (True, False):
            options = FusionOptions("bert")
            options.enable_skip_layer_norm = skip_fusion
            options.enable_bias_skip_layer_norm = skip_fusion
            with scratch_cwd():  # its shape inference may drop debug files into the working directory
                optimized = optimize_model(source_path, model_type="bert", num_heads=num_heads,
                                           hidden_size=hidden_size, optimization_options=options, opt_level=0)
            suffix = "" if skip_fusion else "-no-skip-layernorm"
            path = work_dir / f"{source.stem}.ort-optimizer{suffix}.onnx"
            with atomic_path(path) as tmp:
                optimized.save_model_to_file(str(tmp))
            name = f"ort-transformer-optimizer{'' if skip_fusion else '/skip-layernorm-fusion-off'}"
            disabled = () if skip_fusion else (SKIP_LAYER_NORM,)
            candidates.append(GraphCandidate(name, path, disabled, "onnxruntime.transformers.optimizer (bert: "
                                             "attention, LayerNorm, GELU fusion)" + ("" if skip_fusion else
                                             ", SkipLayerNorm fusion off there and in the session")))  # fmt: skip
    except Exception:  # noqa: BLE001 - the optimizer makes candidates; the exported graph still ships without them
        logging.getLogger(__name__).debug("ORT's transformer optimizer failed", exc_info=True)
    return candidates


def time_interleaved(sessions: dict[str, Any], feeds: dict[str, np.ndarray], rounds: int, runs: int,
                     seed: int = 0, round_seconds: float = ROUND_SECONDS) -> dict[str, list[float]]:  # fmt: skip
    """Per-round median milliseconds of each session, rounds interleaved in shuffled order; each session's turn
    takes at least `runs` runs and `round_seconds`."""
    rng = random.Random(seed)
    order = list(sessions)
    medians: dict[str, list[float]] = {name: [] for name in order}
    for session in sessions.values():  # warm-up
        for _ in range(max(runs // 4, 2)):
            session.run(None, feeds)
    min_ns = int(round_seconds * 1e9)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            session, times = sessions[name], []
            session.run(None, feeds)  # re-warm after the others' turns (untimed)
            started = time.perf_counter_ns()
            while len(times) < runs or time.perf_counter_ns() - started < min_ns:
                t0 = time.perf_counter_ns()
                session.run(None, feeds)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            medians[name].append(statistics.median(times))
    return medians


def choose_graph(candidates: list[GraphCandidate], inputs: Inputs, input_name: str, threads: int, atol: float,
                 rounds: int = 7, runs: int = 10, fidelity_to: np.ndarray | None = None) -> GraphChoice:  # fmt: skip
    """Time every candidate side by side; among those whose outputs on `inputs` stay within `atol` of the first
    candidate's (the exported graph, which passed parity with PyTorch), the one with the lowest paired ratio wins
    if it is below 1 - SWITCH_MARGIN, else the first (see the module docstring).

    `fidelity_to` (the fp32 graph's outputs on `inputs`) judges quantized candidates instead, whose rounding
    differs from graph to graph: one passes when its mean cosine to those outputs is at most `atol` below the
    first candidate's."""
    from edgekd.measure.quality import mean_cosine

    feeds_all = named(inputs, input_name)
    sessions = {c.name: ort_session(c.path, threads, c.disabled_optimizers) for c in candidates}
    base = candidates[0].name
    outputs = {name: s.run(None, feeds_all)[0] for name, s in sessions.items()}
    if fidelity_to is None:
        parity = {name: float(np.max(np.abs(out - outputs[base]))) for name, out in outputs.items()}
    else:
        cosine = {name: mean_cosine(out, fidelity_to) for name, out in outputs.items()}
        parity = {name: max(cosine[base] - value, 0.0) for name, value in cosine.items()}
    sample = {name: array[:1] for name, array in feeds_all.items()}
    medians = time_interleaved(sessions, sample, rounds, runs)
    ratios = {name: [m / b for m, b in zip(values, medians[base], strict=True)] for name, values in medians.items()}
    figures = {c.name: {"p50_ms": round(statistics.median(medians[c.name]), 5),
                        "ratio": round(statistics.median(ratios[c.name]), 4),
                        "ratio_range": [round(min(ratios[c.name]), 4), round(max(ratios[c.name]), 4)],
                        "max_abs_diff": parity[c.name], "passed": parity[c.name] <= atol, "how": c.how,
                        "disabled_optimizers": list(c.disabled_optimizers)} for c in candidates}  # fmt: skip
    if fidelity_to is not None:  # judged by cosine: what each lost against the first candidate
        for name, entry in figures.items():
            entry["cosine_to_fp32"], entry["cosine_lost"] = round(cosine[name], 6), entry.pop("max_abs_diff")
    return GraphChoice(decide(candidates, figures), figures)


def decide(candidates: list[GraphCandidate], figures: dict[str, dict[str, Any]]) -> GraphCandidate:
    """The passing candidate with the lowest paired ratio when it is below 1 - SWITCH_MARGIN, else the first."""
    passing = [c for c in candidates[1:] if figures[c.name]["passed"]]
    best = min(passing, key=lambda c: figures[c.name]["ratio"], default=None)
    return best if best is not None and figures[best.name]["ratio"] < 1 - SWITCH_MARGIN else candidates[0]


def ship_choice(choice: GraphChoice, target: Path) -> None:
    """Write the chosen graph to `target` with its session setting in the metadata."""
    write_with_setting(choice.chosen.path, target, choice.chosen.disabled_optimizers)
