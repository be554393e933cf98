"""Distillation: the loss registry, the trainer (resume, DDP, teacher-output cache) and how to run it."""

from edgekd.distill.losses import LOSSES, CompositeLoss, LossContext, hinton_kd_loss
from edgekd.distill.run import LossSpec, fidelity, fit, predict_logits
from edgekd.distill.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "LOSSES", "CompositeLoss", "LossContext", "LossSpec", "TrainConfig", "TrainResult", "Trainer",
    "fidelity", "fit", "hinton_kd_loss", "predict_logits",
]  # fmt: skip
