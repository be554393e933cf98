"""Accuracy-aware static INT8: keep the most sensitive nodes in float until `quantize.max_drop` holds (set in the
recipe, or by default from its budgets: edgekd.quantize.budget says how a budget against the teacher maps to points
against the fp32 student; the OpenVINO int8 IR meets the same budget by NNCF, edgekd.quantize.nncf_accuracy).

The drop is measured against the fp32 ONNX student on validation samples, in points: (1 - top-1 agreement) x 100
for classifiers (a bound on the accuracy drop: a sample can only lose its label by changing its answer) and
(1 - mean cosine) x 100 for embeddings. When the all-INT8 model breaks the budget:
1. the quantized MatMul / Gemm / Conv nodes are ranked by the signal-to-quantization-noise ratio of their input
   activations (ONNX Runtime's `qdq_loss_debug`, float against QDQ on a few calibration samples: cheap);
2. the `CONFIRM` lowest-SQNR nodes are each tried in float (re-quantized, validation drop measured: SQNR alone
   misranks a tensor whose one huge channel hides that the others lost every bit), the one that buys the most
   (if none buys anything, the next three are tried) is kept; repeated one node at a time until the budget
   holds or `max_float_nodes` are kept;
3. the accepted model (or, when no mix meets the budget, the best one found, marked `met: false`) is written as
   the static INT8 artifact, and every kept-float node is reported with the points it bought and the latency
   it cost: the p50 of the model with it in float minus that of the model before (batch 1, 1 thread, in this
   process, every step's model timed in the same interleaved rounds at the end, so the machine's drift during a
   search of minutes does not land on one step; a search figure, labelled as such, not a report row).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.fileio import atomic_path
from edgekd.measure import stats
from edgekd.measure.quality import ACCURACY
from edgekd.measure.timing import time_round
from edgekd.quantize.calibration import fidelity_to, model_outputs
from edgekd.quantize.ort_int8 import (
    COMPUTE_OPS,
    Calibration,
    _reader,
    calibration_feeds,
    preprocess,
    quantize_int8_static,
)
from edgekd.runtimes.base import TimedCall

CONFIRM = 3  # candidates per step whose validation drop is measured before one is kept in float
SENSITIVITY_SAMPLES = 8  # calibration samples whose activations are compared (every tensor is kept in memory)
# the steps' models, timed together at the end: rounds of >= ROUND_RUNS runs and >= ROUND_SECONDS each, in turns
TIMING_ROUNDS, ROUND_RUNS, ROUND_SECONDS, WARMUP_RUNS = 7, 10, 0.15, 5
LATENCY_METHOD = (f"p50 at batch 1, 1 thread, in the quantizing process: every step's model in {TIMING_ROUNDS} "
                  "interleaved rounds (rotating order), p50 = median of the round medians (a search figure, not a "
                  "report row)")  # fmt: skip


def drop_points(figures: dict[str, float], metric: str) -> float:
    """Points lost against the fp32 model (see the module docstring)."""
    value = figures["top1_agreement"] if metric == ACCURACY else figures["mean_cosine"]
    return round((1.0 - value) * 100, 4)


def node_sensitivity(prepared: Path, quantized: Path, feeds: list[dict[str, np.ndarray]], work: Path,
                     log_path: Path | None) -> list[dict[str, Any]]:  # fmt: skip
    """Quantized compute nodes of `prepared`, most sensitive first: the lowest SQNR (dB) of their quantized
    input activations, from ONNX Runtime's qdq_loss_debug."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    from edgekd.quantize.ort_int8 import quantizer_output_to

    activations = {}
    with quantizer_output_to(log_path):
        for name, model in (("float", prepared), ("qdq", quantized)):
            augmented = work / f"{name}.augmented.onnx"
            debug.modify_model_output_intermediate_tensors(str(model), str(augmented))
            activations[name] = debug.collect_activations(str(augmented), _reader(feeds))
        errors = debug.compute_activation_error(debug.create_activation_matching(activations["qdq"],
                                                                                 activations["float"]))  # fmt: skip
    graph = onnx.load(str(prepared)).graph
    initializers = {t.name for t in graph.initializer}
    ranked = []
    for node in graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        sqnr = [errors[i]["qdq_err"] for i in node.input if i in errors and i not in initializers]
        if sqnr:
            ranked.append({"node": node.name, "op_type": node.op_type, "input_sqnr_db": round(float(min(sqnr)), 3)})
    return sorted(ranked, key=lambda r: r["input_sqnr_db"])


def steps_p50_ms(paths: list[Path], sample: Calibration, input_name: str) -> list[float]:
    """Batch-1 p50 (ms) of each model, all timed in the same interleaved rounds (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
    feed = calibration_feeds(sample, input_name)[0]
    calls = []
    for path in paths:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        calls.append(TimedCall(lambda session=session: session.run(None, feed)))
    medians: list[list[float]] = [[] for _ in paths]
    for _ in range(WARMUP_RUNS):
        for call in calls:
            call.run()
    for r in range(TIMING_ROUNDS):
        for i in [(r + k) % len(calls) for k in range(len(calls))]:
            for _ in range(2):  # re-warm after the other models' turns (untimed)
                calls[i].run()
            wall, _ = time_round(calls[i], ROUND_RUNS, ROUND_SECONDS)
            medians[i].append(stats.nearest_rank(sorted(wall), 50))
    return [stats.nearest_rank(sorted(m), 50) for m in medians]


def search_keep_float(
    source: Path, target: Path, input_name: str, calibration: Calibration, validation: Calibration, metric: str,
    max_drop: float, method: str, symmetric_activations: bool = False, static_ops: str = "safe",
    percentile: float = 99.99, max_float_nodes: int = 8, log_path: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Re-quantize `source` into `target` keeping nodes in float until the validation drop is <= `max_drop`
    points (see the module docstring). `target` already holds the all-INT8 model made with `method`."""
    started = time.perf_counter()
    reference = model_outputs(source, validation, input_name)
    options = dict(symmetric_activations=symmetric_activations, method=method, static_ops=static_ops,
                   percentile=percentile, log_path=log_path)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=".edgekd-keep-float-", dir=target.parent) as tmp:
        work = Path(tmp)
        prepared = preprocess(source, work / "prepared.onnx", log_path)
        first = fidelity_to(model_outputs(target, validation, input_name), reference, metric)
        sample = {k: v[:1] for k, v in validation.items()} if isinstance(validation, Mapping) else validation[:1]
        steps = [{"node": None, "fidelity": first, "drop_points": drop_points(first, metric)}]
        feeds = calibration_feeds(calibration, input_name)[:SENSITIVITY_SAMPLES]
        ranking = node_sensitivity(prepared, target, feeds, work, log_path)
        shutil.copyfile(target, work / "step-0.onnx")
        best, kept = (steps[0]["drop_points"], work / "step-0.onnx"), []
        remaining, tried = list(ranking), 0
        while steps[-1]["drop_points"] > max_drop and len(kept) < max_float_nodes and remaining:
            index = len(kept) + 1
            trials = []
            for j, candidate in enumerate(remaining[:CONFIRM]):  # the cheap ranking, confirmed by measurement
                path = work / f"try-{index}-{j}.onnx"
                quantize_int8_static(source, path, input_name, calibration, prepared=prepared,
                                     keep_float=(*kept, candidate["node"]), **options)  # fmt: skip
                figures = fidelity_to(model_outputs(path, validation, input_name), reference, metric)
                trials.append((drop_points(figures, metric), j, candidate, figures, path))
            tried += len(trials)
            drop, _, candidate, figures, path = min(trials, key=lambda t: (t[0], t[1]))
            if drop >= steps[-1]["drop_points"]:  # none of them buys anything: keep none, try the next ones
                remaining = remaining[len(trials):]
                continue
            remaining.remove(candidate)
            kept.append(candidate["node"])
            path.replace(work / f"step-{index}.onnx")
            step = {**candidate, "fidelity": figures, "drop_points": drop,
                    "confirmed_among": [t[2]["node"] for t in trials]}  # fmt: skip
            step["bought_points"] = round(steps[-1]["drop_points"] - drop, 4)
            steps.append(step)
            if drop < best[0]:
                best = (drop, work / f"step-{index}.onnx")
        p50 = steps_p50_ms([work / f"step-{i}.onnx" for i in range(len(steps))], sample, input_name)
        for i, step in enumerate(steps):
            step["p50_ms"] = round(p50[i], 5)
            if i:
                step["latency_cost_ms"] = round(p50[i] - p50[i - 1], 4)
        accepted = next((i for i, s in enumerate(steps) if s["drop_points"] <= max_drop), None)
        chosen = work / f"step-{accepted}.onnx" if accepted is not None else best[1]
        with atomic_path(target) as tmp_target:
            shutil.copyfile(chosen, tmp_target)
    final = steps[accepted] if accepted is not None else min(steps, key=lambda s: s["drop_points"])
    final_index = steps.index(final)
    return {"max_drop": max_drop, "met": accepted is not None, "drop_points": final["drop_points"],
            "all_int8_drop_points": steps[0]["drop_points"],
            "kept_float": steps[1 : final_index + 1], "tried": tried,
            "ranked_nodes": len(ranking), "ranking": ranking[: max_float_nodes], "steps": steps,
            "latency": LATENCY_METHOD,
            "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
