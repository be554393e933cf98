"""Measure a list of artifacts from disk into report rows: the measure stage of a run and of `edgekd profile`.

Works from files alone (artifacts, the eval split, optionally the teacher's outputs), so a device with only
a bundle can produce the same rows as the training machine. Each artifact is timed in its own process by
default (`edgekd.measure.worker`), the batch-1 latency rounds of all of them taken in turns
(`edgekd.measure.interleave`), so a drift of the machine's speed falls on every row alike; accuracy, fidelity,
the stage-by-stage drop and the row flags are computed here from the outputs the workers wrote.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import measure as m
from edgekd.build.artifacts import Artifact
from edgekd.errors import EdgekdError, StageError
from edgekd.fileio import remove_stale_temp_dirs
from edgekd.measure.graph import count_macs, files_on_disk
from edgekd.measure.interleave import MAX_LIVE_WORKERS, ORDER_RULE, measure_jobs
from edgekd.measure.quality import ACCURACY, TEACHER_COSINE, quality_collapse
from edgekd.measure.session import MeasureJob
from edgekd.report.model import GRAPH_COST, Fidelity, Parity, Row, Timing
from edgekd.runtimes import format_of
from edgekd.samples import Inputs, save_inputs

ISOLATION_MODES = ("subprocess", "in-process")
MEASURE_TEMP_PREFIX = "edgekd-measure-"  # + the pid of the run that owns the directory
STUDENT = "student"  # the fp32 PyTorch student's artifact: every other student row's parity reference


@dataclass(frozen=True)
class MeasureSettings:
    policy: m.TimingPolicy
    throughput_batch_size: int
    eval_batch_size: int
    threads: int
    target: str = "host"
    batch_sizes: tuple[int, ...] = ()  # throughput batch sizes (a profile's list); empty: throughput_batch_size
    # or "in-process" (debugging: one process, no per-artifact memory figure; rounds still taken in turns)
    isolation: str = "subprocess"
    preset: str = "custom"  # the timing preset the policy came from, recorded in the report
    openvino_throughput: bool = True  # also measure OpenVINO's THROUGHPUT mode (streams), labelled as such

    @classmethod
    def from_recipe(cls, measure: dict[str, Any], threads: int, target: str = "host",
                    throughput_batch_size: int | None = None) -> MeasureSettings:
        """Settings from a recipe's [measure] table (a dict, as a bundle's manifest carries it)."""
        throughput = throughput_batch_size or measure["throughput_batch_size"]
        return cls(
            policy=m.timing_policy(measure["preset"], measure["warmup_runs"], measure["min_runs"],
                                   measure["min_seconds"]),
            throughput_batch_size=throughput,
            eval_batch_size=measure["eval_batch_size"],
            threads=threads,
            target=target,
            batch_sizes=(1, throughput),
            isolation=measure["isolation"],
            preset=measure["preset"],
        )  # fmt: skip

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_MODES:
            raise EdgekdError(f"measure isolation '{self.isolation}' is unknown; use {' or '.join(ISOLATION_MODES)}")

    @property
    def throughput_batch_sizes(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(self.batch_sizes or (self.throughput_batch_size,)))

    def describe(self) -> dict[str, Any]:
        """How the rows were measured, for the report's `measurement` section."""
        return {"preset": self.preset, "policy": asdict(self.policy), "isolation": self.isolation,
                "threads": self.threads, "batch_sizes": list(self.throughput_batch_sizes),
                "eval_batch_size": self.eval_batch_size, "noisy_cv": m.NOISY_CV,
                "noisy_round_spread": m.NOISY_ROUND_SPREAD,
                "intervals": "95%: order statistics and a bootstrap over rounds",
                "interleaving": f"batch-1 latency rounds of a pass's artifacts (up to {MAX_LIVE_WORKERS} loaded at "
                                f"once) in turns, {ORDER_RULE}; each row's latency_ms records its turns",
                "percentiles": "nearest rank", "clock": "time.perf_counter_ns"}  # fmt: skip


@dataclass(frozen=True)
class TeacherReference:
    """The teacher's outputs on the eval split: what drop and agreement are computed against. `accuracy` is
    None for an embedding teacher, whose rows are judged by cosine to these outputs instead. `student_outputs`
    (the fp32 PyTorch student's, where known) is what each artifact's parity is measured against."""

    logits: np.ndarray
    accuracy: float | None
    student_outputs: np.ndarray | None = None

    @classmethod
    def of(cls, outputs: np.ndarray, labels: np.ndarray, metric: str,
           student_outputs: np.ndarray | None = None) -> TeacherReference:  # fmt: skip
        return cls(outputs, m.accuracy(outputs, labels) if metric == ACCURACY else None, student_outputs)


def measure_rows(
    artifacts: list[Artifact],
    run_dir: Path,
    inputs: Inputs,
    labels: np.ndarray,
    settings: MeasureSettings,
    num_classes: int,
    skipped: dict[str, str] | None = None,
    reference: TeacherReference | None = None,
    metric: str = ACCURACY,
    keep_outputs: dict[str, np.ndarray] | None = None,
    factories: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> list[Row]:
    """One row per artifact. Without `reference`, the teacher artifact (listed first) provides it. `metric`
    is the task's (accuracy, or cosine to the teacher for embedding encoders, whose rows carry no accuracy).
    `keep_outputs`, when given, receives each measured artifact's outputs on `inputs` by name. `factories`: the
    recipe's (import path, kwargs) per PyTorch artifact name, the only source of code to build one.

    The artifacts (up to `interleave.MAX_LIVE_WORKERS` at a time) are loaded together, one worker process each,
    so that their batch-1 latency rounds can be taken in turns: memory for all of them at once."""
    skipped = skipped or {}
    student_outputs = reference.student_outputs if reference else None
    rows = []
    remove_stale_temp_dirs(MEASURE_TEMP_PREFIX)
    with tempfile.TemporaryDirectory(prefix=f"{MEASURE_TEMP_PREFIX}{os.getpid()}-") as tmp:
        workdir = Path(tmp)
        save_inputs(workdir / "inputs.npz", inputs, "input")
        measured = [a for a in artifacts if a.name not in skipped]
        figures = _measure(measured, run_dir, workdir, settings, num_classes, factories or {})
        results = dict(zip((a.name for a in measured), figures, strict=True))
        for artifact in artifacts:
            if artifact.name in skipped:
                rows.append(Row.of(artifact, settings.target, settings.threads, status="skipped",
                                   reason=skipped[artifact.name], flags=[]))  # fmt: skip
                continue
            result = results[artifact.name]
            if result["status"] != "ok":
                rows.append(Row.of(artifact, settings.target, settings.threads, status="failed",
                                   reason=result["reason"], flags=[]))  # fmt: skip
                continue
            outputs = np.load(workdir / f"{artifact.name}.outputs.npy")
            if keep_outputs is not None:
                keep_outputs[artifact.name] = outputs
            if reference is None and artifact.role == "teacher":
                reference = TeacherReference.of(outputs, labels, metric)
            if student_outputs is None and artifact.name == STUDENT and artifact.format == "pytorch":
                student_outputs = outputs
            quality = _quality(outputs, labels, reference, metric)
            if student_outputs is not None and artifact.role == "student" and artifact.name != STUDENT:
                quality["student_parity"] = student_parity(outputs, student_outputs, metric)
            row = _measured_row(artifact, run_dir, settings, result, quality)
            collapse = parity_collapse(row.student_parity)
            if collapse:
                row.flag("parity-collapse", collapse)
            rows.append(row)
    if reference is None:
        teacher_row = next((r for r in rows if r.role == "teacher"), None)
        why = f": {teacher_row.reason}" if teacher_row else ""
        raise StageError(f"measure: the teacher could not be measured{why}; without it there is no accuracy drop")
    _add_stage_drops(rows, reference, metric)
    _add_comparison_flags(rows)
    _add_quality_flags(rows, metric)
    return rows


def require_a_measured_row(rows: list[Row], input_spec: dict[str, Any], inputs: np.ndarray) -> None:
    """A run where no student row was measured has nothing to report: a StageError (exit 1) with the first
    row's reason and the input the model expects against the samples it was given."""
    students = [r for r in rows if r.role != "teacher"]
    if not students or any(r.ok for r in students):
        return
    first = next((r for r in students if r.status == "failed"), students[0])
    raise StageError(f"measure: no artifact could be measured ({first.artifact}: {first.reason}); the model's "
                     f"input '{input_spec['name']}' is {list(input_spec['shape'])} {input_spec['dtype']}, the eval "
                     f"samples are {list(inputs.shape)} {inputs.dtype}. The report is written; fix the cause and run "
                     "again")  # fmt: skip


def student_parity(outputs: np.ndarray, student_outputs: np.ndarray, metric: str) -> Parity:
    """How far an artifact's outputs are from the fp32 PyTorch student's on the same samples: what export,
    quantization and the engine changed, apart from the distillation gap."""
    return Parity(float(np.max(np.abs(outputs.astype(np.float64) - student_outputs))),
                  m.mean_cosine(outputs, student_outputs),
                  m.top1_agreement(outputs, student_outputs) if metric == ACCURACY else None)  # fmt: skip


# Below this agreement with the fp32 PyTorch student (top-1, or mean cosine for embeddings) a row computes
# something else than the model it claims to be: INT8 keeps well above 0.95 on every task seen so far.
PARITY_COLLAPSE = 0.9


def parity_collapse(parity: Parity | None) -> str | None:
    """A sentence when an artifact's outputs no longer follow the fp32 student's (a damaged or wrongly built
    model that still runs), else None."""
    if parity is None:
        return None
    measure, value = parity.agreement
    if value >= PARITY_COLLAPSE:
        return None
    return (f"{measure} with the fp32 PyTorch student is {value:.3g} (< {PARITY_COLLAPSE}): this artifact does not "
            "compute what the student computes (damaged file or broken conversion); do not ship it")


def _quality(outputs: np.ndarray, labels: np.ndarray, reference: TeacherReference | None,
             metric: str) -> dict[str, Any]:  # fmt: skip
    """The row's quality figures (Row fields). Embedding rows have no accuracy: their measure is cosine to the
    teacher."""
    fidelity = None if reference is None else Fidelity(**m.fidelity(outputs, reference.logits, metric))
    if metric == TEACHER_COSINE:  # where the eval samples carry labels, their 1-NN accuracy
        return {"fidelity": fidelity, "neighbour_accuracy": m.neighbour_accuracy(outputs, labels)}
    acc = m.accuracy(outputs, labels)
    return {
        "accuracy": acc,
        "accuracy_drop": None if reference is None else round((reference.accuracy - acc) * 100, 4),
        "teacher_agreement": None if fidelity is None else fidelity.top1_agreement,
        "fidelity": fidelity,
    }


def _measure(artifacts: list[Artifact], run_dir: Path, workdir: Path, settings: MeasureSettings, num_classes: int,
             factories: dict[str, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:  # fmt: skip
    """The workers' results, one per artifact in order, their batch-1 rounds interleaved (measure.interleave)."""
    jobs = []
    for artifact in artifacts:
        factory = factories.get(artifact.name)
        jobs.append(MeasureJob(
            artifact=artifact.to_dict(), run_dir=str(Path(run_dir).resolve()),
            inputs_path=str(workdir / "inputs.npz"), outputs_path=str(workdir / f"{artifact.name}.outputs.npy"),
            threads=settings.threads, num_classes=num_classes, eval_batch_size=settings.eval_batch_size,
            policy=asdict(settings.policy), batch_sizes=list(settings.throughput_batch_sizes),
            openvino_throughput=settings.openvino_throughput,
            factory=None if factory is None else [factory[0], dict(factory[1])],
        ))  # fmt: skip
    # each worker's own time (loading, its rounds, its other figures), not the time it waits for the others
    runs = 1 + 2 * len(settings.throughput_batch_sizes)
    timeout_s = 600 + 30 * runs * settings.policy.min_seconds
    return measure_jobs(jobs, workdir, timeout_s, in_process=settings.isolation == "in-process")


def _measured_row(artifact: Artifact, run_dir: Path, settings: MeasureSettings, result: dict[str, Any],
                  quality: dict[str, Any]) -> Row:  # fmt: skip
    """The ok row of a measured artifact: the worker's `result`, the `quality` figures, and its row flags."""
    sync = [t for t in result["throughput"] if t["mode"] == "sync"]
    largest = max(sync, key=lambda t: t["batch_size"])
    real = result.get("latency_real_lengths_ms")  # token models: each eval text at its own length
    row = Row.of(
        artifact, settings.target, settings.threads,
        size_bytes=sum(f.stat().st_size for f in files_on_disk(artifact.files(run_dir), artifact.format)),
        **quality,
        latency_ms=Timing.from_dict(result["latency_ms"]),
        p50_ms_real_lengths=None if real is None else real["p50"],
        latency_real_lengths_ms=real,
        throughput_per_s=largest["per_s"], batch_size=largest["batch_size"], throughput=result["throughput"],
        memory=result["memory"], isolation=result["isolation"], load_seconds=result["load_seconds"], flags=[],
        execution_precision=result["execution_precision"],  # only where the runtime says what it computes in
    )  # fmt: skip
    if format_of(artifact.format).onnx_graph:  # MACs are counted on ONNX graphs; engines take their source's
        row.extend(**count_macs(run_dir / artifact.path).to_dict(), flops_counted_from=artifact.name)
    if row.latency_ms.noisy:
        row.flag("noisy", row.latency_ms.noisy_message())
    mismatch = precision_mismatch(artifact.precision, row.execution_precision)
    if mismatch:
        row.flag("precision-mismatch", mismatch)
    return row


# What each requested precision may execute as; a runtime that silently runs fp32 in bf16 breaks the promise.
_ACCEPTED_EXECUTION = {"fp32": {"f32", "fp32", "float32"}, "fp16": {"f16", "fp16", "float16"}}


def precision_mismatch(requested: str, executed: str | None) -> str | None:
    """A sentence when the runtime reports executing in another precision than the one asked for, else None.

    INT8 artifacts are not checked: their float parts may legitimately run in another precision.
    """
    if executed is None or requested not in _ACCEPTED_EXECUTION:
        return None
    if executed.lower() in _ACCEPTED_EXECUTION[requested]:
        return None
    return f"asked for {requested}, the runtime executes in {executed}: the figures are not {requested} figures"


def _add_stage_drops(rows: list[Row], reference: TeacherReference, metric: str) -> None:
    drops = m.drop_by_stage(rows, 1.0 if metric == TEACHER_COSINE else reference.accuracy, metric)
    for row in rows:
        if row.ok:
            row.drop_by_stage = drops.get(row.artifact)  # None for the teacher and broken chains


def _add_quality_flags(rows: list[Row], metric: str) -> None:
    """`quality-collapse` on every row whose fidelity to the fp32 student is below the documented threshold."""
    for row in rows:
        collapse = quality_collapse(row.student_parity, metric) if row.student_parity else None
        if collapse:
            row.flag("quality-collapse", collapse)


def _add_comparison_flags(rows: list[Row]) -> None:
    """Flags that need two rows: an INT8 artifact no faster than its fp32 source on the same target; FLOPs for
    engine rows taken from the ONNX graph they were built from."""
    by_key = {(row.artifact, row.target): row for row in rows if row.ok}
    for row in by_key.values():
        source = by_key.get((row.source, row.target))
        if source is None:
            continue
        if row.macs is None and source.macs is not None:
            row.extend(**{k: getattr(source, k) for k in GRAPH_COST})
        if row.precision == "int8" and source.precision == "fp32":
            ratio = row.latency_ms.p50 / source.latency_ms.p50
            if ratio >= 1.0:
                message = (f"p50 is {ratio:.2f}x that of its fp32 source '{source.artifact}' on "
                           f"{row.target}: INT8 does not pay off here")  # fmt: skip
                row.flag("int8-not-faster", message)
