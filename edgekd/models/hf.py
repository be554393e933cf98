"""Hugging Face encoders from a local directory (never the hub), and students made by shrinking them.

`HFEncoder` wraps a transformers model. It takes `input_ids`, `attention_mask` and `token_type_ids` as apps
feed them; training passes `input_ids` alone, and the mask is then derived (`input_ids != pad_token_id`, what a
right-padding tokenizer makes). It returns classification logits, or a mean-pooled sentence embedding; with
`emit_internals` set it also returns per-layer hidden states and attention distributions for the
TinyBERT/MiniLM losses.
"""

from __future__ import annotations

import copy
import inspect
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import CheckpointError, MissingDependencyError, RecipeError
from edgekd.models.checkpoint import check_checkpoint_file


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("transformers", "hf", "a Hugging Face model") from None
    # its "Loading weights" progress bar and load reports would interleave with edgekd's own progress lines
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors that are not padding (sentence-transformers' default pooling)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """BERT's extended attention mask, (batch, 1, 1, sequence): 0 on tokens, the dtype's minimum on padding.
    Given ready-made, transformers uses it as it is; its own mask builder would export as an index-based
    subgraph (GatherND over broadcast ranges) that ONNX Runtime's shape inference and fusions do not follow."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class HFEncoder(nn.Module):
    def __init__(self, hf_model: nn.Module, output: str, pad_token_id: int):
        super().__init__()
        self.hf = hf_model
        self.output = output
        self.pad_token_id = int(pad_token_id)
        self.emit_internals = False
        # BERT-style positions (0..n-1) passed explicitly: sliced from the model's buffer instead, the exported
        # graph's position embeddings get a length ONNX Runtime's symbolic shape inference cannot name (which
        # quantization's pre-processing needs). Not for RoBERTa-style models, whose positions skip padding.
        embeddings = getattr(hf_model.base_model, "embeddings", None)
        self._arange_positions = (hasattr(embeddings, "position_ids") and not hasattr(embeddings, "padding_idx")
                                  and "position_ids" in inspect.signature(hf_model.forward).parameters)

    @property
    def num_layers(self) -> int:
        return int(self.hf.config.num_hidden_layers)

    # the exported graph's interface: named inputs with dynamic batch and sequence axes, the output named for
    # what it is (read by edgekd.export.onnx)
    dynamic_sequence = True

    @property
    def max_sequence_length(self) -> int | None:
        return getattr(self.hf.config, "max_position_embeddings", None)

    @property
    def output_name(self) -> str:
        return "logits" if self.output == "logits" else "sentence_embedding"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None):  # fmt: skip
        mask = (input_ids != self.pad_token_id).long() if attention_mask is None else attention_mask
        internals = self.emit_internals
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        if self._arange_positions:
            extra["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        out = self.hf(input_ids=input_ids, attention_mask=additive_mask(mask, self.hf.dtype), output_hidden_states=
                      internals or self.output == "embedding", output_attentions=internals, **extra)  # fmt: skip
        result = out.logits if self.output == "logits" else mean_pool(out.hidden_states[-1], mask)
        if not internals:
            return result
        outputs = {"logits": result}
        outputs.update({f"hidden.{i}": h for i, h in enumerate(out.hidden_states)})
        outputs.update({f"attention.{i}": a for i, a in enumerate(out.attentions, 1)})
        return outputs


def _model_class(output: str):
    transformers = require_transformers()
    return transformers.AutoModelForSequenceClassification if output == "logits" else transformers.AutoModel


def load_hf_config(path: str | Path, num_classes: int, output: str):
    transformers = require_transformers()
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"Hugging Face path '{path}' does not exist (edgekd reads local directories only)")
    source = path.parent if path.is_file() else path
    config = transformers.AutoConfig.from_pretrained(str(source), local_files_only=True)
    config._attn_implementation = "eager"  # attention probabilities for attention-kl; plain ops for export
    if output == "logits" and num_classes:
        config.num_labels = num_classes
    return config


def encoder_from_config(config, output: str, pad_token_id: int) -> HFEncoder:
    model = _model_class(output).from_config(config, attn_implementation="eager")
    return HFEncoder(model, output, pad_token_id)


def load_hf_encoder(directory: str | Path, output: str, num_classes: int, pad_token_id: int) -> HFEncoder:
    """A pretrained encoder from a local directory; a head missing from the checkpoint is a clear error."""
    directory = Path(directory)
    config = load_hf_config(directory, num_classes, output)
    for weights in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        check_checkpoint_file(weights)  # a git-LFS pointer or an empty file: named, with the fix
    try:
        model, info = _model_class(output).from_pretrained(
            str(directory), config=config, local_files_only=True, attn_implementation="eager",
            output_loading_info=True,
        )  # fmt: skip
    except OSError as exc:
        raise CheckpointError(f"Hugging Face directory '{directory}' could not be loaded: {exc}") from exc
    if output == "logits" and info.get("missing_keys"):
        raise CheckpointError(
            f"'{directory}' has no trained classification head (missing {sorted(info['missing_keys'])[:3]}); "
            "fine-tune it first, or set teacher.hf_output = \"embedding\" to distil its mean-pooled embeddings"
        )
    return HFEncoder(model, output, pad_token_id)


def shrunk_layers(teacher_layers: int, keep: int) -> list[int]:
    """Evenly spaced teacher layers, starting at the first: DistilBERT's every-other-layer for keep = T / 2."""
    keep = keep or max(teacher_layers // 2, 1)
    if not 1 <= keep <= teacher_layers:
        raise RecipeError(f"recipe key 'student.shrink_layers': {keep} must be between 1 and {teacher_layers}")
    return [i * teacher_layers // keep for i in range(keep)]


_LAYER = re.compile(r"\.layer\.(\d+)\.")


def shrink_encoder(teacher: HFEncoder, keep_layers: int = 0, hidden_size: int = 0,
                   layers: list[int] | None = None, width: Any = None) -> tuple[HFEncoder, list[int]]:  # fmt: skip
    """A student with fewer layers (and optionally narrower), initialised from the chosen teacher layers.

    `layers` names the teacher layers to keep (0-based); without it, `keep_layers` evenly spaced ones.
    Each student tensor is copied from its teacher counterpart (layer i <- teacher layer chosen[i]); when
    narrower, from the slice `width` (a models.width_choice.WidthSlice) names, by default the leading units of
    every dimension that shrank.
    """
    from edgekd.models.width_choice import WidthSlice, slice_tensor

    width = width or WidthSlice("leading")
    teacher_config = teacher.hf.config
    config = copy.deepcopy(teacher.hf.config)
    chosen = list(layers) if layers else shrunk_layers(config.num_hidden_layers, keep_layers)
    config.num_hidden_layers = len(chosen)
    if hidden_size:
        if hidden_size % config.num_attention_heads:
            raise RecipeError(f"recipe key 'student.shrink_hidden_size': {hidden_size} must be a multiple of the "
                              f"teacher's {config.num_attention_heads} attention heads")  # fmt: skip
        config.intermediate_size = config.intermediate_size * hidden_size // config.hidden_size
        config.hidden_size = hidden_size
    student = encoder_from_config(config, teacher.output, teacher.pad_token_id)
    source = teacher.state_dict()
    target = student.state_dict()
    for name, tensor in target.items():
        teacher_name = _LAYER.sub(lambda m: f".layer.{chosen[int(m.group(1))]}.", name)
        if teacher_name not in source:
            raise CheckpointError(f"shrinking: the teacher has no tensor '{teacher_name}' for '{name}'")
        value = source[teacher_name]
        target[name] = (slice_tensor(teacher_name, value, tensor.shape, width, teacher_config.hidden_size,
                                     teacher_config.num_attention_heads, teacher_config.intermediate_size)
                        if value.dim() else value.clone())  # fmt: skip
    student.load_state_dict(target)
    student.source_layers = tuple(chosen)  # the losses' default layer map follows the layers kept
    return student, chosen
