"""Runtime registry: adding a runtime is one module and one line here."""

from __future__ import annotations

from edgekd.errors import EdgekdError
from edgekd.runtimes import onnxruntime_runtime, openvino_runtime, tensorrt_runtime
from edgekd.runtimes.base import Runner, Runtime

RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (onnxruntime_runtime.RUNTIME, openvino_runtime.RUNTIME, tensorrt_runtime.RUNTIME)
}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise EdgekdError(f"unknown runtime '{name}'; known: {', '.join(RUNTIMES)}") from None


def runtime_versions() -> dict[str, str | None]:
    """Installed version of each runtime, None where it is absent (recorded in every report)."""
    import torch  # here, not at import: measuring processes for ONNX artifacts need no torch

    versions: dict[str, str | None] = {"torch": torch.__version__}
    for name, runtime in RUNTIMES.items():
        versions[name] = None if runtime.unavailable_reason() else runtime.version()
    return versions


__all__ = ["RUNTIMES", "Runner", "Runtime", "get_runtime", "runtime_versions"]
