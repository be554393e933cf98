"""Training a model for a task: on labels alone, or distilled from a teacher with a recipe's losses.

These functions assemble the trainer's parts (loss terms, teacher outputs live or cached, the validation
metric, the checkpoint and log paths) so the pipeline, the benchmarks and the tests share one way to train.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.distill.distributed import main_first
from edgekd.distill.losses import UNLABELLED, CompositeLoss, LossContext
from edgekd.distill.teacher_cache import CachedTeacher, LiveTeacher
from edgekd.distill.trainer import TrainConfig, Trainer, TrainResult
from edgekd.fileio import sha256_json
from edgekd.measure.quality import mean_cosine, mean_kl, top1_agreement


@dataclass(frozen=True)
class LossSpec:
    """A loss term outside a recipe (the recipe's LossSection has the same fields)."""

    name: str
    weight: float = 1.0
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    layer_map: tuple[int, ...] = ()


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    chunks = [model(torch.from_numpy(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)]
    return torch.cat(chunks).numpy()


def fidelity(outputs: np.ndarray, teacher_outputs: np.ndarray, embeddings: bool = False) -> dict[str, float]:
    """How closely a student follows its teacher: mean cosine of the outputs, top-1 agreement, mean KL.
    For `embeddings` only the cosine: they are not class scores, so agreement and KL would mean nothing.
    The measures are the report's own (edgekd.measure.quality), rounded for the training summary."""
    cosine = round(mean_cosine(outputs, teacher_outputs), 6)
    if embeddings:
        return {"cosine": cosine}
    return {
        "cosine": cosine,
        "top1_agreement": round(top1_agreement(outputs, teacher_outputs), 6),
        "mean_kl": round(mean_kl(outputs, teacher_outputs), 6),
    }


def labelled_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    mask = labels != UNLABELLED
    return float((logits[mask].argmax(axis=1) == labels[mask]).mean())


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _num_layers(model: nn.Module) -> int:
    return int(getattr(model, "num_layers", 0))


def fit(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    losses: Sequence[Any],
    *,
    label: str,
    teacher: nn.Module | None = None,
    temperature: float = 1.0,
    alpha: float = 1.0,
    run_dir: Path | None = None,
    cache_teacher_dir: Path | None = None,
    on_step=None,
    distributed: bool = True,
    validate_by: str = "auto",
) -> TrainResult:
    """Train `model` in place with the weighted `losses`; keeps the best validation epoch.

    Validation metric (`validate_by`): "accuracy" on the labelled validation samples, or "teacher-cosine", the
    mean cosine between the model's outputs and the teacher's (embedding encoders); "auto" picks accuracy
    when any validation sample is labelled. `run_dir` enables resume checkpoints and the JSONL log;
    `cache_teacher_dir` memory-maps the frozen teacher's outputs there instead of recomputing them.
    Under torchrun the training is data-parallel unless `distributed` is False (one rank training alone).
    """
    copied_from = tuple(layer + 1 for layer in getattr(model, "source_layers", ()))  # a shrunk student's origins
    context = LossContext(temperature, alpha, _num_layers(model), _num_layers(teacher) if teacher else 0, copied_from)
    torch.manual_seed(config.seed)  # the loss projections' init is part of the seeded run
    loss = CompositeLoss(losses, context)
    provider = None
    teacher_digest = ""
    if teacher is not None:
        keys = loss.teacher_keys()
        teacher_digest = _digest([v.detach().cpu().numpy() for v in teacher.state_dict().values()])
        if cache_teacher_dir is not None and keys:
            key = sha256_json({"teacher": teacher_digest, "inputs": _digest([x_train]), "keys": keys})
            with main_first():  # under DDP rank 0 writes the cache, the others map it
                provider = CachedTeacher.build(teacher, x_train, keys, cache_teacher_dir, key)
        else:
            provider = LiveTeacher(teacher, x_train, keys)
    evaluate = _validation_metric(x_val, y_val, teacher, validate_by)
    trainer = Trainer(
        model, loss, config, x_train, y_train, evaluate, teacher=provider, label=label,
        checkpoint=run_dir / "checkpoints" / f"{_slug(label)}.pt" if run_dir else None,
        log_path=run_dir / "train.jsonl" if run_dir else None, on_step=on_step,
        identity=sha256_json({"teacher": teacher_digest, "losses": [repr(spec) for spec in losses]}),
        distributed=distributed,
    )  # fmt: skip
    return trainer.fit()


def _digest(arrays: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


VALIDATION_METRICS = ("auto", "accuracy", "teacher-cosine")


def _validation_metric(x_val: np.ndarray, y_val: np.ndarray, teacher: nn.Module | None, validate_by: str):
    if validate_by not in VALIDATION_METRICS:
        raise ValueError(f"validate_by '{validate_by}' is unknown; use one of {', '.join(VALIDATION_METRICS)}")
    if validate_by == "accuracy" or (validate_by == "auto" and (y_val != UNLABELLED).any()):
        return lambda model: labelled_accuracy(predict_logits(model, x_val), y_val)
    if teacher is None:
        raise ValueError("validating by cosine to the teacher (or training without labels) needs a teacher")
    reference = predict_logits(teacher, x_val)
    return lambda model: fidelity(predict_logits(model, x_val), reference)["cosine"]
