"""`edgekd doctor`: what this machine has, and which profiles it measures for real."""

import json

import pytest

from edgekd.runtimes import RUNTIMES
from edgekd.runtimes.tensorrt_runtime import tensorrt_unavailable_reason
from tests.conftest import run_cli


@pytest.mark.openvino
def test_doctor_reports_runtimes_and_profiles(capsys):
    code, out, _ = run_cli(["doctor", "--json"], capsys)
    assert code == 0
    facts = json.loads(out)
    assert list(facts["runtimes"]) == list(RUNTIMES)  # every registered runtime, from the registry
    assert facts["runtimes"]["onnxruntime"]["usable"] is True
    assert "CPUExecutionProvider" in facts["providers"]["onnxruntime"]
    assert facts["profiles"]["host"] == "measurable here"
    assert "phone" in facts["profiles"]["android-arm64"]
    trt = facts["runtimes"]["tensorrt"]
    assert trt["usable"] is (tensorrt_unavailable_reason() is None)
    if not trt["usable"]:
        assert trt["why_not"] == tensorrt_unavailable_reason()
    code, out, _ = run_cli(["doctor"], capsys)
    assert code == 0 and "profiles" in out and "runtimes" in out
