"""How a model is made, as data: built-in zoo, a user factory, or a Hugging Face config — and saved so that
anything reading the run directory (measure, a device profile) can rebuild it.

A model saved as `<name>.safetensors` gets a `<name>.model.json` beside it; a Hugging Face model also gets
`<name>-hf/` with its config and the tokenizer, so the run directory alone is enough to load it again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgekd.errors import CheckpointError
from edgekd.fileio import write_json_atomic
from edgekd.models.checkpoint import apply_state, load_checkpoint, save_checkpoint
from edgekd.models.user import build_user_model
from edgekd.models.zoo import build_model


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "zoo", "factory" or "hf"
    name: str  # what the report calls it
    num_classes: int = 0
    factory: str = ""
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    hf_config: str = ""  # a directory with config.json (relative to the spec file when saved)
    hf_output: str = "logits"
    pad_token_id: int = 0

    def build(self, base_dir: Path | None = None, key: str = "architecture") -> nn.Module:
        """A freshly initialised module of this spec."""
        if self.kind == "factory":
            return build_user_model(self.factory, self.factory_kwargs, key)
        if self.kind == "hf":
            from edgekd.models.hf import encoder_from_config, load_hf_config

            path = Path(self.hf_config)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            config = load_hf_config(path, self.num_classes, self.hf_output)
            return encoder_from_config(config, self.hf_output, self.pad_token_id)
        return build_model(self.name, self.num_classes, key=key)


def save_model(model: nn.Module, spec: ModelSpec, run_dir: Path, name: str, tokenizer: Any = None) -> Path:
    """Write `<name>.safetensors`, `<name>.model.json` and, for Hugging Face models, `<name>-hf/`."""
    path = run_dir / f"{name}.safetensors"
    save_checkpoint(model, path)
    if spec.kind == "hf":
        hf_dir = run_dir / f"{name}-hf"
        model.hf.config.save_pretrained(str(hf_dir))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(hf_dir))
        spec = ModelSpec(**{**asdict(spec), "hf_config": f"{name}-hf"})
    write_json_atomic(path.with_suffix(".model.json"), asdict(spec))
    return path


def load_saved_model(path: Path, architecture: str, num_classes: int,
                     factory: tuple[str, dict[str, Any]] | None = None) -> nn.Module:  # fmt: skip
    """Rebuild a saved model from its `.model.json` (or, for a zoo model saved without one, its name).

    `factory` is what the recipe names for this model: (import path, kwargs), ("", {}) for none. Code is only
    ever imported from the recipe: a sidecar naming a factory the recipe does not name, or other kwargs, is
    refused (the file may have been edited to run something), and without `factory` no sidecar factory is used.
    """
    path = Path(path)
    sidecar = path.with_suffix(".model.json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            spec = ModelSpec(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise CheckpointError(f"'{sidecar}' does not describe a model: {exc}") from exc
        _check_sidecar_factory(spec, factory, sidecar)
        model = spec.build(base_dir=path.parent)
    else:
        model = build_model(architecture, num_classes)
    return load_checkpoint(model, path)


def _check_sidecar_factory(spec: ModelSpec, factory: tuple[str, dict[str, Any]] | None, sidecar: Path) -> None:
    named = (spec.factory, dict(spec.factory_kwargs)) if spec.kind == "factory" else ("", {})
    if spec.kind != "factory" and not (spec.factory or spec.factory_kwargs):
        if factory is None or not factory[0]:
            return
    if factory is None:
        raise CheckpointError(f"'{sidecar}' names the factory '{spec.factory}'; edgekd imports code only from a "
                              "recipe, never from a file in a run directory: pass the recipe's factory")  # fmt: skip
    expected = (factory[0], dict(factory[1]))
    if named != expected:
        raise CheckpointError(f"'{sidecar}' disagrees with the recipe: it names factory {named[0] or 'none'!r} with "
                              f"{named[1]}, the recipe {expected[0] or 'none'!r} with {expected[1]}; refusing to "
                              "build it (the file was edited, or the run directory belongs to another recipe: "
                              "rerun with --fresh)")  # fmt: skip


def load_weights(model: nn.Module, path: Path, allow_pickle_code_execution: bool = False) -> nn.Module:
    """A user's checkpoint (safetensors or a torch state dict) into `model`, tensors checked by name and shape."""
    from edgekd.models.user import read_state_dict

    return apply_state(model, read_state_dict(path, allow_pickle_code_execution), str(path))
