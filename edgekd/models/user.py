"""A user's own model: a factory named by import path, and weights from safetensors or a torch state dict.

Import paths are explicit recipe fields (`package.module:function`), never evaluated code. Weights load with
`torch.load(weights_only=True)`; a pickle that needs more than tensors can run code when unpickled, so it is
refused unless the recipe sets the loudly named `allow_pickle_code_execution = true`.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from edgekd.errors import CheckpointError, RecipeError
from edgekd.factories import check_import_path, check_resolved
from edgekd.models.checkpoint import check_checkpoint_file


def import_factory(spec: str, key: str) -> Any:
    """Resolve `package.module:function` (the module must be importable: installed or on PYTHONPATH). The path
    is checked before the import and the callable after it (edgekd.factories): never stdlib or builtins."""
    module_name, attr = check_import_path(spec, key)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeError(f"recipe key '{key}': cannot import '{module_name}' ({exc}); "
                          "install the package or add its directory to PYTHONPATH") from exc  # fmt: skip
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise RecipeError(f"recipe key '{key}': module '{module_name}' has no '{attr}'")
        target = getattr(target, part)
    check_resolved(target, spec, key)
    return target


def build_user_model(spec: str, kwargs: Mapping[str, Any], key: str) -> nn.Module:
    factory = import_factory(spec, key)
    try:
        model = factory(**dict(kwargs))
    except TypeError as exc:
        raise RecipeError(f"recipe key '{key}': calling {spec}(**{dict(kwargs)}) failed: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise RecipeError(f"recipe key '{key}': {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: Path, allow_pickle_code_execution: bool = False) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch checkpoint (a state dict, or {'state_dict': ...})."""
    path = Path(path)
    check_checkpoint_file(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"checkpoint '{path}' could not be read as safetensors: {exc}") from exc
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle_code_execution:
            raise CheckpointError(
                f"checkpoint '{path}' is a pickle that needs more than tensors to load, and unpickling it can run "
                "arbitrary code. Save it as safetensors or a plain state dict (torch.save(model.state_dict(), ...)); "
                "only if you trust its source, set allow_pickle_code_execution = true in the recipe"
            ) from exc
        loaded = torch.load(path, map_location="cpu", weights_only=False)  # the user opted in, loudly
    except (RuntimeError, OSError, EOFError) as exc:
        why = str(exc) or type(exc).__name__
        raise CheckpointError(f"checkpoint '{path}' could not be read by torch.load: {why}") from exc
    if isinstance(loaded, nn.Module):
        loaded = loaded.state_dict()
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"checkpoint '{path}' does not hold a state dict (name -> tensor)")
    return loaded
