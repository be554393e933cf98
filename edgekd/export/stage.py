"""The export stage: the distilled student to ONNX, checked against PyTorch, and for a transformer the graph
ONNX Runtime runs fastest, chosen by measurement."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import torch

from edgekd import measure as m
from edgekd.errors import StageError
from edgekd.export.graph_choice import choose_graph, ship_choice, transformer_candidates
from edgekd.export.onnx import check_parity, check_shape_parity, export_onnx, onnx_interface
from edgekd.pipeline.layout import FP32_ONNX, GRAPH_CANDIDATES, ORT_GRAPH
from edgekd.recipe import ExportSection
from edgekd.runtimes import get_runtime
from edgekd.runtimes.pytorch_runtime import runner_for_module
from edgekd.tasks import TaskData

if TYPE_CHECKING:
    from edgekd.report.model import Row

GRAPH_CHOICE_VERSION = 1  # bump when the candidates change, so finished runs choose again


def export_stage(section: ExportSection, task: TaskData, student: torch.nn.Module, run_dir: Path) -> dict[str, Any]:
    """Write student.onnx at the recipe's opset and check it against the PyTorch student on the test split (and,
    for token inputs, at shapes the export did not trace). A failed check is reported on the ONNX row."""
    path = run_dir / FP32_ONNX
    inputs = task.inputs("test")
    export_onnx(student, inputs, task.input_name, path, section.opset)
    written = max((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                   if o.domain in ("", "ai.onnx")), default=None)  # fmt: skip
    if written != section.opset:  # the report says the recipe's opset: it must be the file's
        path.unlink(missing_ok=True)
        raise StageError(f"export: asked for ONNX opset {section.opset}, the exporter wrote {written}; "
                         "set export.opset to a version it writes (18 and newer)")  # fmt: skip
    runner = get_runtime("onnxruntime").load(path, 1)  # the reference runtime: the parity check is ONNX's own
    onnx_logits = m.predict(runner, inputs, batch_size=256)
    reference = m.predict(runner_for_module(student, torch.get_num_threads()), inputs, batch_size=256)
    parity = check_parity(reference, onnx_logits, section.parity_atol).to_dict()
    shapes = check_shape_parity(student, runner, inputs, section.parity_atol)
    if shapes:  # token inputs: also at shapes the export did not trace; every check must pass
        parity = {**parity, "passed": parity["passed"] and all(s["passed"] for s in shapes), "shapes": shapes,
                  "max_abs_diff": max([parity["max_abs_diff"], *(s["max_abs_diff"] for s in shapes)])}
    return {"path": FP32_ONNX, "opset": section.opset, "parity": parity, "inputs": onnx_interface(path)}


def graph_stage(section: ExportSection, task: TaskData, student: torch.nn.Module, run_dir: Path,
                threads: int) -> dict[str, Any]:  # fmt: skip
    """Time the exported graph against ORT's transformer optimizer's, fusions on and off; ship the fastest that
    matches the export (to student.ort.onnx: the ONNX Runtime fp32 artifact; OpenVINO and TensorRT keep
    building from the standard-op student.onnx)."""
    config = student.hf.config
    work = run_dir / GRAPH_CANDIDATES
    work.mkdir(exist_ok=True)
    candidates = transformer_candidates(run_dir / FP32_ONNX, work, config.num_attention_heads, config.hidden_size)
    choice = choose_graph(candidates, task.inputs("test"), task.input_name, threads, section.parity_atol)
    ship_choice(choice, run_dir / ORT_GRAPH)
    return {**choice.to_dict(run_dir), "path": ORT_GRAPH}


def has_graph_choice(task: TaskData, student: torch.nn.Module) -> bool:
    """A Hugging Face transformer encoder on token inputs: the only graphs ORT's transformer optimizer fuses."""
    return bool(task.sequence_axis) and hasattr(student, "hf")


def parity_failure(rows: list[Row], parity: dict[str, Any]) -> None:
    """A failed parity check is reported on the ONNX row, never hidden."""
    if parity["passed"]:
        return
    for row in rows:
        if row.artifact == "student-onnx-fp32" and row.ok:
            row.fail(f"parity: max |onnx - pytorch| {parity['max_abs_diff']:.3g} > atol {parity['atol']:.3g}")
