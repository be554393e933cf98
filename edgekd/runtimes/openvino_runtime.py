"""OpenVINO on the CPU: converts an ONNX model to IR (.xml + .bin) and runs it.

Three IRs: fp32, fp16 (weights compressed to fp16, decompressed at load) and int8: by default NNCF's
post-training quantization of the fp32 model on the run's calibration samples (`build.openvino_int8 = "nncf"`;
transformer graphs with NNCF's transformer model type, which also applies SmoothQuant to MatMuls), or converted
from the static QDQ model (`"qdq"`). Either way the CPU plugin runs the FakeQuantize ops as int8 kernels.
The precision the plugin will compute in is stored in the IR itself (rt_info `edgekd/inference_precision`):
"f32" forces fp32 arithmetic, "auto" lets the plugin choose, which on CPUs with bf16 (AVX512_BF16, AMX) silently
means bf16. Either way `execution_precision` reads back what the compiled model actually uses, so the report
can say which.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import MissingDependencyError
from edgekd.fileio import atomic_path
from edgekd.pipeline.layout import FP32_ONNX, QDQ_ONNX
from edgekd.runtimes.base import ArtifactFormat, BuildJob, EngineSpec, Runner, Runtime, TimedCall
from edgekd.samples import Inputs

if TYPE_CHECKING:
    from edgekd.quantize.budget import QuantizeBudget

PRECISION_KEY = ["edgekd", "inference_precision"]
BUCKET_CHOICE_THREADS = 1  # buckets against dynamic shapes is timed at batch 1 on one thread
INFERENCE_PRECISIONS = ("auto", "f32")
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}  # int8 IR: its float parts in f32
IR = ArtifactFormat("openvino-ir", side_suffixes=(".bin",))  # the .xml and its weights, the .bin


def _version() -> str:
    import openvino

    return openvino.__version__.split("-")[0]


def _import_openvino():
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "openvino", "Building an OpenVINO IR") from None
    return openvino


def build_ir(onnx_path: Path, xml_path: Path, compress_to_fp16: bool = False, inference_precision: str = "f32") -> None:
    """Convert ONNX to OpenVINO IR; the .bin lands beside the .xml. `inference_precision` is "f32" or "auto"."""
    if inference_precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"inference_precision must be one of {INFERENCE_PRECISIONS}, not {inference_precision!r}")
    ov = _import_openvino()
    _save(ov, ov.convert_model(str(onnx_path)), xml_path, inference_precision, compress_to_fp16)


def _import_nncf():
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("nncf", "openvino", "OpenVINO int8 through NNCF") from None
    return nncf


def build_int8_ir_nncf(
    onnx_path: Path, xml_path: Path, feeds: list[dict[str, np.ndarray]], transformer: bool,
    inference_precision: str = "f32", log_path: Path | None = None,
    under_budget: tuple[QuantizeBudget, Inputs, str] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """OpenVINO int8 IR by NNCF post-training quantization of the fp32 ONNX model on `feeds` (one dict of
    inputs per calibration sample). `transformer` selects NNCF's transformer model type (SmoothQuant on MatMuls,
    LayerNorm / Softmax / GELU kept in float), which is what keeps an encoder's int8 close to fp32.
    `under_budget` (the budget, the validation inputs, the input name) quantizes with NNCF's accuracy control
    instead (edgekd.quantize.nncf_accuracy) and returns what it did; NNCF's logging goes to `log_path`."""
    from edgekd.quantize.ort_int8 import quantizer_output_to

    ov, nncf = _import_openvino(), _import_nncf()
    model_type = nncf.ModelType.TRANSFORMER if transformer else None
    record = None
    with quantizer_output_to(log_path):
        fp32 = ov.convert_model(str(onnx_path))
        if under_budget is None:
            model = nncf.quantize(fp32, nncf.Dataset(feeds), subset_size=len(feeds), model_type=model_type)
        else:
            from edgekd.quantize.nncf_accuracy import quantize_under_budget

            budget, validation, input_name = under_budget
            model, record = quantize_under_budget(onnx_path, fp32, feeds, validation, input_name, budget, model_type)
    _save(ov, model, xml_path, inference_precision, compress_to_fp16=False)
    return record


def _save(ov, model, xml_path: Path, inference_precision: str, compress_to_fp16: bool) -> None:
    model.set_rt_info(inference_precision, PRECISION_KEY)
    _write(ov, model, xml_path, compress_to_fp16)


def _write(ov, model, xml_path: Path, compress_to_fp16: bool) -> None:
    """The .xml and its .bin, each through a temporary file renamed into place."""
    bin_path = xml_path.with_suffix(".bin")
    with atomic_path(xml_path) as tmp_xml:
        tmp_bin = tmp_xml.with_suffix(".bin")
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
            tmp_bin.replace(bin_path)
        finally:
            tmp_bin.unlink(missing_ok=True)


def add_sequence_buckets(xml_path: Path, texts: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Measure sequence buckets for the IR at `xml_path` on `texts` (batch-1 token feeds, padded); where they are
    kept, the IR is written again with them in its rt_info. Returns the decision record (openvino_buckets)."""
    from edgekd.runtimes.openvino_buckets import BUCKETS_KEY, choose_buckets

    ov = _import_openvino()
    core = ov.Core()
    model = core.read_model(str(xml_path))
    decision = choose_buckets(core, model, _config(model, BUCKET_CHOICE_THREADS), texts)
    if decision["buckets"]:
        model.set_rt_info(",".join(str(n) for n in decision["buckets"]), BUCKETS_KEY)
        _write(ov, model, xml_path, compress_to_fp16=False)  # an fp16 IR's weights are read back as stored
    return decision


def _config(model, threads: int) -> dict[str, Any]:
    """The latency configuration an IR is compiled with: its stored precision, `threads` threads."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    # IRs written before the hint was stored were always measured in f32
    wanted = model.get_rt_info(PRECISION_KEY).astype(str) if model.has_rt_info(PRECISION_KEY) else "f32"
    if wanted == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


def _compile(path: Path, threads: int):
    ov = _import_openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    return core.compile_model(model, "CPU", _config(model, threads))


def execution_precision(path: Path, threads: int = 1) -> str:
    """The precision the CPU plugin computes this IR in ("f32", "bf16", "f16"), read from the compiled model."""
    return _compile(path, threads).get_property("INFERENCE_PRECISION_HINT").to_string()


def throughput_mode(path: Path, inputs: Inputs, precision: str, threads: int, executed: str | None,
                    policy) -> dict[str, Any]:  # fmt: skip
    """OpenVINO's own THROUGHPUT mode: several streams and infer requests in flight (as benchmark_app -hint
    throughput), computing in the precision the latency runs used (`executed`, what the plugin reported, else
    what an artifact of `precision` asks for). At batch 1, as benchmark_app's throughput run: independent
    requests in flight over the streams (the batched figure is the sync one; a second streams run per batch
    size would double the time). Returns samples/s with the streams and requests it chose, and the precision
    it executed in."""
    from edgekd.measure.timing import repeat_to_batch

    ov = _import_openvino()
    hint = (executed or PRECISION_HINTS.get(precision, "f32")).split("+")[-1]
    config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    batch_size = 1
    batch = feeds(repeat_to_batch(inputs, batch_size))
    for _ in range(max(policy.warmup_runs, requests)):
        queue.start_async(batch)
    queue.wait_all()
    done, min_ns = 0, int(policy.min_seconds * 1e9)
    started = time.perf_counter_ns()
    while done < policy.min_runs or time.perf_counter_ns() - started < min_ns:
        queue.start_async(batch)  # blocks while every request is busy
        done += 1
    queue.wait_all()
    elapsed_s = (time.perf_counter_ns() - started) / 1e9
    return {
        "batch_size": batch_size,
        "per_s": done * batch_size / elapsed_s,
        "mode": "openvino-throughput",
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "infer_requests": requests,
        "execution_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
    }


def feeds(batch: Inputs) -> dict:
    """OpenVINO's input map: by position for a one-input model, by name for several."""
    return dict(batch) if isinstance(batch, dict) else {0: batch}


def _requests(path: Path, threads: int):
    """feed -> (infer request, feed as that request takes it): one dynamic-shape request, or, for an IR stored
    with sequence buckets, a static request per bucket with the feed padded to it (openvino_buckets)."""
    from edgekd.runtimes.openvino_buckets import BucketedModel, buckets_of

    ov = _import_openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    buckets = buckets_of(model)
    if buckets:
        bucketed = BucketedModel(core, model, _config(model, threads), buckets)
        return lambda feed: bucketed.prepared(feed) if isinstance(feed, dict) else (bucketed.dynamic, feed)
    request = core.compile_model(model, "CPU", _config(model, threads)).create_infer_request()
    return lambda feed: (request, feed)


def _load(path: Path, threads: int) -> Runner:
    prepared = _requests(path, threads)

    def run(batch: Inputs) -> np.ndarray:
        request, feed = prepared(feeds(batch))
        request.infer(feed)
        return request.get_output_tensor(0).data.copy()

    def bind(batch: Inputs) -> TimedCall:
        # the input tensors set once over the batch's memory, and infer() with no inputs builds no result dict:
        # request.infer({0: batch}) costs ~80 us more per call than the model on a 10 us model
        ov = _import_openvino()
        request, feed = prepared(feeds(batch))
        if isinstance(batch, dict):  # token models: every named input
            kept = {name: np.ascontiguousarray(array) for name, array in feed.items()}
            for name, array in kept.items():
                request.set_tensor(name, ov.Tensor(array, shared_memory=True))
        else:
            kept = np.ascontiguousarray(batch, dtype=request.model_inputs[0].get_element_type().to_dtype())
            request.set_input_tensor(ov.Tensor(kept, shared_memory=True))

        def call() -> object:
            request.infer()
            return kept

        return TimedCall(call, runtime_ms=lambda: request.latency)  # the plugin's own time of the last infer, ms

    run.bind = bind  # type: ignore[attr-defined]
    return run


def _input_names(job: BuildJob) -> list[str]:
    name = job.device["input_name"]
    return [name] if isinstance(name, str) else list(name)


def _token_texts(job: BuildJob) -> list[dict[str, np.ndarray]] | None:
    """The calibration samples as batch-1 feeds where the model takes token sequences with a mask (what sequence
    buckets are measured on), else None."""
    from edgekd.pipeline.layout import CALIBRATION_SAMPLES  # the same path in a run directory and in a bundle
    from edgekd.quantize.ort_int8 import calibration_feeds
    from edgekd.samples import MASK, load_inputs

    path, names = job.source_dir / CALIBRATION_SAMPLES, _input_names(job)
    if MASK not in names or not path.is_file():
        return None
    return calibration_feeds(load_inputs(path, names), names[0])


def _build(spec: EngineSpec, job: BuildJob) -> dict[str, Any] | None:
    """fp32 / fp16 IR converted from ONNX; int8 by NNCF on the calibration samples, or converted from QDQ. Given
    a quantization budget and the validation split (`budget`, `validation`: the run has them, a bundle does not),
    NNCF's accuracy control. Token models get sequence buckets where they measure faster. Returns the records
    for the build summary by kind (`accuracy_control`, `sequence_buckets`), or None."""
    source, target = job.paths(spec)
    precision = "f32" if job.profile.openvino.inference_precision == "f32" else "auto"
    if spec.method != "nncf":
        build_ir(source, target, compress_to_fp16=spec.precision == "fp16", inference_precision=precision)
        return _buckets_record(target, job, _token_texts(job))
    from edgekd.pipeline.layout import CALIBRATION_SAMPLES
    from edgekd.quantize.calibration import check_calibration
    from edgekd.quantize.ort_int8 import calibration_feeds, is_transformer_graph
    from edgekd.samples import MASK, load_inputs

    names = _input_names(job)
    calibration = load_inputs(job.source_dir / CALIBRATION_SAMPLES, names)  # every input the graph takes
    check_calibration(source, calibration, names[0])
    feeds = calibration_feeds(calibration, names[0])
    budget, validation = job.device.get("budget"), job.device.get("validation")
    under_budget = (budget, validation, names[0]) if budget is not None and validation is not None else None
    control = build_int8_ir_nncf(source, target, feeds, is_transformer_graph(source), precision,
                                 job.device.get("log_path"), under_budget)  # fmt: skip
    texts = feeds if MASK in names else None  # the same samples the buckets are measured on: read once
    records = {**({"accuracy_control": control} if control else {}), **(_buckets_record(target, job, texts) or {})}
    return records or None


def _buckets_record(target: Path, job: BuildJob, texts: list[dict[str, np.ndarray]] | None) -> dict[str, Any] | None:
    if not texts:
        return None
    if not job.device.get("sequence_buckets", True):
        return {"sequence_buckets": {"buckets": [], "why": "off in the recipe (build.openvino_sequence_buckets)"}}
    return {"sequence_buckets": add_sequence_buckets(target, texts)}


def providers() -> dict[str, Any]:
    try:
        import openvino
    except ImportError:
        return {}
    core = openvino.Core()
    return {"openvino": {d: core.get_property(d, "OPTIMIZATION_CAPABILITIES") for d in core.available_devices}}


def _engine(precision: str, xml: str, source: str = FP32_ONNX, method: str = "") -> EngineSpec:
    return EngineSpec("openvino", precision, f"student-openvino-{precision}", f"openvino/{xml}", IR.name, "openvino",
                      source, method=method)  # fmt: skip


ENGINES = (_engine("fp32", "student.xml"), _engine("fp16", "student.fp16.xml"),
           _engine("int8", "student.int8.xml", method="nncf"), _engine("int8", "student.int8.xml", QDQ_ONNX, "qdq"))

RUNTIME = Runtime(name="openvino", package="openvino", extra="openvino", version=_version, load=_load,
                  engines=ENGINES, build=_build, formats=(IR,), off_switch="openvino",
                  execution_precision=execution_precision, throughput_mode=throughput_mode,
                  providers=providers)  # fmt: skip
