"""Distillation: losses and the training loop."""

from edgekd.distill.losses import hinton_kd_loss
from edgekd.distill.trainer import TrainResult, predict_logits, train_model

__all__ = ["hinton_kd_loss", "TrainResult", "predict_logits", "train_model"]
