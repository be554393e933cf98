"""The one interface every runtime implements, and the typed values it is described by.

A `Runtime` owns everything about itself: whether it is here (an `Availability`, never a message to parse),
its rows of the engine table (`EngineSpec`), the step that builds them and where that happens, the artifact
formats it makes (with the files each consists of), how to load an artifact into a runner, and optional probes
(execution precision, an extra throughput mode, providers, device facts, device figures). The registry
(`edgekd.runtimes`) assembles the engine table, profile validation, `doctor` and the measuring worker from
these, so no other module branches on a runtime's name.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import install_hint

if TYPE_CHECKING:  # the profile type is only named here: targets.profiles imports the registry
    from edgekd.targets.profiles import Profile

# A runner maps one input batch (one array, or name -> array for a model with several inputs: see
# edgekd.samples) to the model's first output, as numpy arrays.
Runner = Callable[[np.ndarray | dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class TimedCall:
    """One batch bound to a runner for timing. `run()` runs it with the inputs set once and no output copy or
    result dict, so the timed call costs what the runtime costs; `runtime_ms()`, where the runtime times itself
    (OpenVINO's InferRequest.latency), is the runtime's own time of the last run.

    A runner offers this as an attribute `bind(batch) -> TimedCall`; one without it is timed through its plain
    call (`edgekd.measure.timing.bind_runner`)."""

    run: Callable[[], object]
    runtime_ms: Callable[[], float] | None = None


class Availability(enum.Enum):
    USABLE = "usable"  # builds and runs here
    BUILD_ONLY = "build-only"  # can build its artifacts here but not run them (TensorRT with only trtexec)
    ABSENT = "absent"  # neither


@dataclass(frozen=True)
class RuntimeStatus:
    """Whether a runtime is here, and where it is not fully, the sentence that says why and how to fix it."""

    availability: Availability
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.availability is Availability.USABLE

    @property
    def can_build(self) -> bool:
        return self.availability is not Availability.ABSENT

    @property
    def why_not(self) -> str | None:
        """None when usable, else the reason."""
        return None if self.usable else self.reason


USABLE = RuntimeStatus(Availability.USABLE)


@dataclass(frozen=True)
class ArtifactFormat:
    """What kind of file an artifact is, as the stages that handle files ask about it."""

    name: str
    # an ONNX graph: its MACs can be counted, ONNX external data belongs to it, and a device runs it from the
    # bundle as it is (nothing to build there)
    onnx_graph: bool = False
    in_bundle: bool = False  # travels in the portable bundle (devices run it, or the app ships it)
    side_suffixes: tuple[str, ...] = ()  # files beside the main one, same stem (an OpenVINO IR's .bin)
    # files every artifact of this format in a run shares, relative to the build directory (the operator config
    # an ONNX Runtime Mobile build needs): rewritten by each build, they travel with the artifacts
    shared_files: tuple[str, ...] = ()
    host_proxy: bool = False  # a device's model measured on this host as a labelled stand-in (ORT format)


@dataclass(frozen=True)
class EngineSpec:
    """One buildable artifact: which profile runtime and precision ask for it, and what it is built from."""

    runtime: str  # the profile's runtime name
    precision: str
    artifact: str
    path: str  # relative to the directory the engines are built in
    format: str
    measured_by: str  # the registry runtime that loads it
    source: str  # ONNX file it is built from (relative to the run or bundle directory)
    # One of several ways to build the same artifact, picked by a recipe key (OpenVINO int8: "nncf" or "qdq");
    # "" when there is only one. "nncf" specs calibrate on the run's (or bundle's) data/calibration.npz.
    method: str = ""

    @property
    def is_source(self) -> bool:
        """True for an ONNX file the export / quantize stages made: run as it is, nothing to build."""
        return self.path == self.source


@dataclass(frozen=True)
class BuildJob:
    """Everything a runtime's build step gets: where the ONNX sources are, where its artifact goes, the profile
    whose settings apply, and the model's input facts (`input_name` (one, or a list), `sample_shape`,
    `max_batch`, `sequence_axis`, `log_path`), which engines with fixed shape ranges need."""

    source_dir: Path
    out_dir: Path
    profile: Profile
    device: dict[str, Any] = field(default_factory=dict)

    def paths(self, spec: EngineSpec) -> tuple[Path, Path]:
        """(ONNX source, artifact target) of `spec`, the target's directory made."""
        target = self.out_dir / spec.path
        target.parent.mkdir(parents=True, exist_ok=True)
        return self.source_dir / spec.source, target


# (artifact path, eval inputs, the artifact's precision, threads, the precision the runtime reported for the
# latency runs or None, timing policy) -> one throughput entry, labelled with its mode
ThroughputMode = Callable[[Path, Any, str, int, str | None, Any], dict[str, Any]]
# (engine path, one input batch, warm-up runs, runs) -> row fields measured on the device itself
DeviceFigures = Callable[[Path, Any, int, int], dict[str, Any]]


@dataclass(frozen=True)
class Runtime:
    name: str  # the name profiles list it by
    package: str  # the import name whose absence makes the runtime unavailable
    extra: str  # pip extra that installs it: pip install "edgekd[<extra>]"
    version: Callable[[], str]
    load: Callable[[Path, int], Runner] | None = None  # (artifact path, threads) -> runner; None: loaded by another
    engines: tuple[EngineSpec, ...] = ()  # its rows of the engine table
    # builds one of its rows' artifacts; may return a record of what it did for the build summary (NNCF's accuracy
    # control), else None
    build: Callable[[EngineSpec, BuildJob], dict[str, Any] | None] | None = None
    built_on_device: bool = False  # artifacts tied to the device (GPU, runtime version): never built elsewhere
    formats: tuple[ArtifactFormat, ...] = ()  # the artifact formats it makes
    # replaces the import test: e.g. TensorRT also needs a GPU, and with only trtexec it can build but not run
    check: Callable[[], RuntimeStatus] | None = None
    off_switch: str = ""  # the recipe's `build.<key>` boolean that turns its builds off ("" = none)
    joins_host: bool = False  # the host profile lists it wherever it is usable (TensorRT with a GPU)
    needs_symmetric_int8: bool = False  # its int8 builds read int8 activations with zero point 0 only (TensorRT)
    # probes, each optional
    not_meaningful: Callable[[EngineSpec], str | None] | None = None  # why measuring a row here would mislead
    profile_problem: Callable[[Profile], tuple[str, str] | None] | None = None  # (key, why) a profile lacks
    execution_precision: Callable[[Path, int], str | None] | None = None  # what it computes an artifact in
    throughput_mode: ThroughputMode | None = None  # its own extra throughput mode, labelled in the row
    providers: Callable[[], dict[str, Any]] | None = None  # what `doctor` lists under providers
    device_facts: Callable[[], dict[str, Any]] | None = None  # what its artifacts are tied to, for the report
    device_figures: DeviceFigures | None = None  # extra figures `edgekd profile` measures on the device

    def __post_init__(self) -> None:
        strangers = [spec.artifact for spec in self.engines if spec.runtime != self.name]
        if strangers:  # a row is planned for the profiles that list its runtime: it must be this one
            raise ValueError(f"runtime '{self.name}': engine rows {strangers} name another runtime")

    def status(self) -> RuntimeStatus:
        """USABLE, or why not (a sentence that says how to fix it). A runtime with its own `check` decides it
        all there (TensorRT asks for a GPU before the package, and builds with trtexec alone)."""
        if self.check:
            return self.check()
        try:
            self.version()
        except ImportError:
            return RuntimeStatus(Availability.ABSENT, f"{self.package} is not installed: {install_hint(self.extra)}")
        return USABLE

    def unavailable_reason(self) -> str | None:
        """None when usable here, else a sentence that says how to fix it."""
        return self.status().why_not
