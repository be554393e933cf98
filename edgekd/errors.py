"""One exception family: the library raises these, the CLI turns them into one line and an exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def printable(text: str) -> str:
    """`text` as is, or escaped when it holds control characters, so a message naming it stays one line."""
    return text if text.isprintable() else repr(text)[1:-1]


class EdgekdError(Exception):
    """A problem the user can fix; the message says what and how. `exit_code` is what the CLI returns."""

    exit_code = 2


class RecipeError(EdgekdError):
    """A recipe or profile file is invalid (unknown key, wrong type, bad value)."""


class ReportError(EdgekdError):
    """A report file is missing, unreadable or does not match the schema."""


def install_hint(extra: str) -> str:
    """The one wording of how to install an optional part of edgekd."""
    return f'pip install "edgekd[{extra}]"'


class MissingDependencyError(EdgekdError):
    """An optional runtime is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(f"{purpose} needs the '{package}' package: {install_hint(extra)}")
        self.package = package
        self.extra = extra


class CheckpointError(EdgekdError):
    """A model checkpoint is missing, unsafe to load, or does not fit the model."""


class WriteError(EdgekdError):
    """A file could not be written (disk full, quota, read-only); the message names it, the old one is intact."""


class StageError(EdgekdError):
    """A pipeline stage failed in a way the user has to act on (the message names the stage)."""

    exit_code = 1


class CalibrationError(EdgekdError):
    """Calibration samples that cannot calibrate the model: none, or the wrong names, shapes or dtypes."""


class UnsafePathError(EdgekdError):
    """A run name or directory that edgekd will not create, write into or remove (outside its root, a symlink,
    or not made by edgekd)."""


class BundleError(EdgekdError):
    """A bundle is missing, altered, or unsafe to extract."""


class TrainingInterrupted(EdgekdError):
    """SIGINT/SIGTERM during training: the state was checkpointed; the message says how to resume."""

    exit_code = 130


# `edgekd gate` exit codes (the CLI's usage / bad-input code is EdgekdError.exit_code, 2)
EXIT_GATE_PASS = 0
EXIT_GATE_FAIL = 1
EXIT_GATE_INCONCLUSIVE = 3
