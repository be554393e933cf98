"""A small, seeded training loop for supervised training and Hinton KD, keeping the best validation epoch."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.losses import hinton_kd_loss
from edgekd.errors import StageError
from edgekd.measure import accuracy
from edgekd.progress import progress_bar


@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    chunks = [model(torch.from_numpy(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)]
    return torch.cat(chunks).numpy()


def train_model(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    label: str,
    teacher: nn.Module | None = None,
    temperature: float = 1.0,
    alpha: float = 0.0,
) -> TrainResult:
    """Train `model` in place (labels only, or KD from a frozen `teacher`); restore the best validation epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    loss_fn = _make_loss(teacher, temperature, alpha)
    best_state, best = copy.deepcopy(model.state_dict()), TrainResult(0, -1.0)
    with progress_bar(f"train {label}", total=epochs) as advance:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(inputs), generator=generator)
            total_loss = 0.0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                loss = loss_fn(model(inputs[idx]), inputs[idx], labels[idx])
                if not math.isfinite(loss.item()):
                    raise StageError(f"training {label}: loss became {loss.item()} at epoch {epoch}; lower the lr")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(idx)
            scheduler.step()
            val_accuracy = accuracy(predict_logits(model, x_val), y_val)
            best.history.append({"epoch": epoch, "loss": total_loss / len(order), "val_accuracy": val_accuracy})
            if val_accuracy > best.best_val_accuracy:
                best.best_epoch, best.best_val_accuracy = epoch, val_accuracy
                best_state = copy.deepcopy(model.state_dict())
            advance(f"val acc {val_accuracy:.3f}")
    model.load_state_dict(best_state)
    model.eval()
    return best


def _make_loss(
    teacher: nn.Module | None, temperature: float, alpha: float
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    if teacher is None:
        return lambda logits, _inputs, labels: F.cross_entropy(logits, labels)
    teacher.eval()

    def kd(logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        return hinton_kd_loss(logits, teacher_logits, labels, temperature, alpha)

    return kd
