"""How edgekd opens an ONNX Runtime session: CPU provider, intra-op threads as asked, inter-op 1, and the graph
optimizers a chosen graph asks to have off (its metadata key `edgekd.ort.disabled_optimizers`, written by
edgekd.export.graph_choice), so a measured session and an app's are the same session."""

from __future__ import annotations

from pathlib import Path

DISABLED_OPTIMIZERS_KEY = "edgekd.ort.disabled_optimizers"  # comma-separated ORT graph optimizer names


def disabled_optimizers(path: Path) -> list[str]:
    """The ORT graph optimizers an ONNX graph asks to have switched off (its metadata), else [] (also for an
    ORT-format model, which edgekd never chose a graph for)."""
    import onnx

    if Path(path).suffix != ".onnx":
        return []
    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == DISABLED_OPTIMIZERS_KEY), "")
    return [name for name in value.split(",") if name]


def ort_session(path: Path, threads: int, disabled: tuple[str, ...] | list[str] = ()):
    """A CPU session as edgekd measures it (intra-op `threads`, inter-op 1), minus the `disabled` optimizers."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    extra = {"disabled_optimizers": list(disabled)} if disabled else {}
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"], **extra)
