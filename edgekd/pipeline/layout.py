"""Every file name of a run directory (export/<run>/) and of a bundle, defined once.

A stage reads its upstream's files by these names and writes its own; `edgekd profile` finds the same names in
a bundle. Paths are relative to the run (or bundle) directory and use "/" (they are also manifest keys).
"""

from __future__ import annotations

# what the run starts from
RECIPE = "recipe.toml"  # the recipe as run, overrides applied
TEST_SPLIT = "data/test.npz"  # inputs + labels every row is judged on
CALIBRATION_SAMPLES = "data/calibration.npz"  # the same path in a run directory and in a bundle

# distill
TEACHER_CHECKPOINT = "teacher.safetensors"
STUDENT_CHECKPOINT = "student.safetensors"
TRAIN_LOG = "train.jsonl"  # one JSON line per logged training step

# export
FP32_ONNX = "student.onnx"  # the standard-op graph every runtime builds from
ORT_GRAPH = "student.ort.onnx"  # a transformer's ONNX Runtime fp32 graph, chosen by measurement
ORT_INT8_DYNAMIC_GRAPH = "student.int8-dynamic.ort.onnx"  # ... and its dynamic INT8 graph
GRAPH_CANDIDATES = "graphs"  # the candidate graphs the choice timed

# quantize
QUANTIZE_LOG = "quantize.log"  # ONNX Runtime's quantization logging, kept off the terminal
QDQ_ONNX = "student.int8-static.onnx"  # static QDQ: the int8 source OpenVINO, TensorRT and mobile read


def quantized_onnx(variant: str) -> str:
    """The ONNX file of a quantize variant ("int8-dynamic", "int8-static")."""
    return f"student.{variant}.onnx"


# build
FP16_ONNX = "student.fp16.onnx"  # fp16 weights and arithmetic, fp32 inputs and outputs
MOBILE_CONFIG = "mobile/required_operators.config"

# bundle (inside export/<run>/bundle/, or the folder an archive unpacks to)
BUNDLE = "bundle"
BUNDLE_ARCHIVE = "bundle.tar.gz"
MANIFEST = "manifest.json"
EVAL_SAMPLES = "data/eval.npz"

# report
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
