"""Interleaved measuring (edgekd.measure.interleave): one persistent worker per artifact, the batch-1 rounds taken
in turns and recorded on each row; a worker that is killed, hangs, or shares stdout with a chatty runtime costs
only its own row. Real ONNX Runtime workers on a tiny graph; the tests check order and outcomes, never time."""

import os
import signal
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from edgekd.build.artifacts import Artifact
from edgekd.measure import TimingPolicy
from edgekd.measure.interleave import MeasurePass, measure_jobs
from edgekd.measure.session import MeasureJob
from edgekd.measure.timing import LatencyStats
from edgekd.samples import save_inputs

ROUNDS = TimingPolicy(warmup_runs=1, min_runs=8, min_seconds=0.0, rounds=4)


def _jobs(tmp_path: Path, names: list[str], policy: TimingPolicy = ROUNDS) -> list[MeasureJob]:
    """One job per name on the same Gemm 4->3 graph; a name starting with 'missing' points at no file."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [weight])  # fmt: skip
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "m.onnx"))
    save_inputs(tmp_path / "inputs.npz", rng.standard_normal((6, 4)).astype(np.float32), "x")
    return [MeasureJob(artifact=Artifact(name, "student", f"{name}.onnx" if name.startswith("missing") else "m.onnx",
                                         "onnx", "onnxruntime", "fp32", 12).to_dict(),
                       run_dir=str(tmp_path), inputs_path=str(tmp_path / "inputs.npz"),
                       outputs_path=str(tmp_path / f"{name}.outputs.npy"), threads=1, num_classes=3, eval_batch_size=4,
                       policy=asdict(policy), batch_sizes=[1, 2], openvino_throughput=False)
            for name in names]  # fmt: skip


def _latency(result: dict) -> LatencyStats:
    assert result["status"] == "ok", result["reason"]
    return LatencyStats.from_dict(result["latency_ms"])


@pytest.mark.parametrize("in_process", [False, True], ids=["subprocess", "in-process"])
def test_rounds_of_several_artifacts_are_taken_in_rotating_turns(tmp_path, in_process):
    results = measure_jobs(_jobs(tmp_path, ["a", "b", "c"]), tmp_path, timeout_s=120, in_process=in_process)
    latencies = [_latency(r) for r in results]
    assert {r["isolation"] for r in results} == {"in-process" if in_process else "subprocess"}
    # round r starts at the r-th artifact: a b c | b c a | c a b | a b c
    assert [lat.round_slots for lat in latencies] == [(0, 2, 1, 0), (1, 0, 2, 1), (2, 1, 0, 2)]
    assert all(lat.interleaved_across == 3 and lat.rounds == 4 and lat.runs == ROUNDS.min_runs for lat in latencies)
    starts = [lat.round_start_s for lat in latencies]
    assert min(min(s) for s in starts) == 0.0
    for r in range(4):  # every artifact's round r began before any artifact's round r + 1, in the recorded order
        this_round = sorted(range(3), key=lambda k: starts[k][r])
        assert [latencies[k].round_slots[r] for k in this_round] == [0, 1, 2]
        if r < 3:
            assert max(s[r] for s in starts) < min(s[r + 1] for s in starts)
    assert all((tmp_path / f"{name}.outputs.npy").is_file() for name in "abc")


def test_a_longer_list_is_interleaved_in_groups_and_an_artifact_alone_records_no_turns(tmp_path):
    grouped = [_latency(r) for r in measure_jobs(_jobs(tmp_path, ["a", "b", "c"]), tmp_path, 120, max_live=2)]
    assert [lat.interleaved_across for lat in grouped] == [2, 2, None]  # a and b took turns; c was alone
    assert [lat.round_slots for lat in grouped] == [(0, 1, 0, 1), (1, 0, 1, 0), None]
    assert grouped[2].round_start_s is None and grouped[2].rounds == 4


def test_failing_and_killed_workers_give_failed_results_and_the_others_still_take_turns(tmp_path):
    with MeasurePass(_jobs(tmp_path, ["a", "missing", "b", "c"]), tmp_path, timeout_s=120) as group:
        group.open()  # "missing" fails to load and is gone; "c" is killed between loading and its rounds
        os.kill(group.live[3].process.pid, signal.SIGKILL)
        first, missing, second, killed = group.measure()
    assert missing["status"] == "failed" and "missing.onnx" in missing["reason"], missing["reason"]
    assert killed["status"] == "failed" and "exited with code -9" in killed["reason"], killed["reason"]
    assert [_latency(r).round_slots for r in (first, second)] == [(0, 1, 0, 1), (1, 0, 1, 0)]
    assert _latency(first).interleaved_across == 2  # the two that took turns
    assert first["memory"]["peak_rss_bytes"] > 0 and second["throughput"]


def test_a_hung_worker_is_stopped_at_its_budget_and_the_others_finish(tmp_path):
    with MeasurePass(_jobs(tmp_path, ["a", "b"]), tmp_path, timeout_s=120) as group:
        group.open()
        hung = group.live[0]
        os.kill(hung.process.pid, signal.SIGSTOP)  # alive but answering nothing, as a deadlocked runtime
        hung.budget_s = 0.5  # what is left of its budget
        stopped, ok = group.measure()
    assert stopped["status"] == "failed" and "took longer than 120 s and was stopped" in stopped["reason"]
    assert hung.process.returncode == -signal.SIGKILL
    assert _latency(ok).rounds == 4


NOISY_STARTUP = """
import atexit, os, sys
print("runtime banner on stdout")
os.write(1, b'{"event": "result", "result": {"status": "ok"}}\\n')  # protocol-looking noise at the fd level
atexit.register(lambda: print("bye from the runtime"))
"""


def test_what_a_runtime_prints_on_stdout_does_not_reach_the_protocol(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NOISY_STARTUP)  # runs in every worker interpreter at start-up
    monkeypatch.syspath_prepend(str(site))  # the workers get this process's search path
    (result,) = measure_jobs(_jobs(tmp_path, ["a"]), tmp_path, timeout_s=120)
    assert _latency(result).rounds == 4 and result["throughput"]
    assert "runtime banner on stdout" in (tmp_path / "worker-0.log").read_text()


def test_a_worker_whose_parent_closes_its_pipes_exits_by_itself(tmp_path):
    with MeasurePass(_jobs(tmp_path, ["a"]), tmp_path, timeout_s=120) as group:
        group.open()
        worker = group.live.pop(0)
        worker.close()  # no finish: the command pipe just closes, as when the parent is gone
    assert worker.process.returncode == 0
