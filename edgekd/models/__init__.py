"""Models: the built-in zoo and safe checkpoint loading."""

from edgekd.models.checkpoint import count_parameters, load_checkpoint, save_checkpoint
from edgekd.models.zoo import ZOO, build_model

__all__ = ["ZOO", "build_model", "count_parameters", "load_checkpoint", "save_checkpoint"]
