"""The fastest ONNX Runtime graph, by measurement: candidate graphs of one model timed side by side in this
process (interleaved rounds, same threads, batch 1 on a real sample), and the fastest whose outputs match the
exported graph's ships.

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
from edgekd.samples import Inputs, named

DISABLED_OPTIMIZERS_KEY = "edgekd.ort.disabled_optimizers"  # comma-separated ORT graph optimizer names
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
                "method": "one process, interleaved rounds in shuffled order, batch 1 on the first eval sample at "
                          "its padded length, p50 = median of the round medians; ratio = p50 / as-exported p50"}


def disabled_optimizers(path: Path) -> list[str]:
    """The ORT graph optimizers an ONNX graph asks to have switched off (its metadata), else [] (also for an
    ORT-format model, which edgekd never chose a graph for)."""
    import onnx

    if Path(path).suffix != ".onnx":
        return []
    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == DISABLED_OPTIMIZERS_KEY), "")
    return [name for name in value.split(",") if name]


def ort_session(path: Path, threads: int, disabled: tuple[str, ...] | list[str] = ()):
    """A CPU session as edgekd measures it (intra-op `threads`, inter-op 1), minus the `disabled` optimizers."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    extra = {"disabled_optimizers": list(disabled)} if disabled else {}
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"], **extra)


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
                     seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Median of per-round median milliseconds for each session, rounds interleaved in shuffled order."""
    rng = random.Random(seed)
    order = list(sessions)
    medians: dict[str, list[float]] = {name: [] for name in order}
    for session in sessions.values():  # warm-up
        for _ in range(max(runs // 4, 2)):
            session.run(None, feeds)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            session, times = sessions[name], []
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                session.run(None, feeds)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            medians[name].append(statistics.median(times))
    return {name: statistics.median(values) for name, values in medians.items()}


def choose_graph(candidates: list[GraphCandidate], inputs: Inputs, input_name: str, threads: int, atol: float,
                 rounds: int = 5, runs: int = 20) -> GraphChoice:  # fmt: skip
    """Time every candidate side by side; the fastest whose outputs on `inputs` stay within `atol` of the first
    candidate's (the exported graph, which passed parity with PyTorch) wins."""
    feeds_all = named(inputs, input_name)
    sessions = {c.name: ort_session(c.path, threads, c.disabled_optimizers) for c in candidates}
    reference = sessions[candidates[0].name].run(None, feeds_all)[0]
    parity = {name: float(np.max(np.abs(s.run(None, feeds_all)[0] - reference))) for name, s in sessions.items()}
    sample = {name: array[:1] for name, array in feeds_all.items()}
    p50 = time_interleaved(sessions, sample, rounds, runs)
    base = p50[candidates[0].name]
    figures = {c.name: {"p50_ms": round(p50[c.name], 5), "ratio": round(p50[c.name] / base, 4),
                        "max_abs_diff": parity[c.name], "passed": parity[c.name] <= atol, "how": c.how,
                        "disabled_optimizers": list(c.disabled_optimizers)} for c in candidates}  # fmt: skip
    passing = [c for c in candidates if figures[c.name]["passed"]]
    chosen = min(passing, key=lambda c: p50[c.name])
    return GraphChoice(chosen, figures)


def ship_choice(choice: GraphChoice, target: Path) -> None:
    """Write the chosen graph to `target` with its session setting in the metadata."""
    write_with_setting(choice.chosen.path, target, choice.chosen.disabled_optimizers)
