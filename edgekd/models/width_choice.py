"""Which teacher units a narrower student keeps (`student.shrink_hidden_size`), chosen by measurement.

A narrower student is copied from a slice of every teacher tensor. Which slice matters as much as which layers:
the leading units of every dimension (the simplest rule) cut across attention heads — a student head then
mixes the dimensions of several teacher heads — and keep whatever units come first, busy or idle. So a few
candidate slices are each built and run on validation samples, and the student starts from the one closest to
the teacher (`models.layer_choice` does the same for layers):
- `leading`: the first units of every dimension (what edgekd did before);
- `leading, head-aware`: the first residual and FFN units, and in each attention head its first dimensions;
- `most active, head-aware`: the residual units and, per layer, the FFN units with the largest mean |activation|
  of the teacher on those samples, heads kept whole as above.
Axes are told apart by size and name: a dimension of the teacher's width is the residual stream, except the
query/key/value outputs and the attention output's input, which are laid out head by head; a dimension of the
FFN width is that layer's FFN. Names other than BERT's (`attention.self.query`, `attention.output.dense`,
`intermediate`) get the leading slice on that axis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

_HEAD_OUT = re.compile(r"attention\.self\.(query|key|value)\.(weight|bias)$")  # axis 0 is head-major
_HEAD_IN = re.compile(r"attention\.output\.dense\.weight$")  # axis 1 is head-major
_LAYER = re.compile(r"\.layer\.(\d+)\.")


@dataclass
class WidthSlice:
    """Indices into the teacher's dimensions; empty = the leading ones."""

    name: str
    residual: list[int] = field(default_factory=list)
    head_dims: list[int] | None = None  # None: heads not respected (the plain leading slice)
    intermediate: dict[int, list[int]] = field(default_factory=dict)  # by teacher layer


def slice_tensor(name: str, value: torch.Tensor, shape: torch.Size, width: WidthSlice, hidden: int, heads: int,
                 intermediate: int) -> torch.Tensor:  # fmt: skip
    """`value` (a teacher tensor named `name`) cut to `shape` along every axis that shrank, by `width`."""
    layer = _LAYER.search(name)
    out = value
    for axis, (size, target) in enumerate(zip(value.shape, shape, strict=True)):
        if size == target:
            continue
        index = _axis_index(name, axis, size, target, width, hidden, heads, intermediate,
                            None if layer is None else int(layer.group(1)))  # fmt: skip
        out = out.index_select(axis, torch.as_tensor(index, dtype=torch.long))
    return out.clone()


def _axis_index(name: str, axis: int, size: int, target: int, width: WidthSlice, hidden: int, heads: int,
                intermediate: int, layer: int | None) -> list[int]:  # fmt: skip
    head_major = (axis == 0 and _HEAD_OUT.search(name)) or (axis == 1 and _HEAD_IN.search(name))
    if size == hidden and head_major and width.head_dims is not None and target % heads == 0:
        per_head = hidden // heads
        return [h * per_head + d for h in range(heads) for d in width.head_dims[: target // heads]]
    if size == hidden and len(width.residual) >= target:
        return sorted(width.residual[:target])
    if size == intermediate and layer is not None and len(width.intermediate.get(layer, ())) >= target:
        return sorted(width.intermediate[layer][:target])
    return list(range(target))


@torch.no_grad()
def activation_ranks(teacher: torch.nn.Module, inputs: torch.Tensor, mask: torch.Tensor) -> tuple[list[int],
                                                                                                  dict[int, list[int]]]:
    """Teacher units by mean |activation| on `inputs` (largest first): the residual stream over every layer's
    output, and each layer's FFN (modules named `...layer.N.intermediate`)."""
    hf = teacher.hf
    ffn: dict[int, torch.Tensor] = {}
    hooks = []
    for module_name, module in hf.named_modules():
        match = re.search(r"\.layer\.(\d+)\.intermediate$", module_name)
        if match:
            def keep(_m, _i, out, i=int(match.group(1))):
                ffn[i] = ffn.get(i, 0) + (out.abs() * mask[..., None]).sum(dim=(0, 1))
            hooks.append(module.register_forward_hook(keep))
    try:
        hf.eval()
        states = hf(input_ids=inputs, attention_mask=mask, output_hidden_states=True).hidden_states
    finally:
        for hook in hooks:
            hook.remove()
    residual = sum((s.abs() * mask[..., None]).sum(dim=(0, 1)) for s in states)
    order = lambda scores: [int(i) for i in torch.argsort(scores, descending=True)]  # noqa: E731
    return order(residual), {i: order(scores) for i, scores in ffn.items()}


def candidate_widths(teacher: torch.nn.Module, inputs: torch.Tensor, mask: torch.Tensor) -> list[WidthSlice]:
    """The candidate slices, each named for the report."""
    config = teacher.hf.config
    per_head = config.hidden_size // config.num_attention_heads
    residual, ffn = activation_ranks(teacher, inputs, mask)
    return [WidthSlice("leading"),
            WidthSlice("leading, head-aware", head_dims=list(range(per_head))),
            WidthSlice("most active, head-aware", residual=residual, head_dims=list(range(per_head)),
                       intermediate=ffn)]  # fmt: skip
