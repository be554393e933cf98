"""Models: the built-in zoo, user factories, Hugging Face encoders, and safe checkpoint loading."""

from edgekd.models.checkpoint import apply_state, count_parameters, load_checkpoint, save_checkpoint
from edgekd.models.spec import ModelSpec, load_saved_model, load_weights, save_model
from edgekd.models.zoo import ZOO, build_model

__all__ = [
    "ZOO", "ModelSpec", "apply_state", "build_model", "count_parameters", "load_checkpoint", "load_saved_model",
    "load_weights", "save_checkpoint", "save_model",
]  # fmt: skip
