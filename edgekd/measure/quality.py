"""What a row's outputs are worth: task accuracy, fidelity to the teacher, and the drop split by stage.

The drop against the teacher is split along the chain an artifact was made by (its `source` links):
teacher -> PyTorch student is the distillation gap, -> ONNX fp32 the export drift, -> INT8 / fp16 variants the
quantization drop, -> an engine (OpenVINO, TensorRT) the engine drift. Each step is the accuracy of the parent
minus that of the child on the same held-out samples, so the steps add up to the total drop exactly.
A step that changes precision and engine at once (an INT8 OpenVINO IR made from the fp32 ONNX) counts as
quantization: the precision change is the larger cause by far. A chain through an artifact that was not
measured is not split at all (`None`), because the unmeasured step would hide inside its neighbour.

A task has one quality metric. Classifiers: accuracy on the labels. Embedding encoders (sentence embeddings,
no classes): the mean cosine of each row's embeddings with the teacher's, so the teacher scores 1.0 and the
drop is how far a row's embeddings moved from the teacher's, in points of cosine (x100).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.report.figures import FIGURES
from edgekd.runtimes.base import Runner
from edgekd.samples import Inputs, count, take

if TYPE_CHECKING:
    from edgekd.report.model import Parity, Row

STAGES = ("distillation", "export", "quantization", "engine")

ACCURACY, TEACHER_COSINE = "accuracy", "teacher_cosine"
METRIC_FIGURES = {ACCURACY: FIGURES["accuracy"], TEACHER_COSINE: FIGURES["teacher_cosine"]}  # a row's metric
DROP_FIGURES = {ACCURACY: FIGURES["accuracy_drop"], TEACHER_COSINE: FIGURES["cosine_drop"]}  # teacher minus row
METRIC_LABELS = {ACCURACY: "accuracy", TEACHER_COSINE: "cosine to teacher"}


# Below these, an artifact no longer computes what the fp32 student computes (flag `quality-collapse`, never
# recommended): classifiers by top-1 agreement with the fp32 PyTorch student, embeddings by mean cosine to it.
# 99% / 0.99 is where a good INT8 transformer lands (dynamic INT8 of MiniLM: 0.998) and a broken one does not
# (every-op static INT8: 0.81); one class flip in a hundred is the most a deployment should absorb unnoticed.
COLLAPSE_TOP1_AGREEMENT = 0.99
COLLAPSE_COSINE = 0.99


def quality_collapse(parity: Parity, metric: str) -> str | None:
    """A sentence when a row's fidelity to the fp32 student (`student_parity`) is below the threshold, else None."""
    if metric == ACCURACY and parity.top1_agreement is not None:
        if parity.top1_agreement < COLLAPSE_TOP1_AGREEMENT:
            return (f"top-1 agreement with the fp32 student is {parity.top1_agreement * 100:.1f}% "
                    f"(< {COLLAPSE_TOP1_AGREEMENT * 100:.0f}%): this artifact does not compute what the student does")
        return None
    if metric != ACCURACY and parity.mean_cosine < COLLAPSE_COSINE:
        return (f"mean cosine to the fp32 student's embeddings is {parity.mean_cosine:.4f} (< {COLLAPSE_COSINE}): "
                "this artifact does not compute what the student does")
    return None


def task_metric(model_output: str) -> str:
    """The quality metric of a task whose teacher emits `model_output` ("logits" or "embedding")."""
    return TEACHER_COSINE if model_output == "embedding" else ACCURACY


def report_metric(report: Mapping[str, Any]) -> str:
    """The metric a report's rows are judged on (reports before 1.2 are all accuracy)."""
    return report.get("task", {}).get("metric", ACCURACY)


def metric_value(row: Mapping[str, Any], metric: str) -> float | None:
    """A report row's task metric: accuracy, or for embeddings cosine to the teacher."""
    return METRIC_FIGURES[metric].value(row)


def metric_drop(row: Mapping[str, Any], metric: str) -> float | None:
    """Teacher minus row in points: the accuracy drop, or for embeddings (1 - cosine to teacher) x 100."""
    return DROP_FIGURES[metric].value(row)


def predict(runner: Runner, inputs: Inputs, batch_size: int) -> np.ndarray:
    return np.concatenate([runner(take(inputs, slice(i, i + batch_size)))
                           for i in range(0, count(inputs), batch_size)])  # fmt: skip


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def top1_agreement(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == teacher_logits.argmax(axis=1)).mean())


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def mean_kl(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Mean KL(teacher || row) in nats over the samples, softmax at temperature 1."""
    log_p, log_q = _log_softmax(teacher_logits), _log_softmax(logits)
    return float(max((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean(), 0.0))


def mean_cosine(outputs: np.ndarray, teacher_outputs: np.ndarray) -> float:
    """Mean cosine similarity of each output vector with the teacher's (the fidelity of an embedding model)."""
    a = outputs.reshape(len(outputs), -1).astype(np.float64)
    b = teacher_outputs.reshape(len(teacher_outputs), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines = (a * b).sum(axis=1) / np.maximum(norms, 1e-12)
    return float(np.clip(cosines, -1.0, 1.0).mean())  # rounding can put identical vectors a hair above 1


def neighbour_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float | None:
    """Leave-one-out 1-nearest-neighbour accuracy by cosine among the eval samples: whether an embedding space
    still keeps the classes apart. None unless every sample is labelled (and there are two or more)."""
    if len(labels) < 2 or (labels < 0).any():
        return None
    e = embeddings.reshape(len(embeddings), -1).astype(np.float64)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    similarity = e @ e.T
    np.fill_diagonal(similarity, -np.inf)
    return float((labels[similarity.argmax(axis=1)] == labels).mean())


def fidelity(logits: np.ndarray, teacher_logits: np.ndarray, metric: str = ACCURACY) -> dict[str, float]:
    """How closely outputs follow the teacher's. Embeddings have no classes: only their cosine is meaningful."""
    if metric == TEACHER_COSINE:
        return {"mean_cosine": mean_cosine(logits, teacher_logits)}
    return {
        "top1_agreement": top1_agreement(logits, teacher_logits),
        "mean_kl": mean_kl(logits, teacher_logits),
        "mean_cosine": mean_cosine(logits, teacher_logits),
    }


def stage_of(row: Row, parent: Row | None) -> str:
    """Which stage the step parent -> row belongs to (parent None: the teacher itself)."""
    if parent is None or parent.role == "teacher":
        return "distillation" if row.format == "pytorch" else "export"
    if parent.format == "pytorch":
        return "export"
    if row.precision != parent.precision or (row.quantization and not parent.quantization):
        return "quantization"
    return "engine"


def drop_by_stage(rows: list[Row], teacher_value: float, metric: str = ACCURACY) -> dict[str, dict[str, float] | None]:
    """For each measured row, the drop of `metric` in points per stage along its source chain (None if the chain
    breaks). `teacher_value` is the teacher's accuracy, or 1.0 for cosine to the teacher.

    A chain breaks when an artifact on it was not measured (skipped or failed): its step cannot be told apart.
    """
    by_name = {row.artifact: row for row in rows if row.ok}
    result: dict[str, dict[str, float] | None] = {}
    for row in rows:
        if not row.ok or row.role == "teacher":
            continue
        stages = dict.fromkeys(STAGES, 0.0)
        child, broken = row, False
        for _ in range(len(rows) + 1):  # a source cycle cannot loop forever
            source = child.source
            parent = by_name.get(source) if source else None
            if source and parent is None:
                broken = True
                break
            parent_value = teacher_value if parent is None else parent.value(METRIC_FIGURES[metric])
            stages[stage_of(child, parent)] += (parent_value - child.value(METRIC_FIGURES[metric])) * 100
            if parent is None or parent.role == "teacher":
                break
            child = parent
        result[row.artifact] = None if broken else stages
    return result
