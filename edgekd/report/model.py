"""A report row and the report document as types: what the measure stage, the build plan and `edgekd profile`
produce, and the one place that says how each is written as JSON (`to_json`, checked against the schema).

A row's JSON is flat: its fields in the order below, each written when it holds a value. A few are written as
null rather than left out: the artifact's `quantization`, `architecture` and `source` on every row, and on a
measured row (one with timing) the quality figures a task may lack (`accuracy` of an embedding row) and
`drop_by_stage` (the teacher's, or a broken chain's). Readers of report.json files read the JSON (gate,
compare, the renderers): they read a file, not these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from edgekd.measure.timing import LatencyStats
from edgekd.report.figures import Figure
from edgekd.report.schema import SCHEMA_VERSION, validate_report
from edgekd.version import __version__

if TYPE_CHECKING:
    from edgekd.build.artifacts import Artifact

Timing = LatencyStats  # latency statistics in ms, as the timing loop summarised them (schema: $defs/latency)

ALWAYS = {"null": "always"}  # written as null when unset
MEASURED = {"null": "measured"}  # written as null when unset on a measured row
GRAPH_COST = ("macs", "flops", "counted_nodes", "uncounted_nodes", "flops_counted_from")


@dataclass(frozen=True)
class Flag:
    """Something a reader must know about a row's figures (`noisy`, `int8-not-faster`, `quality-collapse`...)."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class _Closeness:
    """How closely outputs follow a reference's: written as the fields in `ORDER` that have a value."""

    ORDER: ClassVar[tuple[str, ...]]

    def to_json(self) -> dict[str, float]:
        return _present({name: getattr(self, name) for name in self.ORDER})


@dataclass(frozen=True)
class Fidelity(_Closeness):
    """Outputs against the teacher's (`fidelity`). Embeddings have no classes: only the cosine."""

    ORDER = ("top1_agreement", "mean_kl", "mean_cosine")
    mean_cosine: float
    top1_agreement: float | None = None
    mean_kl: float | None = None


@dataclass(frozen=True)
class Parity(_Closeness):
    """An artifact's outputs against the fp32 PyTorch student's on the same samples (`student_parity`)."""

    ORDER = ("max_abs_diff", "mean_cosine", "top1_agreement")
    max_abs_diff: float
    mean_cosine: float
    top1_agreement: float | None = None

    @property
    def agreement(self) -> tuple[str, float]:
        """What says whether the artifact still follows the student: top-1 agreement, else (embeddings) cosine."""
        if self.top1_agreement is not None:
            return "top-1 agreement", self.top1_agreement
        return "mean cosine", self.mean_cosine


@dataclass(frozen=True)
class AccuracyControl:
    """What NNCF's accuracy control did to an OpenVINO int8 IR under the quantization budget (`accuracy_control`,
    edgekd.quantize.nncf_accuracy): the ops it reverted to float and the drops, in points against the fp32 ONNX
    student on validation, of the plain NNCF model and of the result, both measured by edgekd."""

    method: str
    max_drop: float
    max_drop_source: str  # "quantize.max_drop" or the budget it came from, "budgets.<name>"
    met: bool
    drop_points: float
    plain_drop_points: float
    quantized_ops: int  # ops the plain NNCF model runs in int8
    reverted: tuple[dict[str, str], ...]  # {"name", "op_type"} of each op reverted to float
    max_iterations: int
    judged_on: str
    seconds: float

    @classmethod
    def of(cls, record: dict[str, Any]) -> AccuracyControl:
        return cls(**{**record, "reverted": tuple(record["reverted"])})

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(kw_only=True)
class Row:
    """One artifact on one target: ok (measured), skipped (with the reason and what to run instead) or failed."""

    artifact: str
    role: str
    path: str
    format: str
    runtime: str
    precision: str
    params: int
    quantization: str | None = field(default=None, metadata=ALWAYS)
    architecture: str | None = field(default=None, metadata=ALWAYS)
    source: str | None = field(default=None, metadata=ALWAYS)
    target: str
    threads: int
    status: str = "ok"
    reason: str = ""
    size_bytes: int | None = None
    accuracy: float | None = field(default=None, metadata=MEASURED)
    accuracy_drop: float | None = field(default=None, metadata=MEASURED)
    teacher_agreement: float | None = field(default=None, metadata=MEASURED)
    fidelity: Fidelity | None = field(default=None, metadata=MEASURED)
    neighbour_accuracy: float | None = None  # embedding rows with labelled eval samples
    student_parity: Parity | None = None
    latency_ms: Timing | None = None  # batch 1
    p50_ms_real_lengths: float | None = None  # token models: each eval text at its own length
    latency_real_lengths_ms: dict[str, Any] | None = None  # those statistics and the lengths (schema: latency)
    throughput_per_s: float | None = None
    batch_size: int | None = None
    throughput: list[dict[str, Any]] | None = None  # per batch size and mode, as the worker measured it
    memory: dict[str, Any] | None = None
    isolation: str | None = None
    load_seconds: float | None = None
    flags: list[Flag] | None = None  # None: a row of a target measured elsewhere, which carries no flag list
    execution_precision: str | None = None
    macs: int | None = None
    flops: int | None = None
    counted_nodes: int | None = None
    uncounted_nodes: int | None = None
    flops_counted_from: str | None = None
    drop_by_stage: dict[str, float] | None = field(default=None, metadata=MEASURED)
    proxy: str | None = None  # measured on a stand-in (a mobile model on the host): what stood in for what
    mobile: dict[str, Any] | None = None
    build: dict[str, Any] | None = None  # an engine's build record
    accuracy_control: AccuracyControl | None = None  # an OpenVINO int8 IR made under the quantization budget
    gpu_compute_ms: Timing | None = None

    @classmethod
    def of(cls, artifact: Artifact, target: str, threads: int, **figures: Any) -> Row:
        """The row of `artifact` on `target`: its identity from the artifact, the rest from `figures`."""
        identity = artifact.to_dict()
        return cls(artifact=identity.pop("name"), **identity, target=target, threads=threads, **figures)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def measured(self) -> bool:
        """Timed (ok, or failed after measuring, as a row whose parity check failed)."""
        return self.latency_ms is not None

    def fail(self, reason: str) -> None:
        """Mark the row failed; its figures stay, so the reader sees what was measured."""
        self.status, self.reason = "failed", reason

    def flag(self, code: str, message: str) -> None:
        self.flags = [*(self.flags or []), Flag(code, message)]

    def flagged(self, code: str) -> bool:
        return any(f.code == code for f in self.flags or [])

    def extend(self, **figures: Any) -> None:
        """Figures a runtime or target adds to its rows (proxy and mobile settings, a build record, GPU time)."""
        unknown = set(figures) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"a row has no field {', '.join(sorted(unknown))}")
        for name, value in figures.items():
            setattr(self, name, value)

    def value(self, figure: Figure) -> float | None:
        """A figure of the table, read as a report reader reads it from this row's JSON."""
        return figure.value(self.to_json())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            null = f.metadata.get("null")
            if value is not None or null == "always" or (null == "measured" and self.measured):
                out[f.name] = _plain(value)
        return out


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """Where and how a report's rows were made: the run on the training machine, or a device (`profile`)."""

    name: str
    threads: int
    host: dict[str, Any]  # this machine's facts (a device adds what its engines are tied to)
    runtime_versions: dict[str, str | None]  # every registered runtime's version (None: not installed)
    recipe_hash: str
    git_sha: str | None
    profile: str | None = None  # a device report: its profile and the bundle it measured
    bundle: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    edgekd_version: str = __version__

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at, "edgekd_version": self.edgekd_version,
                "runtime_versions": self.runtime_versions, "host": self.host, "threads": self.threads,
                "recipe_hash": self.recipe_hash, "git_sha": self.git_sha,
                **_present({"profile": self.profile, "bundle": self.bundle})}  # fmt: skip


@dataclass(kw_only=True)
class Report:
    """The document before its verdicts and recommendations (`document.publish_report` adds them)."""

    run: RunInfo
    task: dict[str, Any]
    teacher: dict[str, Any]
    student: dict[str, Any]
    stages: dict[str, Any]
    recipe: dict[str, Any]
    rows: list[Row]
    measurement: dict[str, Any] | None = None  # how the rows were measured (a device report has none)
    estimates: list[dict[str, Any]] = field(default_factory=list)  # roofline bounds: never rows

    def to_json(self) -> dict[str, Any]:
        document = {"schema_version": SCHEMA_VERSION, "run": self.run.to_json(), "task": self.task,
                    "teacher": self.teacher, "student": self.student, "stages": self.stages,
                    **_present({"measurement": self.measurement}), "recipe": self.recipe,
                    "rows": [row.to_json() for row in self.rows], "estimates": self.estimates}  # fmt: skip
        validate_report(document, "the new report")
        return document


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _plain(value: Any) -> Any:
    """A field's JSON value: typed parts by their own `to_json` (timing statistics by `to_dict`)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, LatencyStats):
        return value.to_dict()
    return value.to_json() if hasattr(value, "to_json") else value
