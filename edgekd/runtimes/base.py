"""The one small interface every runtime implements: is it here, and load an artifact into a runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A runner maps one input batch to the model's first output, both as numpy arrays.
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TimedCall:
    """One batch bound to a runner for timing. `run()` runs it with the inputs set once and no output copy or
    result dict, so the timed call costs what the runtime costs; `runtime_ms()`, where the runtime times itself
    (OpenVINO's InferRequest.latency), is the runtime's own time of the last run.

    A runner offers this as an attribute `bind(batch) -> TimedCall`; one without it is timed through its plain
    call (`edgekd.measure.timing.bind_runner`)."""

    run: Callable[[], object]
    runtime_ms: Callable[[], float] | None = None


@dataclass(frozen=True)
class Runtime:
    name: str
    package: str  # the import name whose absence makes the runtime unavailable
    extra: str  # pip extra that installs it: pip install "edgekd[<extra>]"
    version: Callable[[], str]
    load: Callable[[Path, int], Runner]  # (artifact path, threads) -> runner
    # more than an import: e.g. TensorRT also needs a GPU. Returns None when usable, else why not.
    check: Callable[[], str | None] | None = None

    def unavailable_reason(self) -> str | None:
        """None when usable here, else a sentence that says how to fix it."""
        try:
            self.version()
        except ImportError:
            return f"{self.package} is not installed: pip install \"edgekd[{self.extra}]\""
        return self.check() if self.check else None
