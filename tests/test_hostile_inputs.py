"""Issue 16, tracebacks, wrong exits and leftovers: every bad value is refused before the first stage with one
line; a run with nothing measured exits non-zero; a full disk names the file; killed runs leave nothing
running and nothing behind for long."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgekd.errors import CheckpointError, RecipeError, StageError, WriteError
from edgekd.fileio import remove_stale_temp_dirs, remove_stale_temps, write_json_atomic, write_text_atomic
from edgekd.measure.rows import require_a_measured_row
from edgekd.models.checkpoint import load_checkpoint
from edgekd.models.user import read_state_dict
from edgekd.pipeline.identity import check_same_models
from edgekd.recipe import load_recipe
from edgekd.report.model import Row
from tests.conftest import run_cli

# --- 7. every value checked before the first stage ---------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("task.seed=-1", "'task.seed' must be between 0 and 4294967295"),
    ("measure.min_seconds=inf", "'measure.min_seconds' must be a finite number"),
    ("measure.min_seconds=nan", "'measure.min_seconds' must be >= 0"),
    ("distill.lr=inf", "'distill.lr' must be a finite number"),
    ("measure.throughput_batch_size=1000000000", "'measure.throughput_batch_size' must be <= 65536"),
    ("export.opset=11", "'export.opset' must be between 18 and"),
    ('task.input_name="labels"', "'task.input_name' cannot be 'labels'"),
    ('task.input_name="teacher_logits"', "'task.input_name' cannot be 'teacher_logits'"),
    ('task.input_name="../x"', "'task.input_name' must be a plain name"),
    ("distill.epochs=2.5", "'distill.epochs' must be an integer, got 2.5"),
    ("quantize.variants=3", "'quantize.variants' must be a list of strings, got 3"),
])  # fmt: skip
def test_bad_values_are_refused_when_the_recipe_loads(override, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe(None, [override])


def test_a_non_utf8_recipe_is_one_line(tmp_path, capsys):
    (tmp_path / "r.toml").write_bytes(b'name = "caf\xe9"\n')
    code, _, err = run_cli(["distill-and-export", str(tmp_path / "r.toml"), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and "is not UTF-8 text" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_profile_is_refused_before_training(tmp_path, capsys):
    started = time.perf_counter()
    code, _, err = run_cli(["distill-and-export", "-o", str(tmp_path / "out"), "-p", "jetson-orin-nanoo"], capsys)
    assert code == 2 and "no profile 'jetson-orin-nanoo'" in err and "did you mean" in err
    assert not (tmp_path / "out" / "digits").exists(), "nothing was started"
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("text, message", [
    ("budgets = 3\n", "'budgets' must be a table"),
    ("max_p50_ms = inf\n", "must be a finite number"),
    ("max_p50_msec = 3\n", "unknown budget 'max_p50_msec'"),
])  # fmt: skip
def test_a_budgets_file_of_the_wrong_shape_is_one_line(quick_run, tmp_path, capsys, text, message):
    (tmp_path / "b.toml").write_text(text)
    code, _, err = run_cli(["gate", str(quick_run), "--budgets", str(tmp_path / "b.toml")], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_non_utf8_budgets_file_is_one_line(quick_run, tmp_path, capsys):
    (tmp_path / "b.toml").write_bytes(b"max_p50_ms = 1 # \xff\n")
    code, _, err = run_cli(["gate", str(quick_run), "--budgets", str(tmp_path / "b.toml")], capsys)
    assert code == 2 and "not valid UTF-8 TOML" in err and "Traceback" not in err


# --- 9. the gate fails closed on budgets it does not know --------------------------------------------------


def test_the_gate_fails_closed_on_an_unknown_budget_in_the_reports_recipe(quick_run, tmp_path, capsys):
    report = json.loads((quick_run / "report.json").read_text())
    report["recipe"]["budgets"] = {"max_accuracy_drop": 50, "max_latency_budget": 0.0001}
    write_json_atomic(tmp_path / "report.json", report)
    code, _, err = run_cli(["gate", str(tmp_path / "report.json")], capsys)
    assert code == 2 and "'max_latency_budget'" in err and "does not know" in err


# --- 8. nothing measured is not a success ------------------------------------------------------------------


def test_no_student_row_measured_names_the_input_expected_against_actual():
    def row(name: str, role: str, status: str, reason: str) -> Row:
        return Row(artifact=name, role=role, status=status, reason=reason, path="", format="onnx",
                   runtime="onnxruntime", precision="fp32", params=0, target="host", threads=1)  # fmt: skip
    rows = [row("teacher", "teacher", "ok", ""), row("student", "student", "failed", "Got invalid dimensions"),
            row("student-onnx-fp32", "student", "skipped", "x")]  # fmt: skip
    spec = {"name": "pixels", "shape": ["batch", 1, 8, 8], "dtype": "float32"}
    with pytest.raises(StageError, match=r"student: Got invalid dimensions.*'pixels' is \['batch', 1, 8, 8\] "
                                         r"float32, the eval samples are \[5, 64\] float64"):  # fmt: skip
        require_a_measured_row(rows, spec, np.zeros((5, 64)))
    rows[2].status = "ok"
    require_a_measured_row(rows, spec, np.zeros((5, 64)))  # one measured row: fine


def test_a_bundle_with_no_runnable_model_exits_1_with_the_report_written(quick_run, tmp_path, capsys):
    import shutil

    from edgekd.fileio import sha256_file

    bundle = tmp_path / "bundle"
    shutil.copytree(quick_run / "bundle", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        path = bundle / artifact["path"]
        path.write_bytes(b"\x08\x07not a model" * 20)
        manifest["files"][artifact["path"]] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    write_json_atomic(bundle / "manifest.json", manifest)
    code, _, err = run_cli(["profile", str(bundle), "-p", "host", "-o", str(tmp_path / "out")], capsys)
    assert code == 1 and "no artifact could be measured" in err and "Traceback" not in err, err
    rows = json.loads((tmp_path / "out" / "report.json").read_text())["rows"]
    assert rows and all(r["status"] in ("failed", "skipped") for r in rows)
    assert any(r["status"] == "failed" and r["reason"] for r in rows)


# --- 5. a full disk names the file, keeps the old one, leaves no temp file ---------------------------------


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    write_json_atomic(target, {"old": True})
    monkeypatch.setattr(Path, "write_text", _disk_full)
    with pytest.raises(WriteError, match=rf"cannot write '{target}': the disk is full.*previous file.*intact"):
        write_json_atomic(target, {"new": True})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"], "no temp file left"


def test_a_full_disk_while_bundling_leaves_no_half_bundle(tmp_path, monkeypatch):
    import shutil

    from edgekd.bundle import files as bundle_module
    from edgekd.measure.rows import TeacherReference
    from edgekd.pipeline.rundirs import claim_dir

    run_dir = claim_dir(tmp_path / "run", "run")  # a bundle lives in a run directory edgekd made
    (run_dir / "student.onnx").write_bytes(b"model")
    old = run_dir / "bundle"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    reference = TeacherReference(np.zeros((3, 2), np.float32), 1.0)
    args = (old, {"student.onnx": run_dir / "student.onnx"}, (np.zeros((3, 4), np.float32), np.zeros(3, np.int64),
            reference), np.zeros((2, 4), np.float32), {"input": {"name": "x"}})  # fmt: skip
    monkeypatch.setattr(shutil, "copyfile", _disk_full)
    with pytest.raises(WriteError, match="the disk is full"):
        bundle_module.write_bundle(*args)
    monkeypatch.undo()
    assert not (run_dir / ".bundle.tmp").exists()
    assert (old / "manifest.json").read_text() == "{}", "the previous bundle is intact"
    bundle_module.write_bundle(*args)  # with room on the disk it is written
    assert "files" in json.loads((old / "manifest.json").read_text())


# --- 10. killed runs: workers die with their parent; temp leftovers go on the next run ---------------------

PARENT = """
import subprocess, sys, time
from edgekd.measure.worker import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_measurement_worker_dies_with_its_parent_even_on_kill_9():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        try:  # reaped by init; a zombie counts as gone
            if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                return
        except OSError:
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its parent")


def test_stale_temp_files_of_edgekds_own_making_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "stages").mkdir()
    stale = [tmp_path / ".student.k2x9_a1b.tmp.onnx", tmp_path / "stages" / ".export.abcdefgh.tmp.json"]
    kept = [tmp_path / "student.onnx", tmp_path / ".gitignore", tmp_path / "notes.tmp", tmp_path / ".x.tmp.onnx"]
    for path in stale + kept:
        path.write_text("x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept)


def test_measure_dirs_of_dead_runs_are_removed(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"edgekd-measure-{dead.pid}-abc").mkdir()
    (tmp_path / f"edgekd-measure-{os.getpid()}-def").mkdir()
    remove_stale_temp_dirs("edgekd-measure-")
    assert not (tmp_path / f"edgekd-measure-{dead.pid}-abc").exists()
    assert (tmp_path / f"edgekd-measure-{os.getpid()}-def").exists(), "a live run's directory is kept"


# --- 11. one run directory, one model ----------------------------------------------------------------------


def test_a_run_name_reused_for_other_models_is_refused_naming_the_difference(tmp_path, capsys):
    from edgekd.pipeline.rundirs import MARKER, claim_dir

    run_dir = claim_dir(tmp_path / "out" / "digits", "run")
    write_text_atomic(run_dir / "recipe.toml", load_recipe(None, ["distill.epochs=4"]).to_toml())
    check_same_models(run_dir, load_recipe(None, ["distill.epochs=5"]).to_dict())  # nothing finished: a retry
    write_text_atomic(run_dir / "train.jsonl", '{"label": "teacher", "epoch": 1}\n')  # training had begun
    code, _, err = run_cli(["distill-and-export", "-o", str(tmp_path / "out"), "--epochs", "5"], capsys)
    assert code == 2 and "distill.epochs is 4 there, 5 now" in err and "--fresh" in err
    assert sorted(p.name for p in run_dir.iterdir()) == [MARKER, "recipe.toml", "train.jsonl"], "nothing was changed"
    check_same_models(run_dir, load_recipe(None, ["distill.epochs=4", "measure.preset=quick"]).to_dict())


# --- 12. messages ------------------------------------------------------------------------------------------

LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n"


@pytest.mark.parametrize("name", ["teacher.pt", "teacher.safetensors"])
def test_a_git_lfs_pointer_is_named_with_the_fix(tmp_path, name):
    (tmp_path / name).write_bytes(LFS)
    with pytest.raises(CheckpointError, match="git-LFS pointer.*git lfs pull"):
        read_state_dict(tmp_path / name)
    if name.endswith(".safetensors"):
        with pytest.raises(CheckpointError, match="git-LFS pointer"):
            load_checkpoint(torch.nn.Linear(2, 2), tmp_path / name)


def test_an_empty_checkpoint_gives_a_reason(tmp_path):
    for name in ("w.pt", "w.safetensors"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
            read_state_dict(tmp_path / name)
    save_file({"w": torch.zeros(1)}, str(tmp_path / "ok.safetensors"))
    assert set(read_state_dict(tmp_path / "ok.safetensors")) == {"w"}


@pytest.mark.parametrize("label, names, not_named", [
    ("teacher", "teacher.lr", "distill."), ("student (KD)", "distill.temperature", "teacher.lr")])  # fmt: skip
def test_nan_advice_names_the_settings_of_that_training(label, names, not_named):
    from edgekd.distill.run import fit
    from edgekd.distill.trainer import TrainConfig
    from edgekd.recipe import LossSection

    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    x[3, 0] = np.nan  # a non-finite input: the loss is NaN at the first step
    y = np.arange(32) % 2
    with pytest.raises(StageError) as info:
        fit(torch.nn.Linear(4, 2), x, y, x, y, TrainConfig(1, 1e-3, 32, 0), [LossSection("cross-entropy")],
            label=label, distributed=False)  # fmt: skip
    assert names in str(info.value) and not_named not in str(info.value)


# --- 13. calibration samples carry no labels ---------------------------------------------------------------


def test_calibration_samples_hold_inputs_only(quick_run):
    for path in (quick_run / "data" / "calibration.npz", quick_run / "bundle" / "data" / "calibration.npz"):
        with np.load(path) as data:
            assert data.files == ["pixels"], path


def test_a_git_lfs_pointer_in_a_hugging_face_directory_is_named(tmp_path):
    from edgekd.models.hf import load_hf_encoder

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
                                                      "num_attention_heads": 2, "intermediate_size": 16}))  # fmt: skip
    (tmp_path / "model.safetensors").write_bytes(LFS)
    with pytest.raises(CheckpointError, match="model.safetensors' is a git-LFS pointer.*git lfs pull"):
        load_hf_encoder(tmp_path, "embedding", 0, 0)


@pytest.mark.openvino
def test_the_gate_fails_closed_on_a_metric_the_report_lacks(quick_run, capsys):
    """A classification run has no neighbour accuracy (an embedding figure): never a pass."""
    code, out, _ = run_cli(["gate", str(quick_run), "--min-neighbour-accuracy", "1", "--json"], capsys)
    checks = json.loads(out)["checks"]
    assert code != 0 and json.loads(out)["verdict"] == "inconclusive"
    assert checks and all(c["verdict"] == "inconclusive" and "not measured" in c["detail"] for c in checks)
