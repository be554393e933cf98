"""Export a PyTorch model to ONNX with a dynamic batch axis, check it, and compare it with PyTorch.

A model that takes token sequences (`dynamic_sequence = True`, as a Hugging Face encoder) is exported with every
named input (`input_ids`, `attention_mask`, `token_type_ids`) dynamic in batch AND sequence, and its output named
by the model (`output_name`: `logits`, `sentence_embedding`); its parity is also checked at shapes the export
did not trace (batch 1 at the shortest real length, batch 7 at the longest).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edgekd.errors import StageError
from edgekd.fileio import atomic_path
from edgekd.measure.graph import DIM_KEY_PREFIX
from edgekd.runtimes.base import Runner
from edgekd.samples import Inputs, count, named, real_lengths, take, trim_to_length

OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ParityResult:
    """How far the ONNX model's outputs are from PyTorch's on the same inputs."""

    max_abs_diff: float
    atol: float
    samples: int
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter logs every step and warns about absent torchvision ops; keep the terminal readable."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamic_shapes(model: nn.Module, names: list[str]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch")
    if not getattr(model, "dynamic_sequence", False):
        return tuple({0: batch} for _ in names)
    longest = getattr(model, "max_sequence_length", None)
    sequence = torch.export.Dim("sequence", max=longest) if longest else torch.export.Dim("sequence")
    return tuple({0: batch, 1: sequence} for _ in names)


def export_onnx(model: nn.Module, sample: Inputs, input_name: str, path: Path, opset: int) -> None:
    """Write `model` to `path` as one ONNX file whose first axis (batch) is dynamic, then run the checker.
    `sample` is one array (under `input_name`) or the named arrays the model takes, in its forward's order."""
    model.eval()
    feeds = named(sample, input_name)
    example = tuple(torch.from_numpy(array[:2]) for array in feeds.values())
    with atomic_path(path) as tmp, _quiet_exporter():
        try:
            torch.onnx.export(
                model,
                example,
                str(tmp),
                input_names=list(feeds),
                output_names=[getattr(model, "output_name", OUTPUT_NAME)],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=_dynamic_shapes(model, list(feeds)),
                external_data=False,
            )
        except Exception as exc:  # the exporter raises many unrelated types; keep the cause chained
            raise StageError(f"export: torch.onnx.export failed for {path.name}: {exc}") from exc
        if getattr(model, "dynamic_sequence", False):  # FLOPs and roofline bounds count the longest sequence
            exported = onnx.load(str(tmp))
            exported.metadata_props.add(key=f"{DIM_KEY_PREFIX}sequence", value=str(example[0].shape[1]))
            onnx.save(exported, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise StageError(f"export: {path.name} failed the ONNX checker: {exc}") from exc


def check_parity(reference_logits: np.ndarray, onnx_logits: np.ndarray, atol: float) -> ParityResult:
    max_abs_diff = float(np.max(np.abs(reference_logits - onnx_logits)))
    return ParityResult(max_abs_diff, atol, int(len(reference_logits)), bool(max_abs_diff <= atol))


def parity_shapes(inputs: Inputs) -> list[tuple[int, int]]:
    """(batch, sequence) pairs the export did not trace: batch 1 at the shortest real length, batch 7 at the
    longest (token inputs only; a one-array model has no sequence axis to vary)."""
    lengths = real_lengths(inputs)
    if lengths is None:
        return []
    longest = int(next(iter(named(inputs, "").values())).shape[1])
    return [(1, max(int(lengths.min()), 1)), (min(7, count(inputs)), longest)]


def check_shape_parity(model: nn.Module, runner: Runner, inputs: Inputs, atol: float) -> list[dict[str, Any]]:
    """The ONNX model against PyTorch at each of `parity_shapes`: the shortest sample alone, cut to its length,
    and the first 7 samples at the longest."""
    lengths = real_lengths(inputs)
    results = []
    for batch, length in parity_shapes(inputs):
        rows = np.argsort(lengths, kind="stable")[:1] if batch == 1 else np.arange(batch)
        feeds = named(trim_to_length(take(inputs, rows), length), "")
        with torch.inference_mode():
            expected = model(**{name: torch.from_numpy(array) for name, array in feeds.items()}).numpy()
        parity = check_parity(expected, runner(feeds), atol)
        results.append({"batch": batch, "sequence": length, **parity.to_dict()})
    return results


def onnx_interface(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The graph's inputs and outputs as an app sees them: names and shapes (named axes are dynamic)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(value) -> dict[str, Any]:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        return {"name": value.name, "shape": dims,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name}  # fmt: skip

    initializers = {init.name for init in graph.initializer}
    return {"inputs": [describe(v) for v in graph.input if v.name not in initializers],
            "outputs": [describe(v) for v in graph.output]}  # fmt: skip
