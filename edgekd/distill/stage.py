"""The teacher and distill stages of a run: which models, trained how, written where.

Teacher: a local Hugging Face directory, a user factory with a checkpoint, or a zoo model with a checkpoint;
without a checkpoint a zoo or factory teacher is trained once and cached. Student: the zoo, a factory, a
Hugging Face config, or (with a Hugging Face teacher) the teacher shrunk. Optional teacher-assistants sit
between them, each distilled from the previous model and then teaching the next.

Each stage takes the recipe sections it reads (and the task's data), not the whole recipe, so what a stage
depends on is its signature; the recipe's checks (edgekd.recipe_checks) ran before either starts.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.distill.defaults import resolve_distill
from edgekd.distill.distributed import barrier, is_main, main_first
from edgekd.distill.losses import UNLABELLED
from edgekd.distill.run import fidelity, fit, labelled_accuracy, predict_logits
from edgekd.distill.story import advice, curve, gap_recovered, keep_labels, training_figures
from edgekd.distill.trainer import TrainConfig
from edgekd.errors import RecipeError
from edgekd.fileio import sha256_file, sha256_json
from edgekd.models import ModelSpec, count_parameters, load_weights, save_checkpoint, save_model
from edgekd.recipe import DistillSection, LossSection, StudentSection, TaskSection, TeacherSection
from edgekd.tasks import TaskData

TEACHER_FILE = "teacher.safetensors"


def teacher_spec(section: TeacherSection, num_classes: int, pad_token_id: int = 0) -> ModelSpec:
    if section.hf_dir:
        return ModelSpec("hf", section.architecture, num_classes, hf_config=section.hf_dir,
                         hf_output=section.hf_output, pad_token_id=pad_token_id)  # fmt: skip
    if section.factory:
        return ModelSpec("factory", section.architecture, num_classes, section.factory, dict(section.factory_kwargs))
    return ModelSpec("zoo", section.architecture, num_classes)


def _tokenizer(task_section: TaskSection, teacher_section: TeacherSection):
    from edgekd.tasks.text import load_tokenizer

    return load_tokenizer(task_section.tokenizer or teacher_section.hf_dir)


def teacher_stage(section: TeacherSection, task_section: TaskSection, task: TaskData, run_dir: Path,
                  cache_root: Path) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """Load (or train and cache) the teacher and write it into the run directory as `teacher.safetensors`.
    `task_section` seeds the init and names the tokenizer; with the data's fingerprint it keys the cache."""
    with main_first():  # under DDP: rank 0 trains/caches and writes the teacher, the others then load it
        return _teacher_stage(section, task_section, task, run_dir, cache_root)


def _teacher_stage(section: TeacherSection, task_section: TaskSection, task: TaskData, run_dir: Path,
                   cache_root: Path) -> tuple[nn.Module, dict]:  # fmt: skip
    t0 = time.perf_counter()
    summary: dict[str, Any] = {}
    if section.hf_dir:
        from edgekd.models.hf import load_hf_encoder

        tokenizer = _tokenizer(task_section, section)
        spec = teacher_spec(section, task.num_classes, tokenizer.pad_token_id or 0)
        teacher = load_hf_encoder(section.hf_dir, section.hf_output, task.num_classes, spec.pad_token_id)
        probe_model(teacher, task, "teacher.hf_dir", section.hf_output == "embedding")
        summary["origin"] = "hugging face directory"
        if is_main():
            save_model(teacher, spec, run_dir, "teacher", tokenizer)
    else:
        spec = teacher_spec(section, task.num_classes)
        torch.manual_seed(task_section.seed)  # the teacher's init is part of the seeded run
        key = "teacher.factory" if section.factory else "teacher.architecture"
        teacher = spec.build(key=key)
        probe_model(teacher, task, key, section.hf_output == "embedding")
        if section.checkpoint:
            source, summary["origin"] = Path(section.checkpoint), "user checkpoint"
        else:
            key = sha256_json({"task": task_section, "data": task.fingerprint(), "teacher": section})[:16]
            source = cache_root / "teachers" / f"{section.architecture}-{key}.safetensors"
            summary["origin"] = "cache"
            if not source.is_file():
                summary["origin"] = "trained"  # with run_dir: an interrupted teacher training resumes too
                result = fit(teacher, task.x_train, task.y_train, task.x_val, task.y_val,
                             TrainConfig(section.epochs, section.lr, section.batch_size, task_section.seed),
                             [LossSection("cross-entropy")], label="teacher", distributed=False,
                             run_dir=run_dir)  # fmt: skip
                summary["best_epoch"], summary["best_val_accuracy"] = result.best_epoch, result.best_val_metric
                save_checkpoint(teacher, source)
        load_weights(teacher, source, section.allow_pickle_code_execution)
        if is_main():
            save_model(teacher, spec, run_dir, "teacher")
    teacher.eval()
    summary.update(checkpoint=TEACHER_FILE, sha256=sha256_file(run_dir / TEACHER_FILE),
                   params=count_parameters(teacher), seconds=round(time.perf_counter() - t0, 3))  # fmt: skip
    return teacher, summary


@torch.no_grad()
def probe_model(model: nn.Module, task: TaskData, key: str, embedding: bool) -> None:
    """Run the model on two of the task's samples before any training, so a model that does not fit the data
    is one clear line naming it, not a traceback from inside its forward pass minutes later."""
    sample = torch.from_numpy(task.x_train[:2])
    try:
        out = model.eval()(sample)
    except Exception as exc:  # whatever the model's forward raises: shapes, dtypes, its own checks
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RecipeError(f"recipe key '{key}': the model fails on this task's inputs (a batch shaped "
                          f"{list(sample.shape)}, {sample.dtype}): {type(exc).__name__}: {first}. Use a model that "
                          "takes them, e.g. your own: teacher.factory / student.factory = \"package.module:function\""
                          ) from exc  # fmt: skip
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RecipeError(f"recipe key '{key}': the model returns {shape}; it must return one [batch, features] "
                          "tensor (class logits, or embeddings with teacher.hf_output = \"embedding\")")  # fmt: skip
    if not embedding and out.shape[1] != task.num_classes:
        raise RecipeError(f"recipe key '{key}': the model returns {out.shape[1]} logits per sample but the task has "
                          f"{task.num_classes} classes; build it with {task.num_classes} outputs (e.g. factory_kwargs)")


def build_student(section: StudentSection, teacher_section: TeacherSection, seed: int, task: TaskData,
                  teacher: nn.Module) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:  # fmt: skip
    """The student, freshly initialised (or shrunk from a Hugging Face teacher), and how it was made."""
    torch.manual_seed(seed)
    if section.factory:
        spec = ModelSpec("factory", section.architecture, task.num_classes, section.factory,
                         dict(section.factory_kwargs))  # fmt: skip
        return spec.build(key="student.factory"), spec, {"origin": "factory"}
    if teacher_section.hf_dir:
        from edgekd.models.hf import encoder_from_config, load_hf_config

        base = teacher_spec(teacher_section, task.num_classes, teacher.pad_token_id)
        spec = ModelSpec(**{**base.__dict__, "name": section.architecture})
        if section.hf_config:
            config = load_hf_config(section.hf_config, task.num_classes, teacher_section.hf_output)
            student = encoder_from_config(config, teacher_section.hf_output, teacher.pad_token_id)
            return student, spec, {"origin": f"config {section.hf_config}, random init"}
        from edgekd.models.layer_choice import choose_layers

        keep = section.shrink_layers or len(section.teacher_layers)
        embedding = teacher_section.hf_output == "embedding"
        width = teacher.hf.config.hidden_size
        if embedding and section.shrink_hidden_size not in (0, width):
            raise RecipeError(f"recipe key 'student.shrink_hidden_size': {section.shrink_hidden_size} would give "
                              f"{section.shrink_hidden_size}-dimensional embeddings, and the teacher's are {width}: "
                              "an embedding student is judged (and distilled) by cosine to the teacher's "
                              "embeddings, so it keeps the teacher's width. Leave it at 0 and shrink depth "
                              "(student.shrink_layers), "
                              "or distil a classifier head (teacher.hf_output = \"logits\")")  # fmt: skip
        student, choice = choose_layers(teacher, task.x_val, keep, section.shrink_hidden_size, embedding,
                                        tuple(section.teacher_layers))  # fmt: skip
        return student, spec, {"origin": "teacher shrunk", "teacher_layers": choice.layers,
                               "hidden_size": student.hf.config.hidden_size,
                               "layer_choice": choice.to_json()}  # fmt: skip
    spec = ModelSpec("zoo", section.architecture, task.num_classes)
    return spec.build(key="student.architecture"), spec, {"origin": "zoo"}


def train_config(d: DistillSection, seed: int) -> TrainConfig:
    return TrainConfig(epochs=d.epochs, lr=d.lr, batch_size=d.batch_size, seed=seed, weight_decay=d.weight_decay,
                       warmup_fraction=d.warmup_fraction, grad_clip=d.grad_clip, patience=d.patience,
                       checkpoint_every=d.checkpoint_every)  # fmt: skip


def distill_stage(section: DistillSection, student_section: StudentSection, teacher_section: TeacherSection,
                  task_section: TaskSection, task: TaskData, teacher: nn.Module, run_dir: Path) -> dict[str, Any]:
    """Distil the student (through any assistants), write `student.safetensors`, and summarise the run:
    the losses and their final values, test accuracy, fidelity to the teacher, the labels-only baseline.
    The teacher's section says what it emits (and its directory, for a shrunk student and the tokenizer)."""
    seed = task_section.seed
    d, _ = resolve_distill(section, pretrained=False)  # assistants are trained from scratch
    config = train_config(d, seed)
    summary: dict[str, Any] = {
        "loss": "+".join(loss.name for loss in d.losses), "temperature": d.temperature, "alpha": d.alpha,
        "seed": seed,
        "teacher_outputs": "cached (memory-mapped)" if d.cache_teacher_outputs else "computed per batch",
        "log": "train.jsonl",
    }  # fmt: skip
    teacher_outputs = predict_logits(teacher, task.x_test)
    embedding = teacher_section.hf_output == "embedding"
    common = dict(temperature=d.temperature, alpha=d.alpha, run_dir=run_dir,
                  validate_by="teacher-cosine" if embedding else "auto")  # fmt: skip
    assistants = []
    for i, assistant_section in enumerate(d.assistants, 1):
        spec = teacher_spec(TeacherSection(architecture=assistant_section.architecture,
                                           factory=assistant_section.factory,
                                           factory_kwargs=dict(assistant_section.factory_kwargs)),
                            task.num_classes)  # fmt: skip
        torch.manual_seed(seed)
        assistant = spec.build(key=f"distill.assistants[{i - 1}]")
        label = f"assistant {i}"
        result = fit(assistant, task.x_train, task.y_train, task.x_val, task.y_val, config,
                     [LossSection("hinton-kd")], label=label, teacher=teacher,
                     cache_teacher_dir=_cache(run_dir, d, label), **common)  # fmt: skip
        accuracy = labelled_accuracy(predict_logits(assistant, task.x_test), task.y_test)
        assistants.append({"architecture": assistant_section.architecture or assistant_section.factory,
                           "test_accuracy": accuracy, "params": count_parameters(assistant),
                           "best_epoch": result.best_epoch})  # fmt: skip
        teacher = assistant.eval()
    if assistants:
        summary["assistants"] = assistants
    student, spec, origin = build_student(student_section, teacher_section, seed, task, teacher)
    probe_model(student, task, "student.factory" if student_section.factory else "student.architecture", embedding)
    d, summary["defaults"] = resolve_distill(section, pretrained=origin["origin"] == "teacher shrunk")
    config = train_config(d, seed)
    summary.update(epochs=d.epochs, lr=d.lr, batch_size=d.batch_size, warmup_fraction=d.warmup_fraction,
                   weight_decay=d.weight_decay, patience=d.patience)  # fmt: skip
    y_train = keep_labels(task.y_train, d.labelled_samples, seed)  # the student's own labels
    summary["labelled_train"] = int((y_train != UNLABELLED).sum())
    untrained = copy.deepcopy(student)  # the labels-only twin starts here too, so only the loss differs
    label = "student (KD)"
    result = fit(student, task.x_train, y_train, task.x_val, task.y_val, config, d.losses, label=label,
                 teacher=teacher, cache_teacher_dir=_cache(run_dir, d, label), **common)  # fmt: skip
    if is_main():
        tokenizer = _tokenizer(task_section, teacher_section) if spec.kind == "hf" else None
        save_model(student, spec, run_dir, "student", tokenizer, loadable=True, max_length=task_section.max_length)
    outputs = predict_logits(student, task.x_test)
    summary["student"] = {**origin, "params": count_parameters(student)}
    summary["losses"] = [{"name": loss.name, "weight": loss.weight, "final": result.final_losses.get(loss.name)}
                         for loss in d.losses]  # fmt: skip
    summary["kd"] = {"best_epoch": result.best_epoch, "steps": result.steps, "stopped_early": result.stopped_early,
                     "best_val_cosine" if embedding else "best_val_accuracy": result.best_val_metric}  # fmt: skip
    if not embedding:
        summary["kd"]["test_accuracy"] = labelled_accuracy(outputs, task.y_test)
    summary["fidelity"] = {"split": "test", **fidelity(outputs, teacher_outputs, embedding)}
    summary["kd"].update(initial_val=_finite(result.initial_val_metric), curve=curve(result),
                         **training_figures(result))  # fmt: skip
    summary["curves"] = {"metric": "val cosine to the teacher" if embedding else "val accuracy",
                         "teacher": 1.0 if embedding else labelled_accuracy(predict_logits(teacher, task.x_val),
                                                                             task.y_val)}  # fmt: skip
    if d.train_scratch_baseline and (y_train >= 0).any() and not embedding:
        baseline = fit(untrained, task.x_train, y_train, task.x_val, task.y_val, config,
                       [LossSection("cross-entropy")], label="student (labels only)", run_dir=run_dir)  # fmt: skip
        summary["labels_only"] = {
            "best_epoch": baseline.best_epoch,
            "best_val_accuracy": baseline.best_val_metric,
            "test_accuracy": labelled_accuracy(predict_logits(untrained, task.x_test), task.y_test),
            "curve": curve(baseline),
        }
        teacher_test = labelled_accuracy(teacher_outputs, task.y_test)
        summary["kd"]["gap_recovered"] = gap_recovered(summary["kd"]["test_accuracy"],
                                                       summary["labels_only"]["test_accuracy"], teacher_test)
    summary["advice"] = advice(summary["fidelity"], result, len(task.x_train), d.epochs)
    barrier()
    if is_main():
        for scratch_dir in ("teacher-outputs", "checkpoints"):  # the stage is done: caches and resume points served
            shutil.rmtree(run_dir / scratch_dir, ignore_errors=True)
    return summary


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _cache(run_dir: Path, d: DistillSection, label: str) -> Path | None:
    if not d.cache_teacher_outputs:
        return None
    return run_dir / "teacher-outputs" / label.replace(" ", "-").replace("(", "").replace(")", "")
