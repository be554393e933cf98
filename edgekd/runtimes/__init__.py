"""Runtime registry: adding a runtime is one module and one line here (or one `register(RUNTIME)` call).

Everything that lists runtimes is assembled from `RUNTIMES` when asked, never copied at import: the engine
table (`engine_specs`), the names profiles may list (`runtime_names`), the artifact formats (`format_of`),
`edgekd doctor` and the measuring worker. A runtime registered at run time (a test's, a notebook's) is unknown
to a fresh interpreter, so the worker measures its artifacts in-process (`known_to_new_processes`): no file
edgekd writes ever names code to import.
"""

from __future__ import annotations

from edgekd.errors import EdgekdError
from edgekd.runtimes import onnxruntime_runtime, openvino_runtime, ort_mobile_runtime, tensorrt_runtime
from edgekd.runtimes.base import ArtifactFormat, EngineSpec, Runner, Runtime, RuntimeStatus

RUNTIMES: dict[str, Runtime] = {}


def register(runtime: Runtime) -> Runtime:
    """Add `runtime` under its name (a second one of the same name replaces the first)."""
    RUNTIMES[runtime.name] = runtime
    return runtime


for _runtime in (onnxruntime_runtime.RUNTIME, openvino_runtime.RUNTIME, tensorrt_runtime.RUNTIME,
                 ort_mobile_runtime.RUNTIME):  # fmt: skip
    register(_runtime)
BUILT_IN = tuple(RUNTIMES.values())  # what every edgekd process registers on import


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise EdgekdError(f"unknown runtime '{name}'; known: {', '.join(RUNTIMES)}") from None


def runtime_names() -> tuple[str, ...]:
    """The runtimes a profile may list."""
    return tuple(RUNTIMES)


def engine_specs() -> tuple[EngineSpec, ...]:
    """The engine table: every registered runtime's rows, in registry order."""
    return tuple(spec for runtime in RUNTIMES.values() for spec in runtime.engines)


def format_of(name: str) -> ArtifactFormat:
    """The format called `name`; one no runtime makes (a PyTorch checkpoint, a report's unknown) has no traits."""
    formats = {fmt.name: fmt for runtime in RUNTIMES.values() for fmt in runtime.formats}
    return formats.get(name, ArtifactFormat(name))


def known_to_new_processes(name: str) -> bool:
    """False for a runtime registered after import: a fresh interpreter (the measuring worker) lacks it."""
    runtime = RUNTIMES.get(name)
    return runtime is None or runtime in BUILT_IN


def runtime_status(name: str) -> RuntimeStatus:
    return get_runtime(name).status()


def runtime_versions() -> dict[str, str | None]:
    """Installed version of each runtime that loads artifacts, None where it is absent (recorded in every
    report)."""
    import torch  # here, not at import: measuring processes for ONNX artifacts need no torch

    versions: dict[str, str | None] = {"torch": torch.__version__}
    for name, runtime in RUNTIMES.items():
        if runtime.load is not None:
            versions[name] = None if runtime.unavailable_reason() else runtime.version()
    return versions


__all__ = ["RUNTIMES", "Runner", "Runtime", "engine_specs", "format_of", "get_runtime", "known_to_new_processes",
           "register", "runtime_names", "runtime_status", "runtime_versions"]  # fmt: skip
