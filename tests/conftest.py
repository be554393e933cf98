"""Shared fixtures: a reduced digits run made once per session, and the CLI called as a user calls it; and
tests marked `openvino` skip, saying what to install, where the openvino package is not installed."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# A reduced recipe: few epochs and short timing, so the end-to-end run takes seconds, not minutes.
QUICK_OVERRIDES = [
    "teacher.epochs=4",
    "distill.epochs=4",
    "measure.preset=quick",  # short timing: tests check behaviour, never wall-clock figures
    "measure.throughput_batch_size=16",
    "measure.eval_batch_size=7",  # not 1, so the test proves the batch size is honoured
    "quantize.calibration_samples=64",
]


OPENVINO_MISSING = 'openvino is not installed: pip install "edgekd[openvino]"'


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that needs OpenVINO says so with `@pytest.mark.openvino` (or `pytestmark`); without the package it
    skips with the install line instead of failing on a row that could not be built."""
    if importlib.util.find_spec("openvino") is not None:
        return
    for item in items:
        if item.get_closest_marker("openvino") is not None:
            item.add_marker(pytest.mark.skip(reason=OPENVINO_MISSING))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the teacher cache of the tests away from the user's ~/.cache/edgekd."""
    os.environ["EDGEKD_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgekd-cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_stray_files_in_cwd():
    """edgekd writes only where it is told: after the whole session the working directory holds no new files
    (ONNX Runtime's shape inference once left `sym_shape_infer_temp.onnx` and its data files there)."""
    before = set(os.listdir("."))
    yield
    stray = sorted(set(os.listdir(".")) - before - {".pytest_cache", ".hypothesis", "__pycache__"})
    assert not stray, f"the test session left files in the working directory {os.getcwd()}: {stray}"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `edgekd ARGS` in-process through the real entry point; return (exit code, stdout, stderr)."""
    from edgekd.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def reduced_run(output_dir: Path, run_name: str, extra_args: list[str] = ()) -> Path:
    """`edgekd distill-and-export` with the reduced recipe through the CLI; returns the run directory."""
    from edgekd.cli import main

    args = ["distill-and-export", "--output-dir", str(output_dir), "--run-name", run_name, *extra_args]
    for override in QUICK_OVERRIDES:
        args += ["--set", override]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"distill-and-export exited {exc.code}"
    return output_dir / run_name


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One reduced end-to-end run through the CLI, as the README runs it: from a working directory into the
    relative `export/`; returns its run directory (absolute)."""
    work = tmp_path_factory.mktemp("work")
    previous = Path.cwd()
    os.chdir(work)
    try:
        reduced_run(Path("export"), "quick")
    finally:
        os.chdir(previous)
    return work / "export" / "quick"
