"""Recipes: typed, validated TOML. A typo fails with its key path and a did-you-mean, never silently.

This module holds the sections and reads a recipe (a TOML file, a built-in, `key=value` overrides); the checks
every value passes when a Recipe is built are edgekd.recipe_checks.
"""

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

from edgekd.errors import RecipeError, did_you_mean, printable
from edgekd.recipe_checks import check_recipe_values


@dataclass(frozen=True)
class TaskSection:
    # "digits" (built in), "text" (local files, for Hugging Face encoders), "npz" (your arrays in task.path), or
    # "package.module:function" (your function, called with task.kwargs, returning the arrays)
    name: str = "digits"
    seed: int = 0  # seeds the split, the weight init and the batch order
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    path: str = ""  # text task: a local .txt (one sample per line), .csv or .jsonl file; npz task: the .npz
    input_name: str = "input"  # npz and function tasks: the exported model's input name
    kwargs: dict[str, Any] = field(default_factory=dict)  # function task: keyword arguments for the function
    text_field: str = "text"  # text task: the column / key holding the text
    label_field: str = "label"  # text task: the column / key holding the class; missing or empty = unlabelled
    max_length: int = 64  # text task: tokens per sample (padded / truncated)
    tokenizer: str = ""  # text task: a local tokenizer directory; empty = the teacher's hf_dir


@dataclass(frozen=True)
class TeacherSection:
    # Where the model comes from, first match wins: hf_dir (a local Hugging Face directory), factory (a user's
    # `package.module:function` called with factory_kwargs), else architecture (a name from the built-in zoo).
    architecture: str = "digits-cnn"
    factory: str = ""
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    hf_dir: str = ""
    # What the teacher emits: "logits" (class scores, judged by accuracy) or "embedding" (vectors, judged by cosine
    # to the teacher's); for a Hugging Face directory, its classification head or mean pooling.
    hf_output: str = "logits"
    checkpoint: str = ""  # safetensors or a torch state dict; empty = train (and cache) one (zoo / factory)
    # Loading a pickled checkpoint that needs more than tensors can run arbitrary code. Off unless you trust it.
    allow_pickle_code_execution: bool = False
    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 64


@dataclass(frozen=True)
class StudentSection:
    # Like the teacher: factory (+ factory_kwargs), hf_config (a local Hugging Face config, random init), or
    # the zoo architecture. With a Hugging Face teacher and none of these, the student is the teacher shrunk.
    architecture: str = "digits-tiny"
    factory: str = ""
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    hf_config: str = ""
    shrink_layers: int = 0  # Hugging Face: keep this many teacher layers; 0 = half of them
    shrink_hidden_size: int = 0  # Hugging Face: a narrower student (hidden and FFN sliced); 0 = teacher's width
    # Hugging Face: which teacher layers (0-based) the shrunk student keeps, e.g. [0, 4, 5]; empty = chosen by
    # measurement: the candidate subset whose student starts closest to the teacher on validation samples
    teacher_layers: tuple[int, ...] = ()


@dataclass(frozen=True)
class LossSection:
    """One weighted term of the distillation loss (names: see edgekd.distill.losses.LOSSES)."""

    name: str = "hinton-kd"
    weight: float = 1.0
    student_layers: tuple[str, ...] = ()  # fitnets-hint / attention-transfer: student module paths
    teacher_layers: tuple[str, ...] = ()  # ... and the teacher module paths they learn from
    layer_map: tuple[int, ...] = ()  # hidden-state-mse / attention-kl: teacher layer per student layer; () = uniform


@dataclass(frozen=True)
class AssistantSection:
    """A teacher-assistant: distilled from the previous model, then teaches the next (Mirzadeh et al., 2020).
    An assistant with the student's own architecture makes a born-again step (Furlanello et al., 2018)."""

    architecture: str = ""
    factory: str = ""
    factory_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DistillSection:
    # 0 (or -1 where 0 means something) = the default for the kind of student: one trained from scratch, or one
    # initialised from a pretrained teacher's weights (edgekd.distill.defaults, which says why each value)
    epochs: int = 0
    lr: float = 0.0
    batch_size: int = 0
    temperature: float = 4.0
    alpha: float = 0.7  # hinton-kd: weight of the KD term; (1 - alpha) goes to cross-entropy on the labels
    losses: tuple[LossSection, ...] = (LossSection(),)
    weight_decay: float = -1.0  # AdamW's decoupled weight decay; -1 = by student kind
    warmup_fraction: float = -1.0  # share of the steps with a linear lr warm-up before the cosine decay; -1 = auto
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    patience: int = -1  # early stopping: epochs without a better validation metric; 0 = run every epoch; -1 = auto
    # The student (and its labels-only twin) see the labels of only this many training samples (a seeded,
    # class-balanced draw); the others become unlabelled transfer samples that the teacher alone teaches.
    # 0 = every label. The teacher is trained on every label, as a pretrained teacher would have been.
    labelled_samples: int = 0
    cache_teacher_outputs: bool = True  # compute a frozen teacher's outputs once, memory-mapped on disk
    checkpoint_every: int = 0  # steps between resume checkpoints (each epoch end always checkpoints)
    assistants: tuple[AssistantSection, ...] = ()  # teacher -> assistants... -> student, each teaching the next
    train_scratch_baseline: bool = True  # the same student on labels alone, to show whether KD paid off


@dataclass(frozen=True)
class ExportSection:
    opset: int = 18
    parity_atol: float = 1e-4  # max |onnx - pytorch| on the test split before export is reported failed


@dataclass(frozen=True)
class QuantizeSection:
    variants: tuple[str, ...] = ("int8-dynamic", "int8-static")
    calibration_samples: int = 256  # drawn from the training split
    # Static INT8 activations: "uint8" (asymmetric, ONNX Runtime's CPU default), "int8-symmetric" (zero point 0,
    # the only form TensorRT reads), or "auto": int8-symmetric when a target profile builds TensorRT engines.
    activations: str = "auto"
    # How static INT8 activation ranges are set: "minmax", "percentile", "entropy", or "auto": each is tried and
    # the one whose model is closest to the fp32 student on the validation split is kept (all are reported).
    calibration: str = "auto"
    percentile: float = 99.99  # calibration "percentile": the share of each activation's values kept in range
    # Which ops static INT8 quantizes: "safe" leaves LayerNorm, Softmax, residual Add/Mul, Gather in float (what
    # breaks transformers), "all" is ONNX Runtime's default, "matmul" only MatMul / Gemm / Conv inputs.
    static_ops: str = "safe"
    # Accuracy-aware static INT8: the most points (vs the fp32 student on validation: top-1 disagreement or
    # 1 - cosine, x100) the static model may lose; over it, the most sensitive nodes stay float, one at a time, up
    # to max_float_nodes (ONNX Runtime), and NNCF's accuracy control reverts ops for the OpenVINO int8 IR. 0 = off;
    # -1 = from [budgets], taken as an upper bound: max_accuracy_drop N -> N, min_teacher_agreement A -> 100 - A,
    # min_teacher_cosine C -> (1 - C) x 100 (the tightest; none of them: off). See edgekd.quantize.budget.
    max_drop: float = -1.0
    max_float_nodes: int = 8


@dataclass(frozen=True)
class BuildSection:
    openvino: bool = True  # build an OpenVINO IR when openvino is installed
    # OpenVINO int8 IR: "nncf" (NNCF post-training quantization of the fp32 model on the calibration samples;
    # transformer model type and SmoothQuant for transformer graphs), or "qdq" (read from the static QDQ model)
    openvino_int8: str = "nncf"
    # Token models: OpenVINO IRs run as static copies per sequence bucket (16, 24, 32, ... tokens; inputs padded to
    # the next) where that measures faster at real lengths (edgekd.runtimes.openvino_buckets); each bucket used is
    # a compiled copy of the model (BERT-4x256 int8: 398 MB peak RSS against 214 MB dynamic, 1.65x faster per text;
    # benchmarks/results/openvino_buckets.md). false: dynamic only.
    openvino_sequence_buckets: bool = True


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
    # what `edgekd gate` checks this run's rows against by default, named as its flags (max_accuracy_drop = 2)
    budgets: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_recipe_values(self)  # every value before the first stage starts (edgekd.recipe_checks)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(item, 'tables' if dataclasses.is_dataclass(item) else str(item))}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"recipe key '{key}' must be a table, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"recipe key '{key}' must be {_type_name(tp)}, got {value!r}")
        item_type = typing.get_args(tp)[0]
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except RecipeError:
                continue
        raise RecipeError(f"recipe key '{key}' has the wrong type: {value!r}")
    if origin is dict:  # free-form keyword arguments for a user's factory: plain TOML values
        if not isinstance(value, dict):
            raise RecipeError(f"recipe key '{key}' must be a table, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise RecipeError(f"recipe key '{key}' must be {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{printable(key)}" if prefix else printable(key)
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
        origin = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"recipe file '{path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
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
