"""Artifacts: one deployable variant each (format, runtime, precision, path), and how to load one to run it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.runtimes import format_of, get_runtime
from edgekd.runtimes.base import Runner


@dataclass(frozen=True)
class Artifact:
    name: str  # unique within a run, e.g. "student-onnx-int8-static"
    role: str  # "teacher" or "student"
    path: str  # relative to the run directory
    format: str  # "pytorch" (safetensors), or a registered runtime's format: "onnx", "openvino-ir", "ort", ...
    runtime: str  # "pytorch", or the registered runtime that loads it: "onnxruntime", "openvino", ...
    precision: str  # "fp32", "int8"
    params: int  # parameters of the network it was made from (quantization changes bytes, not count)
    quantization: str | None = None  # None, "dynamic", "static"
    architecture: str | None = None  # for pytorch artifacts: the zoo name to rebuild the module
    source: str | None = None  # the artifact this one was derived from

    def files(self, run_dir: Path) -> list[Path]:
        """Every file the artifact consists of, as its format says (an OpenVINO IR is the .xml and its .bin)."""
        main = run_dir / self.path
        return [main, *(main.with_suffix(suffix) for suffix in format_of(self.format).side_suffixes)]

    def to_dict(self) -> dict:
        return asdict(self)


def load_runner(artifact: Artifact, run_dir: Path, threads: int, num_classes: int,
                factory: tuple[str, dict] | None = None) -> Runner:  # fmt: skip
    """`factory`: the recipe's (import path, kwargs) for a PyTorch artifact built by a user factory."""
    path = run_dir / artifact.path
    if artifact.format == "pytorch":
        # imported here: a measuring process for an ONNX or OpenVINO artifact never pays torch's start-up
        from edgekd.models import load_saved_model
        from edgekd.runtimes.pytorch_runtime import runner_for_module

        model = load_saved_model(path, artifact.architecture or "", num_classes, factory)  # .model.json says how
        return runner_for_module(model, threads)
    runtime = get_runtime(artifact.runtime)
    if runtime.load is None:
        raise EdgekdError(f"{artifact.name}: runtime '{artifact.runtime}' loads no artifacts itself")
    return runtime.load(path, threads)
