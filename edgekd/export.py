"""Export a PyTorch model to ONNX with a dynamic batch axis, check it, and compare it with PyTorch."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgekd.errors import StageError
from edgekd.fileio import atomic_path

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


def export_onnx(model: nn.Module, sample: np.ndarray, input_name: str, path: Path, opset: int) -> None:
    """Write `model` to `path` as one ONNX file whose first axis (batch) is dynamic, then run the checker."""
    model.eval()
    example = torch.from_numpy(sample[:2])
    with atomic_path(path) as tmp, _quiet_exporter():
        try:
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[input_name],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
            )
        except Exception as exc:  # the exporter raises many unrelated types; keep the cause chained
            raise StageError(f"export: torch.onnx.export failed for {path.name}: {exc}") from exc
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise StageError(f"export: {path.name} failed the ONNX checker: {exc}") from exc


def check_parity(reference_logits: np.ndarray, onnx_logits: np.ndarray, atol: float) -> ParityResult:
    max_abs_diff = float(np.max(np.abs(reference_logits - onnx_logits)))
    return ParityResult(max_abs_diff, atol, int(len(reference_logits)), bool(max_abs_diff <= atol))
