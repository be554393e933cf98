"""Collect the outputs a loss needs from a model: logits, per-layer internals, or module outputs by path.

Keys: `logits` (the model's output), `hidden.<i>` / `attention.<i>` (transformers that expose
`emit_internals`), `feature.<module path>` (any module's output, captured with a forward hook).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from edgekd.errors import RecipeError

Outputs = dict[str, torch.Tensor]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextlib.contextmanager
def feature_hooks(model: nn.Module, keys: Sequence[str], sink: Outputs) -> Iterator[None]:
    """Store the output of each `feature.<path>` module in `sink` while the context is open."""
    inner = _unwrap(model)
    handles = []
    for key in keys:
        if not key.startswith("feature."):
            continue
        path = key.removeprefix("feature.")
        try:
            module = inner.get_submodule(path)
        except AttributeError:
            names = [name for name, _ in inner.named_modules() if name]
            raise RecipeError(f"loss layer '{path}' is not a module of {type(inner).__name__}; "
                              f"module paths: {', '.join(names[:20])}") from None  # fmt: skip

        def hook(_module, _inputs, output, key=key):
            sink[key] = output[0] if isinstance(output, tuple) else output

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def model_outputs(model: nn.Module, inputs: torch.Tensor, keys: Sequence[str]) -> Outputs:
    """Run `model` once and return the requested outputs (always including `logits`)."""
    inner = _unwrap(model)
    wants_internals = any(k.startswith(("hidden.", "attention.")) for k in keys)
    if wants_internals and not hasattr(inner, "emit_internals"):
        raise RecipeError(f"{type(inner).__name__} has no per-layer hidden states or attentions; "
                          "hidden-state-mse and attention-kl need a Hugging Face encoder")  # fmt: skip
    sink: Outputs = {}
    previous = getattr(inner, "emit_internals", False)
    if wants_internals:
        inner.emit_internals = True
    try:
        with feature_hooks(model, keys, sink):
            result = model(inputs)
    finally:
        if wants_internals:
            inner.emit_internals = previous
    outputs = dict(result) if isinstance(result, dict) else {"logits": result}
    outputs.update(sink)
    missing = [k for k in keys if k not in outputs]
    if missing:
        raise RecipeError(f"{type(inner).__name__} did not produce {missing}; check the loss layers and layer_map")
    return outputs
