"""TensorRT: build an engine from the ONNX / QDQ model where it will run, and run it with device buffers.

Engines are specific to the GPU, its compute capability and the TensorRT version, and they are executable
artifacts. So every engine gets a sidecar `<engine>.json` recording what it was built with and its sha256;
an engine without a sidecar, with a changed hash, or built for another GPU / TensorRT version is refused
("rebuild on target"), never loaded.

One code path for TensorRT 10.3 (what JetPack 6 ships) to 11.x: TensorRT 11 removed weakly typed networks and
the precision builder flags (`BuilderFlag.FP16` / `INT8`, trtexec `--fp16` / `--int8`), so every build here is
a strongly typed network and the precision comes from the ONNX file itself: an fp16 graph for fp16, a Q/DQ
graph (int8, zero point 0) for int8. Build: network from the OnnxParser, one optimization profile over the
dynamic batch axis, workspace limit through the memory pool limit, a timing cache kept beside the engine; or
`trtexec` where only that is present. Run: torch CUDA tensors as device buffers, `execute_async_v3` on a
CUDA stream. `TENSORRT_API` lists every TensorRT name used, checked against the installed bindings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError, MissingDependencyError, StageError, install_hint
from edgekd.fileio import atomic_path, sha256_file, write_json_atomic
from edgekd.pipeline.layout import FP32_ONNX, QDQ_ONNX
from edgekd.runtimes.base import (
    USABLE,
    ArtifactFormat,
    Availability,
    BuildJob,
    EngineSpec,
    Runner,
    Runtime,
    RuntimeStatus,
)
from edgekd.runtimes.tensorrt_onnx import onnx_precision, qdq_problem, tensorrt_onnx
from edgekd.samples import Inputs, named
from edgekd.targets.this_host import nvidia_gpus

DEFAULT_WORKSPACE_BYTES = 1 << 30  # 1 GiB: ample for small models, within a Jetson Orin Nano's 8 GB
TRTEXEC_PATHS = ("trtexec", "/usr/src/tensorrt/bin/trtexec")  # the second is where JetPack puts it
SUPPORTED_VERSIONS = "TensorRT 10.3 to 11.x"

# Every name of the TensorRT Python API this module uses, by owner ("" is the module itself). The code reaches
# TensorRT only through these: `_import_tensorrt` refuses bindings that lack one (one clear line instead of an
# AttributeError halfway through a build), a test checks the code against this table, and another checks the
# table against the real `tensorrt` module wherever it imports. Checked by hand against 10.3.0 and 11.4.0.106.
TENSORRT_API: dict[str, tuple[str, ...]] = {
    "": ("__version__", "nptype", "Logger", "Builder", "NetworkDefinitionCreationFlag", "OnnxParser", "MemoryPoolType",
         "Runtime", "TensorIOMode", "IBuilderConfig", "IOptimizationProfile", "ITimingCache", "ICudaEngine",
         "IExecutionContext"),
    "Logger": ("WARNING",),
    "NetworkDefinitionCreationFlag": ("STRONGLY_TYPED",),  # 1 in 10.x, 0 in 11.x: always shift by its value
    "MemoryPoolType": ("WORKSPACE",),
    "TensorIOMode": ("INPUT",),
    "Builder": ("create_network", "create_builder_config", "create_optimization_profile", "build_serialized_network"),
    "OnnxParser": ("parse_from_file", "num_errors", "get_error"),
    "IBuilderConfig": ("set_memory_pool_limit", "add_optimization_profile", "create_timing_cache", "set_timing_cache",
                       "get_timing_cache"),
    "IOptimizationProfile": ("set_shape",),
    "ITimingCache": ("serialize",),
    "Runtime": ("deserialize_cuda_engine",),
    "ICudaEngine": ("create_execution_context", "num_io_tensors", "get_tensor_name", "get_tensor_mode",
                    "get_tensor_dtype"),
    "IExecutionContext": ("set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3"),
}  # fmt: skip


def _version() -> str:
    import tensorrt

    return tensorrt.__version__


def missing_api(trt) -> list[str]:
    """The names of `TENSORRT_API` that the module `trt` lacks, as dotted paths ([] when it has them all)."""
    missing = []
    for owner, names in TENSORRT_API.items():
        scope = getattr(trt, owner, None) if owner else trt
        if scope is None:
            missing.append(owner)
            continue
        missing += [".".join(filter(None, (owner, name))) for name in names if not hasattr(scope, name)]
    return missing


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt", "Building or running a TensorRT engine") from None
    missing = missing_api(tensorrt)
    if missing:
        raise EdgekdError(f"TensorRT {tensorrt.__version__} lacks {', '.join(missing)}, which edgekd uses: "
                          f"install a supported version ({SUPPORTED_VERSIONS})")  # fmt: skip
    return tensorrt


def trtexec_path() -> str | None:
    for candidate in TRTEXEC_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def tensorrt_status() -> RuntimeStatus:
    """Usable when engines can be built and run here; build-only with trtexec alone; else absent, and why.
    The GPU is asked about first: without one, installing TensorRT would not help."""
    if not nvidia_gpus():
        return RuntimeStatus(Availability.ABSENT, "no NVIDIA GPU on this machine (nvidia-smi lists none); TensorRT "
                             "engines are built on the target")  # fmt: skip
    try:
        _version()
    except ImportError:
        if trtexec_path() is None:
            return RuntimeStatus(Availability.ABSENT, f"TensorRT is not installed: {install_hint('tensorrt')} "
                                 "(on a Jetson it comes with JetPack)")  # fmt: skip
        return RuntimeStatus(Availability.BUILD_ONLY, "only trtexec is installed: engines can be built, but running "
                             "them needs the tensorrt Python package")  # fmt: skip
    import torch

    if not torch.cuda.is_available():
        return RuntimeStatus(Availability.ABSENT, "torch has no CUDA here, so there are no device buffers: install a "
                             "CUDA build of torch")  # fmt: skip
    return USABLE


def tensorrt_unavailable_reason() -> str | None:
    """None when engines can be built and run here, else a sentence saying why not."""
    return tensorrt_status().why_not


def device_identity() -> dict[str, str]:
    """What an engine is tied to: TensorRT version, GPU name and compute capability."""
    gpu = nvidia_gpus()[0] if nvidia_gpus() else {}
    try:
        version = _version()
    except ImportError:
        version = _trtexec_version()
    version = ".".join(version.split(".")[:3])  # the wheel says 10.3.0.30, trtexec says 10.3.0: same engine format
    return {"tensorrt_version": version, "gpu": gpu.get("name", ""), "compute_capability": gpu.get("compute_cap", "")}


def _trtexec_version() -> str:
    path = trtexec_path()
    if path is None:
        return ""
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60).stdout
    for token in out.split():  # "[TensorRT v100300]"
        if token.startswith("v") and token.rstrip("]")[1:].isdigit():
            code = int(token.rstrip("]")[1:])
            return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return ""


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_suffix(".json")


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    input_name: str | list[str],
    sample_shape: tuple[int, ...],
    max_batch: int,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    sequence_axis: bool = False,
) -> dict[str, Any]:
    """Build `engine_path` from `onnx_path` for batch sizes 1..max_batch; write and return the sidecar.
    The network is strongly typed, so `precision` must be what the ONNX file computes in (`onnx_precision`).
    Several inputs (a Hugging Face encoder's) share one shape; with `sequence_axis` their axis 1 ranges from 1
    to the longest sequence, as texts of any length are fed."""
    if precision not in ("fp32", "fp16", "int8"):
        raise StageError(f"build: TensorRT precision must be fp32, fp16 or int8, not '{precision}'")
    found = onnx_precision(onnx_path)
    if found != precision:
        raise StageError(f"build: {onnx_path.name} computes in {found}, but a {precision} TensorRT engine was asked "
                         "for: TensorRT builds strongly typed networks, so the precision comes from the ONNX file "
                         "(fp16: an fp16 graph, int8: a Q/DQ graph)")  # fmt: skip
    problem = qdq_problem(onnx_path) if found == "int8" else None
    if problem:
        raise StageError(f"build: {onnx_path.name}: {problem}, which TensorRT cannot read as it is; rewrite it with "
                         "edgekd.runtimes.tensorrt_onnx.to_tensorrt_qdq")  # fmt: skip
    status = tensorrt_status()
    if not status.can_build:
        raise StageError(f"build: TensorRT engine {engine_path.name}: {status.reason}")
    shortest = (1, *sample_shape[1:]) if sequence_axis else tuple(sample_shape)
    shapes = {"min": (1, *shortest), "opt": (1, *sample_shape), "max": (max_batch, *sample_shape)}
    input_name = input_name if isinstance(input_name, str) else ",".join(input_name)
    cache = engine_path.parent / "timing.cache"
    try:
        _import_tensorrt()
        builder = "python-api"
        _build_with_api(onnx_path, engine_path, input_name, shapes, workspace_bytes, cache)
    except MissingDependencyError:
        builder = "trtexec"
        _build_with_trtexec(onnx_path, engine_path, input_name, shapes, workspace_bytes, cache)
    sidecar = {
        **device_identity(),
        "builder": builder,
        "precision": precision,
        "onnx_sha256": sha256_file(onnx_path),
        "engine_sha256": sha256_file(engine_path),
        "input": {"name": input_name, **{k: list(v) for k, v in shapes.items()}},
        "workspace_bytes": workspace_bytes,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(sidecar_path(engine_path), sidecar)
    return sidecar


def _build_with_api(onnx_path, engine_path, input_name, shapes, workspace_bytes, cache_path) -> None:
    trt = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StageError(f"build: TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    for name in input_name.split(","):
        profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StageError(f"build: TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(serialized))
    cache = config.get_timing_cache()
    with atomic_path(cache_path) as tmp:
        tmp.write_bytes(memoryview(cache.serialize()))


def trtexec_args(path: str, onnx_path: Path, engine_path: Path, input_name: str, shapes: dict[str, tuple[int, ...]],
                 workspace_bytes: int, cache_path: Path, version: str) -> list[str]:  # fmt: skip
    """The trtexec command line; no precision flags (TensorRT 11 removed --fp16 / --int8): the ONNX file's types
    decide. `--stronglyTyped` makes 10.x do the same; 11.x always does, so it is passed to 10.x (or unknown) only."""

    def dims(shape: tuple[int, ...]) -> str:  # every input (comma-separated names) at the same shape
        return ",".join(f"{name}:{'x'.join(str(d) for d in shape)}" for name in input_name.split(","))

    args = [path, f"--onnx={onnx_path}", f"--saveEngine={engine_path}", f"--minShapes={dims(shapes['min'])}",
            f"--optShapes={dims(shapes['opt'])}", f"--maxShapes={dims(shapes['max'])}",
            f"--memPoolSize=workspace:{workspace_bytes // (1 << 20)}M", f"--timingCacheFile={cache_path}",
            "--skipInference"]  # fmt: skip
    major = version.split(".")[0]
    return args + ["--stronglyTyped"] if not major.isdigit() or int(major) < 11 else args


def _build_with_trtexec(onnx_path, engine_path, input_name, shapes, workspace_bytes, cache_path) -> None:
    path = trtexec_path()
    if path is None:
        raise MissingDependencyError("tensorrt", "tensorrt", "Building a TensorRT engine")
    with atomic_path(engine_path) as tmp:
        args = trtexec_args(path, onnx_path, tmp, input_name, shapes, workspace_bytes, cache_path, _trtexec_version())
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            raise StageError(f"build: trtexec failed on {onnx_path.name}: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def check_engine(engine_path: Path, allowed_sha256: set[str] = frozenset()) -> dict[str, Any]:
    """Refuse an engine that was not built here (no sidecar, changed bytes) unless its hash is in
    `allowed_sha256` (from a verified manifest), or that was built for another GPU / TensorRT version."""
    sidecar_file = sidecar_path(engine_path)
    if not sidecar_file.is_file():
        raise EdgekdError(f"engine {engine_path} has no build record ({sidecar_file.name}); engines are code: "
                          "rebuild on target with `edgekd profile BUNDLE -p PROFILE`")  # fmt: skip
    sidecar = json.loads(sidecar_file.read_text(encoding="utf-8"))
    actual = sha256_file(engine_path)
    if actual != sidecar.get("engine_sha256") and actual not in allowed_sha256:
        raise EdgekdError(f"engine {engine_path} does not match its build record (sha256 {actual[:12]}…); "
                          "refusing to load it: rebuild on target")  # fmt: skip
    here = device_identity()
    for key in ("tensorrt_version", "gpu", "compute_capability"):
        if sidecar.get(key) != here[key]:
            raise EdgekdError(f"engine {engine_path.name} was built for {key.replace('_', ' ')} "
                              f"'{sidecar.get(key)}', this machine has '{here[key]}': rebuild on target")  # fmt: skip
    return sidecar


class TensorrtRunner:
    """Runs a checked engine on batches of numpy input through torch CUDA buffers on one stream."""

    def __init__(self, engine_path: Path):
        import torch

        trt = _import_tensorrt()
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise EdgekdError(f"TensorRT could not deserialize {engine_path.name}: rebuild on target")
        self._engine, self._context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._inputs, self._outputs = inputs, [n for n in names if n not in inputs]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._stream = torch.cuda.Stream()
        self._device_inputs: list = []

    def _buffer(self, shape, dtype: np.dtype):
        torch_dtype = self._torch.from_numpy(np.empty(0, dtype)).dtype
        return self._torch.empty(tuple(shape), dtype=torch_dtype, device="cuda")

    def stage(self, batch: Inputs) -> list:
        """Copy `batch` (one array, or name -> array) to the device and bind every tensor; returns the outputs."""
        feeds = named(batch, self._inputs[0])
        with self._torch.cuda.stream(self._stream):  # buffers belong to the stream the engine runs on
            self._device_inputs = []
            for name in self._inputs:
                array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
                device_array = self._torch.from_numpy(array).to("cuda")
                self._device_inputs.append(device_array)  # kept alive while the engine reads it
                self._context.set_input_shape(name, array.shape)
                self._context.set_tensor_address(name, device_array.data_ptr())
            outputs = []
            for name in self._outputs:
                out = self._buffer(self._context.get_tensor_shape(name), self._dtypes[name])
                self._context.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
        return outputs

    def execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise EdgekdError("TensorRT execute_async_v3 failed")

    def __call__(self, batch: Inputs) -> np.ndarray:
        outputs = self.stage(batch)
        self.execute()
        self._stream.synchronize()
        return outputs[0].cpu().numpy().astype(np.float32)

    def gpu_compute_ms(self, batch: Inputs, warmup_runs: int, runs: int) -> list[float]:
        """Per-run GPU time from CUDA events around the kernel launch alone, input already on the device:
        what trtexec reports as 'GPU Compute Time'."""
        self.stage(batch)
        for _ in range(warmup_runs):
            self.execute()
        samples = []
        for _ in range(runs):
            start, end = self._torch.cuda.Event(enable_timing=True), self._torch.cuda.Event(enable_timing=True)
            start.record(self._stream)
            self.execute()
            end.record(self._stream)
            end.synchronize()
            samples.append(start.elapsed_time(end))
        return samples


def _load(path: Path, threads: int) -> Runner:
    """Load an engine built here (its sidecar matches this GPU and TensorRT); `threads` does not apply."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise EdgekdError(f"cannot run TensorRT engine {path.name}: {reason}")
    check_engine(path)
    return TensorrtRunner(path)


def _build(spec: EngineSpec, job: BuildJob) -> None:
    source, target = job.paths(spec)
    device = job.device
    typed = tensorrt_onnx(spec.precision, source, target.with_suffix(".onnx"))
    build_engine(typed, target, spec.precision, device["input_name"], device["sample_shape"], device["max_batch"],
                 sequence_axis=device.get("sequence_axis", False))  # fmt: skip


def device_figures(engine: Path, batch: Inputs, warmup_runs: int, runs: int) -> dict[str, Any]:
    """The engine's build record, and GPU compute time per run (CUDA events, input already on the device)."""
    from edgekd.measure.timing import summarize_ms

    record = check_engine(engine)
    samples = TensorrtRunner(engine).gpu_compute_ms(batch, warmup_runs, runs)
    return {"build": record, "gpu_compute_ms": summarize_ms(samples)}  # a row field of type Timing


ENGINE = ArtifactFormat("tensorrt-engine")
ENGINES = tuple(EngineSpec("tensorrt", precision, f"student-tensorrt-{precision}",
                           f"tensorrt/student.{precision}.engine", ENGINE.name, "tensorrt", source)
                for precision, source in (("fp32", FP32_ONNX), ("fp16", FP32_ONNX), ("int8", QDQ_ONNX)))  # fmt: skip

RUNTIME = Runtime(name="tensorrt", package="tensorrt", extra="tensorrt", version=_version, load=_load,
                  engines=ENGINES, build=_build, built_on_device=True, formats=(ENGINE,), check=tensorrt_status,
                  joins_host=True, needs_symmetric_int8=True, device_facts=device_identity,
                  device_figures=device_figures, providers=lambda: {"trtexec": trtexec_path()})  # fmt: skip
