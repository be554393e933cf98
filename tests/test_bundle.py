"""The portable bundle and `edgekd profile`: a bundle made here profiles elsewhere with no run directory and
gives the host report's accuracy; altered files and unsafe archive members are refused; estimates, proxies
and device-only rows are labelled and kept apart from measurements."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import jsonschema
import pytest

from edgekd.bundle.files import extract_bundle, verify_bundle
from edgekd.errors import BundleError
from edgekd.report.document import load_report
from edgekd.report.schema import report_schema
from tests.conftest import reduced_run, run_cli

TARGETS = ["host", "android-arm64", "jetson-orin-nano-8gb"]
COMPARED = ("accuracy", "accuracy_drop", "teacher_agreement", "student_parity")


@pytest.fixture(scope="module")
def targets_run(tmp_path_factory) -> Path:
    """One reduced run for three targets, with the bundle archived."""
    targets = [arg for target in TARGETS for arg in ("-p", target)]
    return reduced_run(tmp_path_factory.mktemp("export-targets"), "targets", ["--bundle-archive", *targets])


def _rows(report, target):
    return {row["artifact"]: row for row in report["rows"] if row["target"] == target}


def test_manifest_lists_every_file_with_checksums_and_the_teacher_reference(targets_run):
    bundle = targets_run / "bundle"
    manifest = verify_bundle(bundle)
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert {"student.onnx", "student.int8-static.onnx", "data/eval.npz", "data/calibration.npz",
            "mobile/student.ort", "mobile/required_operators.config", "recipe.toml"} <= on_disk  # fmt: skip
    assert not any(name.endswith(".safetensors") for name in on_disk), "the teacher does not travel"
    report = load_report(targets_run)
    assert manifest["teacher"]["accuracy"] == _rows(report, "host")["teacher"]["accuracy"]
    assert manifest["input"] == report["task"]["input"] and manifest["recipe"] == report["recipe"]
    assert manifest["recipe_hash"] == report["run"]["recipe_hash"]


@pytest.mark.openvino
def test_bundle_profiles_elsewhere_with_the_run_deleted_and_matches_the_host_report(targets_run, tmp_path, capsys):
    run_copy = tmp_path / "run"
    shutil.copytree(targets_run, run_copy)
    device = tmp_path / "device"
    device.mkdir()
    shutil.copy(run_copy / "bundle.tar.gz", device / "bundle.tar.gz")
    shutil.rmtree(run_copy)  # nothing of the run directory is left to lean on
    code, out, err = run_cli(["profile", str(device / "bundle.tar.gz"), "-p", "host", "--json"], capsys)
    assert code == 0, err
    device_report = json.loads(out)
    host_rows = _rows(load_report(targets_run), "host")
    device_rows = _rows(device_report, "host")
    assert {"student-onnx-fp32", "student-onnx-int8-dynamic", "student-onnx-int8-static",
            "student-openvino-fp32", "student-openvino-int8"} <= set(device_rows)  # fmt: skip
    for name, row in device_rows.items():
        if name == "student-onnx-fp16" and "x86" in row["reason"]:
            continue  # shipped for the Jetson target; ORT's CPU provider on x86 would compute it in fp32
        assert row["status"] == "ok", (name, row["reason"])
        for field in COMPARED:
            assert row[field] == host_rows[name][field], (name, field)
    assert (device / "profile-host" / "report.json").is_file()
    assert str(device) in device_report["run"]["bundle"]


def test_a_flipped_byte_is_refused(targets_run, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(targets_run / "bundle", bundle)
    data = bytearray((bundle / "student.int8-static.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "student.int8-static.onnx").write_bytes(bytes(data))
    code, _, err = run_cli(["profile", str(bundle), "-p", "host", "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "student.int8-static.onnx" in err and "checksum" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "report.json").exists()


def _archive(path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "device"])
def test_unsafe_archive_members_are_refused(tmp_path, kind):
    member = tarfile.TarInfo({"dotdot": "../x", "absolute": "/tmp/x", "symlink": "bundle/link",
                              "device": "bundle/dev"}[kind])  # fmt: skip
    member.size = 1
    if kind == "symlink":
        member.type, member.linkname, member.size = tarfile.SYMTYPE, "/etc/passwd", 0
    if kind == "device":
        member.type, member.size = tarfile.CHRTYPE, 0
    archive = _archive(tmp_path / "evil.tar.gz", member)
    with pytest.raises(BundleError, match="refusing|plain files"):
        extract_bundle(archive, tmp_path / "out" / "in")
    assert not (tmp_path / "out" / "x").exists() and not (tmp_path / "x").exists()
    assert not any((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


def test_estimates_are_labelled_and_never_mixed_with_rows(targets_run):
    report = load_report(targets_run)
    estimates = report["estimates"]
    assert {e["target"] for e in estimates} == {"android-arm64", "jetson-orin-nano-8gb"}
    for estimate in estimates:
        assert estimate["estimate"] is True and "not a measurement" in estimate["basis"]
        assert estimate["latency_ms_lower_bound"] > 0 and estimate["flops"] > 0
        assert "latency_ms" not in estimate and "accuracy" not in estimate and "status" not in estimate
    for row in report["rows"]:
        assert "estimate" not in row and "latency_ms_lower_bound" not in row
    # the schema itself refuses an estimate dressed as a measurement
    dressed = {**estimates[0], "latency_ms": {"p50": 1, "p90": 1, "p99": 1, "mean": 1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**report, "estimates": [dressed]}, report_schema())


def test_device_only_rows_are_skipped_with_the_command_and_mobile_rows_are_labelled_proxies(targets_run):
    report = load_report(targets_run)
    jetson = _rows(report, "jetson-orin-nano-8gb")
    assert {"student-tensorrt-fp16", "student-tensorrt-int8"} <= set(jetson)
    for row in jetson.values():
        assert row["status"] == "skipped" and "edgekd profile" in row["reason"] and "-p jetson-orin-nano-8gb" in \
            row["reason"]  # fmt: skip
    mobile = _rows(report, "android-arm64")
    assert set(mobile) == {"student-ort-fp32", "student-ort-int8"}
    host = _rows(report, "host")
    for name, row in mobile.items():
        assert row["status"] == "ok" and row["format"] == "ort" and (targets_run / row["path"]).is_file()
        assert "stand-in for android-arm64" in row["proxy"] and "NNAPI" in row["mobile"]["execution_providers"]
        assert "proxy" not in host.get(name, {})
    # the ORT-format model computes what its ONNX source computes
    assert mobile["student-ort-fp32"]["accuracy"] == host["student-onnx-fp32"]["accuracy"]
    operators = (targets_run / "mobile" / "required_operators.config").read_text()
    assert "ai.onnx;" in operators and "Conv" in operators or "QLinearConv" in operators


def test_merge_replaces_the_targets_rows_and_estimates(targets_run, tmp_path, capsys):
    merged_dir = tmp_path / "run"
    shutil.copytree(targets_run, merged_dir)
    args = ["profile", str(merged_dir / "bundle"), "-p", "android-arm64", "-o", str(tmp_path / "dev"),
            "--merge-into", str(merged_dir / "report.json")]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    merged = load_report(merged_dir / "report.json")
    android = [r for r in merged["rows"] if r["target"] == "android-arm64"]
    assert len(android) == len({r["artifact"] for r in android}) == 2, "replaced, not duplicated"
    assert not [e for e in merged["estimates"] if e["target"] == "android-arm64"]
    assert [e for e in merged["estimates"] if e["target"] == "jetson-orin-nano-8gb"]
    assert merged["devices"]["android-arm64"]["host"]["cores"] >= 1
    table_rows = [line for line in (merged_dir / "report.md").read_text().splitlines()
                  if line.startswith("| student-ort-fp32 | android-arm64 | onnxruntime |")]  # fmt: skip
    assert len(table_rows) == 1, "the re-rendered report lists the merged row once"


def test_merge_into_another_runs_report_is_refused(targets_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(targets_run, other)
    report = json.loads((other / "report.json").read_text())
    report["run"]["recipe_hash"] = "0" * 64
    (other / "report.json").write_text(json.dumps(report))
    args = ["profile", str(other / "bundle"), "-p", "host", "-o", str(tmp_path / "dev"),
            "--merge-into", str(other / "report.json")]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "another run" in err


def test_profiling_as_another_device_is_refused(targets_run, tmp_path, capsys):
    """Measuring this machine under a Jetson's name would put false numbers in the report."""
    from edgekd.targets.profiles import device_mismatch_reason, load_profile

    if device_mismatch_reason(load_profile("jetson-orin-nano-8gb")) is None:
        pytest.skip("this machine is a Jetson")
    args = ["profile", str(targets_run / "bundle"), "-p", "jetson-orin-nano-8gb", "-o", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "describes another device" in err and "not a Jetson" in err
    assert not (tmp_path / "o" / "report.json").exists()


def test_fp16_onnx_travels_for_targets_that_run_it(targets_run):
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edgekd.tasks.base import load_eval_split

    manifest = verify_bundle(targets_run / "bundle")
    assert "student.fp16.onnx" in manifest["files"]  # the Jetson profile runs ONNX Runtime at fp16
    fp16 = onnx.load(str(targets_run / "bundle" / "student.fp16.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)
    inputs, _ = load_eval_split(targets_run / "data" / "test.npz", "pixels")

    def run(name):
        return ort.InferenceSession(str(targets_run / name), providers=["CPUExecutionProvider"]).run(
            None, {"pixels": inputs})[0]  # fmt: skip

    full, half = run("student.onnx"), run("student.fp16.onnx")
    assert np.abs(full - half).max() < 0.05 * max(1.0, np.abs(full).max())
    assert (full.argmax(1) == half.argmax(1)).mean() >= 0.99


def test_a_tensorrt_target_gets_static_int8_in_the_form_tensorrt_reads(targets_run, tmp_path):
    """With a Jetson among the targets, static INT8 is quantized with int8 activations at zero point 0 (quantize.
    activations = "auto"), so the bundle's QDQ model becomes a TensorRT input without re-scaling anything."""
    from edgekd.runtimes.tensorrt_onnx import to_tensorrt_qdq
    from edgekd.runtimes.tensorrt_runtime import qdq_problem

    report = load_report(targets_run)
    assert report["stages"]["quantize"]["activations"] == "int8-symmetric"
    shipped = targets_run / "bundle" / "student.int8-static.onnx"
    to_tensorrt_qdq(shipped, tmp_path / "student.int8.onnx")
    assert qdq_problem(tmp_path / "student.int8.onnx") is None
    host = _rows(report, "host")
    assert host["student-onnx-int8-static"]["drop_by_stage"]["quantization"] <= 2.0  # symmetric costs little here
