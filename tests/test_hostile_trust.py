"""Issue 16, code and trust: no code runs from data; bundles cannot be bypassed; stage outputs are verified
before reuse. Each test plays the attacker or the careless user on a real reduced run."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekd.bundle.files import extract_bundle, load_eval_samples, verify_bundle
from edgekd.errors import BundleError, CheckpointError, RecipeError
from edgekd.fileio import sha256_file, write_json_atomic
from edgekd.models import load_saved_model
from edgekd.models.user import import_factory
from edgekd.pipeline.stages import run_stage
from edgekd.recipe import load_recipe
from tests.conftest import QUICK_OVERRIDES, run_cli

# --- 1. factories come from the recipe only, and never name the standard library ---------------------------


@pytest.mark.parametrize("factory", ["os:system", "subprocess:run", "builtins:eval", "os.path:join", "shutil:rmtree"])
def test_a_stdlib_factory_is_refused_when_the_recipe_loads(factory, tmp_path):
    marker = tmp_path / "ran"
    for key in ("teacher.factory", "student.factory", "task.name"):
        with pytest.raises(RecipeError, match="standard library"):
            load_recipe(None, [f'{key}="{factory}"', f'teacher.factory_kwargs={{command="touch {marker}"}}'])
    assert not marker.exists()


def test_a_user_module_reexporting_a_stdlib_function_is_refused_before_the_call(tmp_path, monkeypatch):
    (tmp_path / "sneaky.py").write_text("from os import system\nimport subprocess as sp\nrun = sp.run\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("sneaky:system", "sneaky:run", "sneaky:sp.run"):
        with pytest.raises(RecipeError, match="standard-library or builtin"):
            import_factory(spec, "teacher.factory")


def test_malformed_import_paths_are_refused_without_importing(tmp_path):
    for spec in ("nocolon", "a:", ":b", "a b:c", "../x:y", "pkg:1bad"):
        with pytest.raises(RecipeError, match="must look like package.module:function"):
            import_factory(spec, "student.factory")


def _edit_sidecar(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_sidecar_never_supplies_a_factory(quick_run, tmp_path):
    for name in ("student.safetensors", "student.model.json"):
        shutil.copy(quick_run / name, tmp_path / name)
    marker = tmp_path / "ran"
    _edit_sidecar(tmp_path / "student.model.json", kind="factory", factory="mymodels:evil",
                  factory_kwargs={"command": f"touch {marker}"})  # fmt: skip
    with pytest.raises(CheckpointError, match="imports code only from a recipe"):
        load_saved_model(tmp_path / "student.safetensors", "digits-tiny", 10)
    with pytest.raises(CheckpointError, match="disagrees with the recipe"):
        load_saved_model(tmp_path / "student.safetensors", "digits-tiny", 10, ("", {}))
    with pytest.raises(CheckpointError, match="disagrees with the recipe"):  # same path, other kwargs
        load_saved_model(tmp_path / "student.safetensors", "digits-tiny", 10, ("mymodels:evil", {}))
    assert not marker.exists()


def test_an_edited_sidecar_in_a_run_directory_stops_the_next_run(quick_run, tmp_path, capsys):
    run_dir = tmp_path / "export" / "quick"
    shutil.copytree(quick_run, run_dir)
    marker = tmp_path / "ran"
    _edit_sidecar(run_dir / "student.model.json", kind="factory", factory="os:system",
                  factory_kwargs={"command": f"touch {marker}"})  # fmt: skip
    args = ["distill-and-export", "--output-dir", str(tmp_path / "export"), "--run-name", "quick"]
    code, _, err = run_cli(args + [a for o in QUICK_OVERRIDES for a in ("--set", o)], capsys)
    assert code == 2, err
    assert "student.model.json" in err and "disagrees with the recipe" in err and "Traceback" not in err
    assert not marker.exists()


# --- 3. stage outputs are verified by sha256 before reuse --------------------------------------------------


def test_a_stage_output_emptied_or_edited_since_is_made_again(tmp_path):
    calls = []

    def work():
        calls.append(1)
        (tmp_path / "out.bin").write_bytes(b"made by the stage")
        return {"n": len(calls)}

    assert run_stage(tmp_path, "s", "k", ["out.bin"], work) == ({"n": 1}, False)
    assert run_stage(tmp_path, "s", "k", ["out.bin"], work) == ({"n": 1}, True)
    (tmp_path / "out.bin").write_bytes(b"")  # a zero-byte output is never reused
    assert run_stage(tmp_path, "s", "k", ["out.bin"], work) == ({"n": 2}, False)
    (tmp_path / "out.bin").write_bytes(b"edited by someone else")  # nor one whose bytes changed
    assert run_stage(tmp_path, "s", "k", ["out.bin"], work) == ({"n": 3}, False)
    record = json.loads((tmp_path / "stages" / "s.json").read_text())
    assert record["sha256"] == {"out.bin": sha256_file(tmp_path / "out.bin")}
    (tmp_path / "stages" / "s.json").write_text("[1, 2]")  # a damaged record: the stage runs again
    assert run_stage(tmp_path, "s", "k", ["out.bin"], work) == ({"n": 4}, False)


# --- 2 and 4. a bundle uses only listed, checksummed, regular files inside it ------------------------------


@pytest.fixture
def bundle(quick_run, tmp_path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(quick_run / "bundle", target)
    return target


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _rechecksum(bundle: Path, manifest: dict, *names: str) -> None:
    """What an attacker does after editing a file: record its new checksum."""
    for name in names:
        manifest["files"][name] = {"sha256": sha256_file(bundle / name), "bytes": (bundle / name).stat().st_size}
    write_json_atomic(bundle / "manifest.json", manifest)


def test_an_artifact_path_outside_the_bundle_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle / "student.onnx", outside)
    original = _manifest(bundle)
    for path in (str(outside), "../outside.onnx"):
        manifest = json.loads(json.dumps(original))
        manifest["artifacts"][0]["path"] = path
        write_json_atomic(bundle / "manifest.json", manifest)
        with pytest.raises(BundleError, match="does not list it with a checksum"):
            verify_bundle(bundle)
        manifest["files"][path] = {"sha256": sha256_file(outside), "bytes": outside.stat().st_size}
        write_json_atomic(bundle / "manifest.json", manifest)
        with pytest.raises(BundleError, match="points outside the bundle"):
            verify_bundle(bundle)


def test_a_file_dropped_from_the_list_is_not_used_unverified(bundle):
    for name in ("student.int8-static.onnx", "data/eval.npz", "data/calibration.npz"):
        manifest = _manifest(bundle)
        del manifest["files"][name]
        write_json_atomic(bundle / "manifest.json", manifest)
        with pytest.raises(BundleError, match=f"uses '{name}' but does not list it"):
            verify_bundle(bundle)
        _rechecksum(bundle, manifest, name)


def test_a_symlinked_artifact_is_refused_even_with_the_right_checksum(bundle, tmp_path):
    shutil.move(bundle / "student.onnx", tmp_path / "real.onnx")
    (bundle / "student.onnx").symlink_to(tmp_path / "real.onnx")
    with pytest.raises(BundleError, match="symbolic link"):
        verify_bundle(bundle)
    (bundle / "student.onnx").unlink()
    shutil.move(tmp_path / "real.onnx", bundle / "student.onnx")
    shutil.move(bundle / "data", tmp_path / "data")
    (bundle / "data").symlink_to(tmp_path / "data")  # a linked directory on the way is refused too
    with pytest.raises(BundleError, match="symbolic link"):
        verify_bundle(bundle)


def test_the_teacher_accuracy_cannot_be_edited_in_the_manifest(bundle):
    manifest = verify_bundle(bundle)
    _, _, reference = load_eval_samples(bundle, manifest)
    manifest["teacher"]["accuracy"] = 0.1  # would show every row's drop as -80 points
    write_json_atomic(bundle / "manifest.json", manifest)
    with pytest.raises(BundleError, match="teacher.accuracy 0.1 is not the accuracy of the teacher logits"):
        load_eval_samples(bundle, verify_bundle(bundle))
    assert 0.5 < reference.accuracy <= 1


def test_eval_inputs_of_another_shape_are_named_expected_against_actual(bundle):
    manifest = _manifest(bundle)
    name = manifest["input"]["name"]
    with np.load(bundle / "data/eval.npz") as data:
        arrays = dict(data)
    arrays[name] = arrays[name].reshape(len(arrays[name]), -1)  # [n, 64] instead of [n, 1, 8, 8]
    np.savez(bundle / "data/eval.npz", **arrays)
    _rechecksum(bundle, manifest, "data/eval.npz")
    with pytest.raises(BundleError, match=r"input 'pixels' is \[360, 64\] float32, but the model expects "
                                          r"\['batch', 1, 8, 8\] float32"):  # fmt: skip
        load_eval_samples(bundle, verify_bundle(bundle))


def _point_initializer_outside(path: Path, location: str) -> None:
    model = onnx.load(str(path))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    tensor.external_data.add(key="location", value=location)
    onnx.save(model, str(path))


@pytest.mark.parametrize("location", ["../../secret.bin", "/etc/passwd", "unlisted.bin"])
def test_external_data_outside_the_bundle_is_refused_before_any_runtime_reads_it(bundle, location):
    (bundle / "unlisted.bin").write_bytes(b"\0" * 4096)
    _point_initializer_outside(bundle / "student.onnx", location)
    _rechecksum(bundle, _manifest(bundle), "student.onnx")
    with pytest.raises(BundleError, match=f"keeps its data in '{location}'"):
        verify_bundle(bundle)


def test_a_damaged_but_rechecksummed_model_is_a_failed_row_and_a_flipped_one_is_flagged(bundle, tmp_path, capsys):
    """A model no runtime can parse is that row's `failed` status with the reason; the other rows are measured.
    A bit flip in the weights that still parses is measured, and flagged: it no longer computes the student."""
    (bundle / "student.int8-dynamic.onnx").write_bytes(b"\x08\x07garbage" * 50)
    model = onnx.load(str(bundle / "student.onnx"))
    weights = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weights.raw_data = np.random.default_rng(0).standard_normal(len(weights.raw_data) // 4).astype(
        np.float32).tobytes()  # fmt: skip
    onnx.save(model, str(bundle / "student.onnx"))
    _rechecksum(bundle, _manifest(bundle), "student.int8-dynamic.onnx", "student.onnx")
    out = tmp_path / "out"
    code, _, err = run_cli(["profile", str(bundle), "-p", "host", "-o", str(out), "--json"], capsys)
    assert "Traceback" not in err
    assert code == 0, err
    rows = {r["artifact"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["student-onnx-int8-dynamic"]["status"] == "failed" and rows["student-onnx-int8-dynamic"]["reason"]
    assert rows["student-onnx-int8-static"]["status"] == "ok"
    flags = {f["code"] for f in rows["student-onnx-fp32"]["flags"]}
    assert "parity-collapse" in flags, rows["student-onnx-fp32"]
    assert "parity-collapse" not in {f["code"] for f in rows["student-onnx-int8-static"]["flags"]}


# --- 6. archives made by hand ------------------------------------------------------------------------------


def test_a_dot_slash_archive_extracts_and_verifies(bundle, tmp_path):
    archive = tmp_path / "b.tar.gz"
    subprocess.run(["tar", "czf", str(archive), "-C", str(bundle), "."], check=True)
    extracted = extract_bundle(archive, tmp_path / "out")
    assert extracted == tmp_path / "out"
    assert verify_bundle(extracted)["files"] == _manifest(bundle)["files"]


def test_a_truncated_archive_is_one_clear_error(bundle, tmp_path):
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname="bundle")
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="damaged or truncated"):
        extract_bundle(tmp_path / "cut.tar.gz", tmp_path / "out")


def test_the_unsafe_member_checks_still_hold_with_dot_slash_names(tmp_path):
    for name in ("./../x", "./bundle/../../x"):
        with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
            member = tarfile.TarInfo(name)
            member.size = 1
            tar.addfile(member, io.BytesIO(b"x"))
        with pytest.raises(BundleError, match="outside the bundle"):
            extract_bundle(tmp_path / "evil.tar.gz", tmp_path / "out")


def test_fifo_and_hard_link_members_are_refused_before_anything_is_written(tmp_path):
    for kind in (tarfile.FIFOTYPE, tarfile.LNKTYPE):
        member = tarfile.TarInfo("bundle/odd")
        member.type, member.linkname = kind, "bundle/manifest.json"
        with tarfile.open(tmp_path / "odd.tar.gz", "w:gz") as tar:
            tar.addfile(member)
        with pytest.raises(BundleError, match="plain files"):
            extract_bundle(tmp_path / "odd.tar.gz", tmp_path / "out")
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))
