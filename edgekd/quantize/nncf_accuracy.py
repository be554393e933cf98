"""OpenVINO int8 under the quantization budget: NNCF's accuracy control, judged as the ONNX Runtime search judges.

`nncf.quantize_with_accuracy_control` quantizes the whole model, then reverts groups of quantized ops to float, the
one whose removal raises the validation metric most first, until metric(fp32) - metric(int8) <= max_drop
(DropType.ABSOLUTE: NNCF subtracts, so the metric must rise with quality). The metric here is
100 - `drop_points` of the model's outputs against the fp32 ONNX student's (ONNX Runtime) on the validation
samples: top-1 agreement x100 for classifiers, mean cosine x100 for embeddings, so NNCF's drop is the ONNX Runtime
search's points. Each validation item carries its index, as NNCF ranks on subsets and each must meet its own
reference outputs; the value of every item is returned too, so NNCF ranks by the metric, not by raw outputs.
`max_float_nodes` caps NNCF's iterations (each reverts one group of ops; a group that made things worse is put
back and still counts).

NNCF returns only the model, and its log says when it stopped rather than what the result measures (it reports
failure when it had to revert the last group, even if that met the budget). So the record is taken from the models
themselves: the ops NNCF reverted are those that read a FakeQuantize output in the fully quantized model (which
NNCF saves on request, `intermediate_model_dir`) and in the result read neither one nor a low-bit weight (NNCF
stores its result's weights compressed: int8 constants decompressed in the graph); both drops are measured again
on the validation samples, and the budget counts as met only when the result's measured drop is within it.
Every model is judged with the CPU plugin in f32, as NNCF compiles it; an IR stored with inference precision
"auto" may run in bf16 where the CPU has it (its row says what it executed in).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.quantize.accuracy_aware import drop_points
from edgekd.quantize.budget import QuantizeBudget
from edgekd.quantize.calibration import fidelity_to, judging_samples, model_outputs
from edgekd.quantize.ort_int8 import Calibration, calibration_feeds

METHOD = "nncf-accuracy-control"
LOW_BIT_WEIGHTS = ("i8", "u8", "i4", "u4")
DECOMPRESSION_OPS = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze")


def fidelity_metric(reference: np.ndarray, metric: str):
    """NNCF's `validation_fn`: (100 - points lost against `reference`, each item's value) for a compiled model on
    (index, feed) items."""

    def validate(compiled, items) -> tuple[float, list[float]]:
        indices, outputs = [], []
        for index, feed in items:
            indices.append(index)
            outputs.append(compiled(feed)[0])
        got, expected = np.concatenate(outputs), reference[indices]
        each = [100 - drop_points(fidelity_to(got[i : i + 1], expected[i : i + 1], metric), metric)
                for i in range(len(indices))]  # fmt: skip
        return 100 - drop_points(fidelity_to(got, expected, metric), metric), each

    return validate


def _compressed_weight(node, depth: int = 0) -> bool:
    """True for a weight stored in low bits and decompressed in the graph (Constant i8 -> Convert -> Subtract ->
    Multiply, as NNCF writes the weights of its result), or a step of that decompression."""
    kind = node.get_type_name()
    if kind == "Constant":
        return node.get_element_type().get_type_name() in LOW_BIT_WEIGHTS
    return kind in DECOMPRESSION_OPS and depth < 4 and any(
        _compressed_weight(i.get_source_output().get_node(), depth + 1) for i in node.inputs())  # fmt: skip


def quantized_ops(model) -> dict[str, str]:
    """Friendly name -> op type of every op of an OpenVINO model that runs in int8: it reads a FakeQuantize output
    (NNCF's fully quantized model) or a low-bit weight decompressed in the graph (its result)."""

    def reads_int8(op) -> bool:
        sources = [i.get_source_output().get_node() for i in op.inputs()]
        return any(s.get_type_name() == "FakeQuantize" or _compressed_weight(s) for s in sources)

    return {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()
            if op.get_type_name() not in ("FakeQuantize", "Constant") and not _compressed_weight(op)
            and reads_int8(op)}  # fmt: skip


def _drop(ov, model, items: list, reference: np.ndarray, metric: str) -> float:
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # as NNCF validates
    value, _ = fidelity_metric(reference, metric)(compiled, items)
    return round(100 - value, 4)


def quantize_under_budget(
    onnx_path: Path, model, feeds: list[dict[str, np.ndarray]], validation: Calibration, input_name: str,
    budget: QuantizeBudget, model_type,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The int8 OpenVINO model of `model` (converted from `onnx_path`) by NNCF's accuracy control on `feeds`
    (calibration) and `validation` (an empty split: the calibration samples), and what it did (see the module
    docstring). Call it with NNCF's output redirected (edgekd.quantize.ort_int8.quantizer_output_to)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    started = time.perf_counter()
    validation, judged_on = judging_samples(validation, feeds_to_inputs(feeds))  # as the ORT calibration judges
    reference = model_outputs(onnx_path, validation, input_name)
    items = list(enumerate(calibration_feeds(validation, input_name)))
    with tempfile.TemporaryDirectory(prefix=".edgekd-nncf-") as work:
        result = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(feeds), nncf.Dataset(items, lambda item: item[1]),
            fidelity_metric(reference, budget.metric), max_drop=budget.max_drop, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(feeds), model_type=model_type,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=budget.max_float_nodes, intermediate_model_dir=work),
        )  # fmt: skip
        plain = ov.Core().read_model(str(Path(work) / "intermediate_model.xml"))
        before, after = quantized_ops(plain), quantized_ops(result)
        plain_drop = _drop(ov, plain, items, reference, budget.metric)
    drop = _drop(ov, result, items, reference, budget.metric)
    reverted = [{"name": name, "op_type": op_type} for name, op_type in before.items() if name not in after]
    return result, {"method": METHOD, "max_drop": budget.max_drop, "max_drop_source": budget.source,
                    "met": drop <= budget.max_drop, "drop_points": drop, "plain_drop_points": plain_drop,
                    "quantized_ops": len(before), "reverted": reverted, "max_iterations": budget.max_float_nodes,
                    "judged_on": f"{len(items)} {judged_on}, against the fp32 ONNX student, OpenVINO in f32",
                    "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip


def feeds_to_inputs(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The per-sample feeds back as one array per input."""
    return {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
