"""Checkpoints as safetensors: no pickle, so loading a file can never run code."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from edgekd.errors import CheckpointError
from edgekd.fileio import atomic_path


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def check_checkpoint_file(path: Path) -> None:
    """Refuse, with the reason, a checkpoint that is missing, empty, or a git-LFS pointer (a small text file
    that stands in for the weights until `git lfs pull` fetches them)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes): the copy or download did not finish; "
                              "copy it again")  # fmt: skip
    with open(path, "rb") as fh:
        head = fh.read(len(LFS_POINTER))
    if head == LFS_POINTER:
        raise CheckpointError(f"checkpoint '{path}' is a git-LFS pointer, not the weights: run `git lfs pull` in its "
                              "repository (or download the file itself)")  # fmt: skip


def load_checkpoint(model: nn.Module, path: Path) -> nn.Module:
    """Load safetensors weights into `model`; shape or key mismatches name the tensor at fault."""
    path = Path(path)
    check_checkpoint_file(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"checkpoint '{path}' is not a .safetensors file; convert it with "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint '{path}' could not be read as safetensors: {exc}") from exc
    return apply_state(model, state, str(path))


def apply_state(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> nn.Module:
    """Load `state` into `model`; a missing, unexpected or mis-shaped tensor is named in the error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint '{origin}' does not fit the model: missing tensors {missing[:5]}, "
            f"unexpected tensors {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"checkpoint '{origin}': tensor '{name}' has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    with torch.no_grad():
        model.load_state_dict(state)
    return model
