"""INT8 variants with ONNX Runtime: dynamic (weights only, no data) and static QDQ calibrated on real samples.

Static INT8 quantizes only the op types whose int8 kernels pay and hold accuracy. ONNX Runtime's default also
puts Q/DQ around LayerNormalization, Softmax, residual Adds, Muls and Gathers: on transformers that is what
collapses the output (a 3-layer all-MiniLM-L6-v2: mean cosine to fp32 0.81 with every op, 0.976 without them),
so `static_ops = "safe"` (the default) leaves those in float; "all" is ONNX Runtime's default, "matmul" only
MatMul / Gemm / Conv inputs. The calibration method (MinMax, Percentile, Entropy) sets the activation ranges;
edgekd.quantize.calibration picks it by validation fidelity when the recipe says "auto".

ONNX Runtime's quantizer logs through the root logger (`Axis 1 is out-of-range ...`) and its calibrators print
progress: both go to a log file (`log_path`), never to the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from edgekd.fileio import atomic_path, scratch_cwd

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
STATIC_OPS = ("safe", "all", "matmul")
DEFAULT_PERCENTILE = 99.99  # ORT's 99.999 keeps the GELU-output outliers that cost a MiniLM FFN its precision
# Op types left in float by "safe": normalisations and softmax (wide dynamic range, cheap in float), elementwise
# arithmetic on the residual stream (outlier channels), lookups (no int8 compute to gain) and sigmoid/where.
TRANSFORMER_UNSAFE_OPS = frozenset({
    "LayerNormalization", "InstanceNormalization", "BatchNormalization", "EmbedLayerNormalization", "Softmax",
    "Add", "Mul", "Sigmoid", "Where", "Gather", "GatherElements", "CumSum", "TopK", "ArgMax",
})  # fmt: skip
COMPUTE_OPS = ("MatMul", "Gemm", "Conv")

Calibration = np.ndarray | Mapping[str, np.ndarray]  # one input's samples, or every input's by name


# Loggers that do not propagate to the root and write to the terminal through their own handler, made at import
# (NNCF's "nncf" logger holds the process's original stdout, which redirecting sys.stdout does not reach): import
# the package before entering quantizer_output_to.
OWN_HANDLER_LOGGERS = ("nncf",)


@contextlib.contextmanager
def quantizer_output_to(log_path: Path | None) -> Iterator[None]:
    """Send ONNX Runtime's quantization logging (root logger), NNCF's (its own logger) and the calibrators' and
    progress bars' prints to `log_path` (appended), or nowhere when None, for the duration of the block."""
    known = logging.Logger.manager.loggerDict  # only loggers already made: creating "nncf" first would break NNCF
    loggers = [logging.getLogger(), *(known[n] for n in OWN_HANDLER_LOGGERS
                                      if isinstance(known.get(n), logging.Logger))]  # fmt: skip
    saved = [(logger.handlers[:], logger.level) for logger in loggers]
    stream = log_path.open("a", encoding="utf-8") if log_path else io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for logger in loggers:
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        for logger, (handlers, level) in zip(loggers, saved, strict=True):
            logger.handlers, logger.level = handlers, level
        stream.close()


def calibration_feeds(calibration: Calibration, input_name: str) -> list[dict[str, np.ndarray]]:
    """One feed per sample (batch 1), every input by name."""
    arrays = dict(calibration) if isinstance(calibration, Mapping) else {input_name: calibration}
    count = len(next(iter(arrays.values())))
    return [{name: values[i : i + 1] for name, values in arrays.items()} for i in range(count)]


def _reader(feeds: list[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        """Feeds the calibration samples one at a time."""

        def __init__(self) -> None:
            self._items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    return FeedReader()


def preprocess(source: Path, target: Path, log_path: Path | None = None) -> Path:
    """Shape inference and graph optimisation, as ONNX Runtime recommends before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source_path, target_path = str(Path(source).resolve()), str(Path(target).resolve())  # before leaving the cwd
    with quantizer_output_to(log_path), scratch_cwd():
        quant_pre_process(source_path, target_path, skip_symbolic_shape=False)
    return target


def quantize_int8_dynamic(source: Path, target: Path, log_path: Path | None = None) -> None:
    """Weights to INT8 ahead of time; activations quantized on the fly at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(target) as tmp:
        prepared = preprocess(source, tmp.parent / f"{source.stem}.pre.onnx", log_path)
        try:
            with quantizer_output_to(log_path):
                quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            prepared.unlink(missing_ok=True)


def is_transformer_graph(path: Path) -> bool:
    """True for a graph with attention (Softmax) or LayerNormalization beside MatMuls: a transformer block."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    return "MatMul" in ops and bool(ops & {"Softmax", "LayerNormalization"})


def static_op_types(static_ops: str) -> list[str]:
    """The op types static INT8 puts Q/DQ around, for a recipe's `quantize.static_ops`."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    every = sorted(set(QDQRegistry) | set(QLinearOpsRegistry))
    if static_ops == "all":
        return every
    if static_ops == "matmul":
        return list(COMPUTE_OPS)
    if static_ops == "safe":
        return [op for op in every if op not in TRANSFORMER_UNSAFE_OPS]
    raise ValueError(f"static_ops must be one of {STATIC_OPS}, not {static_ops!r}")


def quantize_int8_static(
    source: Path, target: Path, input_name: str, calibration: Calibration,
    symmetric_activations: bool = False, method: str = "minmax", static_ops: str = "safe",
    percentile: float = DEFAULT_PERCENTILE, log_path: Path | None = None, prepared: Path | None = None,
    keep_float: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """QDQ format (what OpenVINO and TensorRT also read): int8 symmetric per-channel weights; activations with
    ranges from `method` over the calibration samples, as uint8 with a zero point (ONNX Runtime's CPU default) or,
    with `symmetric_activations`, as int8 with zero point 0: the only form TensorRT's ONNX parser accepts.
    `prepared` is `source` already through `preprocess` (saves redoing it when trying several methods);
    `keep_float` names nodes of the prepared graph left unquantized (the accuracy-aware search's choice)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, not {method!r}")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}  # fmt: skip
    extra = {"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    with atomic_path(target) as tmp:
        model = prepared or preprocess(source, tmp.parent / f"{source.stem}.pre.onnx", log_path)
        try:
            with quantizer_output_to(log_path):
                quantize_static(
                    str(model), str(tmp), _reader(calibration_feeds(calibration, input_name)),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=methods[method],
                    op_types_to_quantize=static_op_types(static_ops), extra_options=extra,
                    nodes_to_exclude=list(keep_float),
                )  # fmt: skip
        finally:
            if prepared is None:
                model.unlink(missing_ok=True)
