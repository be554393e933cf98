"""Recipes: typed, validated TOML. A typo fails with its key path and a did-you-mean, never silently."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from edgekd.errors import RecipeError, did_you_mean


@dataclass(frozen=True)
class TaskSection:
    name: str = "digits"
    seed: int = 0  # seeds the split, the weight init and the batch order
    val_fraction: float = 0.15
    test_fraction: float = 0.2


@dataclass(frozen=True)
class TeacherSection:
    architecture: str = "digits-cnn"  # a name from the built-in zoo
    checkpoint: str = ""  # a user's safetensors checkpoint; empty = train (and cache) one
    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 64


@dataclass(frozen=True)
class StudentSection:
    architecture: str = "digits-tiny"


@dataclass(frozen=True)
class DistillSection:
    epochs: int = 80
    lr: float = 1e-2
    batch_size: int = 64
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the KD term; (1 - alpha) goes to cross-entropy on the labels
    train_scratch_baseline: bool = True  # the same student on labels alone, to show whether KD paid off


@dataclass(frozen=True)
class ExportSection:
    opset: int = 18
    parity_atol: float = 1e-4  # max |onnx - pytorch| on the test split before export is reported failed


@dataclass(frozen=True)
class QuantizeSection:
    variants: tuple[str, ...] = ("int8-dynamic", "int8-static")
    calibration_samples: int = 256  # drawn from the training split


@dataclass(frozen=True)
class BuildSection:
    openvino: bool = True  # build an OpenVINO IR when openvino is installed


@dataclass(frozen=True)
class MeasureSection:
    # Timing presets (edgekd.measure.timing.TIMING_PRESETS): "quick" for CI and tests (noisy), "default"
    # (>= 10 warm-up, >= 100 runs and >= 2 s per figure), "thorough" (>= 1000 runs and >= 10 s).
    preset: str = "default"
    warmup_runs: int = 0  # 0 = the preset's value; a positive value overrides it
    min_runs: int = 0  # 0 = the preset's value
    min_seconds: float = 0.0  # 0 = the preset's value
    # "subprocess": each artifact timed in a process of its own (honest memory, no shared thread pools);
    # "in-process" for debugging.
    isolation: str = "subprocess"
    throughput_batch_size: int = 64
    # Accuracy is computed at this batch size. INT8-dynamic scales depend on the batch's contents, so
    # the figure is only reproducible at the batch size it was computed with; 1 matches deployment.
    eval_batch_size: int = 1
    threads: int = 0  # 0 = one per CPU core


@dataclass(frozen=True)
class TargetsSection:
    profiles: tuple[str, ...] = ("host",)


@dataclass(frozen=True)
class Recipe:
    name: str = "digits"
    task: TaskSection = field(default_factory=TaskSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    distill: DistillSection = field(default_factory=DistillSection)
    export: ExportSection = field(default_factory=ExportSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    build: BuildSection = field(default_factory=BuildSection)
    measure: MeasureSection = field(default_factory=MeasureSection)
    targets: TargetsSection = field(default_factory=TargetsSection)

    def __post_init__(self) -> None:
        _check_recipe_values(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


QUANTIZE_VARIANTS = ("int8-dynamic", "int8-static")
MEASURE_PRESETS = ("quick", "default", "thorough")  # keys of edgekd.measure.timing.TIMING_PRESETS
MEASURE_ISOLATION = ("subprocess", "in-process")


def _check_recipe_values(recipe: Recipe) -> None:
    checks = [
        (0 < recipe.task.val_fraction < 1, "task.val_fraction", "must be between 0 and 1"),
        (0 < recipe.task.test_fraction < 1, "task.test_fraction", "must be between 0 and 1"),
        (recipe.task.val_fraction + recipe.task.test_fraction < 1, "task", "val + test fractions must be < 1"),
        (recipe.distill.temperature > 0, "distill.temperature", "must be > 0"),
        (0 <= recipe.distill.alpha <= 1, "distill.alpha", "must be between 0 and 1"),
        (recipe.measure.min_runs >= 0, "measure.min_runs", "must be >= 0 (0 = the preset's value)"),
        (recipe.measure.warmup_runs >= 0, "measure.warmup_runs", "must be >= 0 (0 = the preset's value)"),
        (recipe.measure.min_seconds >= 0, "measure.min_seconds", "must be >= 0 (0 = the preset's value)"),
        (recipe.measure.preset in MEASURE_PRESETS, "measure.preset", f"must be one of {', '.join(MEASURE_PRESETS)}"),
        (recipe.measure.isolation in MEASURE_ISOLATION, "measure.isolation",
         f"must be one of {', '.join(MEASURE_ISOLATION)}"),
        (recipe.measure.throughput_batch_size >= 1, "measure.throughput_batch_size", "must be >= 1"),
        (recipe.measure.eval_batch_size >= 1, "measure.eval_batch_size", "must be >= 1"),
        (recipe.measure.threads >= 0, "measure.threads", "must be >= 0 (0 = one per core)"),
        (recipe.quantize.calibration_samples >= 1, "quantize.calibration_samples", "must be >= 1"),
    ]
    for section, name in ((recipe.teacher, "teacher"), (recipe.distill, "distill")):
        checks.append((section.epochs >= 0, f"{name}.epochs", "must be >= 0"))
        checks.append((section.batch_size >= 1, f"{name}.batch_size", "must be >= 1"))
        checks.append((section.lr > 0, f"{name}.lr", "must be > 0"))
    for ok, key, why in checks:
        if not ok:
            raise RecipeError(f"recipe key '{key}' {why}")
    for variant in recipe.quantize.variants:
        if variant not in QUANTIZE_VARIANTS:
            raise RecipeError(
                f"recipe key 'quantize.variants': unknown variant '{variant}'{did_you_mean(variant, QUANTIZE_VARIANTS)}"
                f"; choose from {', '.join(QUANTIZE_VARIANTS)}"
            )


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"recipe key '{key}' must be a table, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"recipe key '{key}' must be a {_type_name(tp)}, got {value!r}")
        item_type = typing.get_args(tp)[0]
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except RecipeError:
                continue
        raise RecipeError(f"recipe key '{key}' has the wrong type: {value!r}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise RecipeError(f"recipe key '{key}' must be a {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise RecipeError(f"unknown recipe key '{path}'{did_you_mean(key, names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    return _build(Recipe, data)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """Turn `distill.epochs=5` into {'distill': {'epochs': 5}}; the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override '{text}' must look like section.key=value, e.g. distill.epochs=5")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def apply_overrides(recipe: Recipe, overrides: typing.Sequence[str]) -> Recipe:
    """A copy of `recipe` with `section.key=value` overrides applied and validated."""
    data = recipe.to_dict()
    for override in overrides:
        data = _merge(data, parse_override(override))
    return recipe_from_dict(data)


BUILTIN_RECIPES = ("digits",)


def builtin_recipe_text(name: str) -> str:
    if name not in BUILTIN_RECIPES:
        raise RecipeError(f"no built-in recipe '{name}'{did_you_mean(name, BUILTIN_RECIPES)}")
    return (resources.files("edgekd") / "recipes" / f"{name}.toml").read_text(encoding="utf-8")


def load_recipe(source: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Load a recipe from a TOML path or a built-in name (default: 'digits'), then apply `key=value` overrides."""
    source = "digits" if source is None else source
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file '{path}' does not exist; pass a TOML file or a built-in name")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    else:
        text, origin = builtin_recipe_text(str(source)), f"built-in recipe '{source}'"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{origin} is not valid TOML: {exc}") from exc
    for override in overrides:
        data = _merge(data, parse_override(override))
    try:
        return recipe_from_dict(data)
    except RecipeError as exc:
        raise RecipeError(f"{origin}: {exc}") from None
