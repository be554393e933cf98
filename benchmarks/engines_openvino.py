"""edgekd's OpenVINO build + measure, side by side with what a user writes by hand, in one process.

By hand: `ov.convert_model` + `ov.save_model`, `core.compile_model` with the default config, then a timing
loop. edgekd: `build_ir` + the same runner and timing policy every report row uses. Both run on the same
ONNX model and the same real sample, alternating, so machine noise hits both alike. Results are ratios
(edgekd / by hand); the committed results file says what one run on one machine gave.

    PYTHONPATH=. python benchmarks/engines_openvino.py [RUN_DIR] [--out benchmarks/results/engines_openvino.json]

Without RUN_DIR a reduced digits run is made in a temporary directory first.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov

from edgekd import measure as m
from edgekd.runtimes.openvino_runtime import _load as edgekd_load
from edgekd.runtimes.openvino_runtime import build_ir, execution_precision
from edgekd.targets.this_host import cpu_model
from edgekd.tasks.base import load_eval_split

POLICY = m.TimingPolicy(warmup_runs=50, min_runs=2000, min_seconds=2.0)
ROUNDS = 3


def by_hand_build(onnx_path: Path, xml_path: Path) -> float:
    t0 = time.perf_counter()
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path))  # default: fp16-compressed weights
    return time.perf_counter() - t0


def by_hand_runner(xml_path: Path, threads: int):
    compiled = ov.Core().compile_model(str(xml_path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch})
        return request.get_output_tensor(0).data.copy()

    return run, compiled.get_property("INFERENCE_PRECISION_HINT").to_string()


def reduced_run(root: Path) -> Path:
    from edgekd import distill_and_export

    overrides = ["teacher.epochs=4", "distill.epochs=4", "measure.min_runs=5", "measure.min_seconds=0.02",
                 "distill.train_scratch_baseline=false"]  # fmt: skip
    return distill_and_export(overrides=overrides, output_dir=root, run_name="bench").run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engines_openvino.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = args.run_dir or reduced_run(work / "export")
        onnx_path = run_dir / "student.onnx"
        inputs, _ = load_eval_split(run_dir / "data" / "test.npz", "pixels")
        rounds = []
        for i in range(ROUNDS):
            hand_xml, ekd_xml = work / f"hand{i}.xml", work / f"edgekd{i}.xml"
            hand_build = by_hand_build(onnx_path, hand_xml)
            t0 = time.perf_counter()
            build_ir(onnx_path, ekd_xml, compress_to_fp16=True, inference_precision="auto")
            ekd_build = time.perf_counter() - t0
            hand_run, hand_precision = by_hand_runner(hand_xml, args.threads)
            ekd_run = edgekd_load(ekd_xml, args.threads)
            hand_p50 = m.measure_latency(hand_run, inputs, POLICY).p50
            ekd_p50 = m.measure_latency(ekd_run, inputs, POLICY).p50
            same = bool(np.array_equal(hand_run(inputs[:64]), ekd_run(inputs[:64])))
            rounds.append({"build_s": {"by_hand": hand_build, "edgekd": ekd_build},
                           "p50_ms": {"by_hand": hand_p50, "edgekd": ekd_p50}, "identical_outputs": same,
                           "execution_precision": {"by_hand": hand_precision,
                                                   "edgekd": execution_precision(ekd_xml, args.threads)}})  # fmt: skip
    median = lambda key: float(np.median([r[key]["edgekd"] / r[key]["by_hand"] for r in rounds]))  # noqa: E731
    result = {
        "what": "OpenVINO fp16-weight IR of the digits student, batch-1 latency on the CPU; edgekd / by hand",
        "machine": {"cpu": cpu_model(), "python": platform.python_version(), "openvino": ov.__version__,
                    "threads": args.threads},  # fmt: skip
        "policy": {"warmup_runs": POLICY.warmup_runs, "min_runs": POLICY.min_runs, "min_seconds": POLICY.min_seconds},
        "median_ratio_edgekd_over_by_hand": {"build_s": median("build_s"), "p50_ms": median("p50_ms")},
        "rounds": rounds,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_ratio_edgekd_over_by_hand"]), "->", args.out)


if __name__ == "__main__":
    main()
