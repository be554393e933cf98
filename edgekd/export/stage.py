"""The export stage: the distilled student to ONNX, checked against PyTorch, and for a transformer the graph
ONNX Runtime runs fastest, chosen by measurement."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import torch

from edgekd import measure as m
from edgekd.errors import StageError
from edgekd.export.graph_choice import GraphCandidate, choose_graph, ship_choice, transformer_candidates
from edgekd.export.onnx import check_parity, check_shape_parity, export_onnx, onnx_interface
from edgekd.pipeline.layout import FP32_ONNX, GRAPH_CANDIDATES, ORT_GRAPH, ORT_INT8_DYNAMIC_GRAPH
from edgekd.quantize.ort_int8 import quantize_int8_dynamic
from edgekd.recipe import ExportSection
from edgekd.runtimes import get_runtime
from edgekd.runtimes.pytorch_runtime import runner_for_module
from edgekd.tasks import TaskData

if TYPE_CHECKING:
    from edgekd.report.model import Row

GRAPH_CHOICE_VERSION = 2  # bump when the candidates change, so finished runs choose again
INT8_COSINE_SLACK = 0.001  # an INT8 candidate graph may lose this much mean cosine against the as-exported one's


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
                threads: int, int8_dynamic: bool = False, log_path: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Time the exported graph against ORT's transformer optimizer's, fusions on and off; ship the fastest that
    matches the export (to student.ort.onnx: the ONNX Runtime fp32 artifact; OpenVINO and TensorRT keep
    building from the standard-op student.onnx). With `int8_dynamic`, the same for ORT's dynamic INT8 of each
    candidate, judged by cosine to the fp32 export's outputs (to student.int8-dynamic.ort.onnx; the bundle and
    the device builds keep the standard-op student.int8-dynamic.onnx)."""
    config = student.hf.config
    work = run_dir / GRAPH_CANDIDATES
    work.mkdir(exist_ok=True)
    inputs = task.inputs("test")
    candidates = transformer_candidates(run_dir / FP32_ONNX, work, config.num_attention_heads, config.hidden_size)
    choice = choose_graph(candidates, inputs, task.input_name, threads, section.parity_atol)
    ship_choice(choice, run_dir / ORT_GRAPH)
    record = {**choice.to_dict(run_dir), "path": ORT_GRAPH}
    if int8_dynamic:
        int8 = dynamic_candidates(candidates, work, log_path)
        fp32_outputs = m.predict(get_runtime("onnxruntime").load(run_dir / FP32_ONNX, 1), inputs, batch_size=256)
        picked = choose_graph(int8, inputs, task.input_name, threads, INT8_COSINE_SLACK, fidelity_to=fp32_outputs)
        ship_choice(picked, run_dir / ORT_INT8_DYNAMIC_GRAPH)
        record["int8_dynamic"] = {**picked.to_dict(run_dir), "path": ORT_INT8_DYNAMIC_GRAPH,
                                  "passes_if": f"mean cosine to the fp32 export's outputs at most "
                                               f"{INT8_COSINE_SLACK:g} below the as-exported INT8 graph's"}  # fmt: skip
    return record


def dynamic_candidates(fp32: list[GraphCandidate], work: Path, log_path: Path | None) -> list[GraphCandidate]:
    """ORT's dynamic INT8 of each fp32 candidate graph (each file once), with that candidate's session setting."""
    made: dict[Path, Path] = {}
    for candidate in fp32:
        if candidate.path not in made:
            made[candidate.path] = work / f"{candidate.path.stem}.int8-dynamic.onnx"
            quantize_int8_dynamic(candidate.path, made[candidate.path], log_path=log_path)
    return [GraphCandidate(c.name, made[c.path], c.disabled_optimizers, f"{c.how}; ORT quantize_dynamic of it")
            for c in fp32]  # fmt: skip


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
