"""A runtime added by this module alone: ONNX Runtime with its own session options (sequential execution, basic
graph optimisations), registered with one line, is planned, built, measured, reported and listed by `doctor`,
with no other file of edgekd touched."""

import json
import shutil

import onnxruntime as ort
import pytest

from edgekd.errors import RecipeError
from edgekd.pipeline.layout import FP32_ONNX, QDQ_ONNX
from edgekd.runtimes import RUNTIMES
from edgekd.runtimes.base import BuildJob, EngineSpec, Runtime
from edgekd.samples import named
from tests.conftest import reduced_run, run_cli

NAME = "ort-sequential"
ARTIFACT = "student-ort-sequential-fp32"
SPEC = EngineSpec(NAME, "fp32", ARTIFACT, "student.sequential.onnx", "onnx", NAME, FP32_ONNX)


def _session(path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _load(path, threads):
    session = _session(path, threads)
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, named(batch, input_name))[0]


def _build(spec: EngineSpec, job: BuildJob) -> None:
    source, target = job.paths(spec)
    shutil.copyfile(source, target)  # the same graph under its own name: the session options make the difference


RUNTIME = Runtime(name=NAME, package="onnxruntime", extra="all", version=lambda: ort.__version__, load=_load,
                  engines=(SPEC,), build=_build, providers=lambda: {NAME: ["CPUExecutionProvider"]})  # fmt: skip


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(RUNTIMES, NAME, RUNTIME)  # the one registry line (undone after the test)


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "lab-sequential.toml"
    path.write_text('name = "lab-sequential"\ndevice_class = "host"\nruntimes = ["onnxruntime", "ort-sequential"]\n'
                    'precisions = ["fp32", "int8"]\n')  # fmt: skip
    return path


def test_a_profile_may_list_the_runtime_only_once_it_is_registered(profile_file):
    from edgekd.targets.profiles import load_profile

    with pytest.raises(RecipeError, match="unknown value 'ort-sequential'"):
        load_profile(profile_file)


def test_its_loader_uses_its_own_session_options(registered, quick_run):
    options = _session(quick_run / FP32_ONNX).get_session_options()
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_a_registered_runtime_is_planned_built_measured_reported_and_listed(registered, profile_file, tmp_path,
                                                                            capsys):  # fmt: skip
    from edgekd.build.engines import specs_for
    from edgekd.bundle.files import verify_bundle
    from edgekd.report.document import load_report
    from edgekd.targets.profiles import load_profile

    assert SPEC in specs_for(load_profile(profile_file), [FP32_ONNX, QDQ_ONNX])  # planned from the registry

    run = reduced_run(tmp_path / "export", "plugin", ["-p", str(profile_file), "--set",
                                                      "distill.train_scratch_baseline=false"])  # fmt: skip
    report = load_report(run)
    assert report["stages"]["build"]["engines"] == {ARTIFACT: SPEC.path}
    assert (run / SPEC.path).read_bytes() == (run / FP32_ONNX).read_bytes()  # built: its copy of the fp32 graph
    rows = {r["artifact"]: r for r in report["rows"]}
    row, fp32 = rows[ARTIFACT], rows["student-onnx-fp32"]
    assert row["status"] == "ok", row["reason"]
    assert row["runtime"] == NAME and row["target"] == "host" and row["source"] == "student-onnx-fp32"
    assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"] and row["throughput_per_s"] > 0
    # a fresh measuring process does not have a runtime registered in this one: measured here, and said so
    assert row["isolation"] == "in-process" and row["memory"]["peak_rss_bytes"] is None
    assert fp32["isolation"] == "subprocess"
    assert abs(row["accuracy"] - fp32["accuracy"]) <= 0.01 and row["student_parity"]["mean_cosine"] > 0.9999
    assert row["macs"] == fp32["macs"] > 0  # an ONNX graph: its MACs are counted
    assert report["run"]["runtime_versions"][NAME] == ort.__version__
    assert ARTIFACT in (run / "report.md").read_text()
    manifest = verify_bundle(run / "bundle")  # an ONNX file travels in the bundle, and the bundle checks know it
    assert ARTIFACT in {a["name"] for a in manifest["artifacts"]}

    capsys.readouterr()  # the run's own output
    code, out, _ = run_cli(["doctor", "--json"], capsys)
    facts = json.loads(out)
    assert code == 0 and facts["runtimes"][NAME] == {"version": ort.__version__, "usable": True, "why_not": ""}
    assert facts["providers"][NAME] == ["CPUExecutionProvider"]
