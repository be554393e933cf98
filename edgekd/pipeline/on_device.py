"""`edgekd profile` as a library: verify a bundle, build the engines this device needs, measure, report.

Runs on a device that has only edgekd, its runtimes and the bundle: accuracy, drop and teacher agreement
come from the eval samples and teacher logits inside the bundle, through the same `measure_rows` the
training run uses, so the figures are comparable row for row. The report has the run report's schema and
can be merged into it (`merge_into`), replacing that target's skipped rows and estimates with measurements.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.build import engines as engines_build
from edgekd.build.artifacts import Artifact
from edgekd.bundle.files import extract_bundle, load_eval_samples, manifest_input_names, verify_bundle
from edgekd.errors import BundleError, EdgekdError
from edgekd.measure.quality import report_metric
from edgekd.measure.rows import MeasureSettings, measure_rows, require_a_measured_row
from edgekd.pipeline.layout import REPORT_JSON
from edgekd.pipeline.rundirs import claim_dir, remove_scratch_dir
from edgekd.report.builder import device_report
from edgekd.report.document import load_report, merged_report, publish_report
from edgekd.report.model import Row
from edgekd.runtimes import RUNTIMES, format_of, runtime_status
from edgekd.runtimes.ort_mobile_runtime import proxy_fields
from edgekd.samples import take
from edgekd.targets.profiles import Profile, device_mismatch_reason
from edgekd.targets.this_host import host_facts


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


@dataclass(frozen=True)
class ProfileResult:
    output_dir: Path
    bundle_dir: Path
    report: dict[str, Any]


def open_bundle(path: Path, work_dir: Path) -> Path:
    """A bundle directory as is, or a .tar / .tar.gz extracted safely into `work_dir/bundle`."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file() and tarfile.is_tarfile(path):
        target = work_dir / "bundle"
        remove_scratch_dir(target, work_dir)  # the copy extracted by an earlier profile run
        return extract_bundle(path, target)
    raise BundleError(f"bundle '{path}' does not exist or is neither a directory nor a tar archive")


def _settings(manifest: dict[str, Any], profile: Profile, threads: int | None) -> MeasureSettings:
    measure = manifest["recipe"]["measure"]
    threads = threads or profile.threads or os.cpu_count() or 1
    # the host profile keeps the run's throughput batch so its rows compare 1:1 with the run's report
    throughput = measure["throughput_batch_size"] if profile.device_class == "host" else max(profile.batch_sizes)
    return MeasureSettings.from_recipe(measure, min(threads, os.cpu_count() or threads), profile.name, throughput)


def _bundle_artifacts(manifest: dict[str, Any], profile: Profile) -> tuple[list[Artifact], dict[str, str]]:
    """The bundle's own files that this profile runs as they are (every ONNX variant, on the runtime that loads
    it, where the profile lists that runtime), and the reasons for those that would not measure what they claim
    on this machine."""
    artifacts = [Artifact(**a) for a in manifest["artifacts"]
                 if format_of(a["format"]).onnx_graph and a["runtime"] in profile.runtimes]  # fmt: skip
    specs = {s.artifact: s for s in engines_build.engine_specs()}
    skipped = {a.name: reason for a in artifacts
               if a.name in specs and (reason := engines_build.not_meaningful_here(specs[a.name]))}  # fmt: skip
    return artifacts, skipped


def _build_engines(
    manifest: dict[str, Any], profile: Profile, bundle_dir: Path, out_dir: Path, settings: MeasureSettings
) -> tuple[list[Artifact], dict[str, str], dict[str, Any], set[str], dict[str, Any]]:
    """Build what this device needs (OpenVINO IR, ORT format, TensorRT engines) into `out_dir`; returns the
    artifacts, the reasons for those not built, what was built, which of them failed to build, and what the
    builds recorded by kind (OpenVINO's sequence buckets, measured here on the bundle's calibration texts)."""
    sources = [a["path"] for a in manifest["artifacts"] if format_of(a["format"]).onnx_graph]
    if engines_build.FP32_ONNX in manifest.get("files", {}):  # engines build from the standard-op export, which
        sources.append(engines_build.FP32_ONNX)  # is not the ORT fp32 row's graph for a transformer
    build_section = manifest["recipe"].get("build", {})
    openvino_int8 = build_section.get("openvino_int8", "qdq")  # bundles before NNCF: qdq
    specs = [s for s in engines_build.specs_for(profile, sources, openvino_int8)
             if not format_of(s.format).onnx_graph]  # ONNX files travel in the bundle: nothing to build
    params = int(manifest["student"]["params"])
    spec = manifest["input"]
    device = {"input_name": manifest_input_names(manifest), "sample_shape": tuple(spec.get("max_shape",
              spec["shape"])[1:]), "max_batch": max(settings.throughput_batch_size, settings.eval_batch_size),
              "sequence_axis": "sequence" in spec["shape"],
              "sequence_buckets": build_section.get("openvino_sequence_buckets", True)}  # fmt: skip
    records: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    built: dict[str, Any] = {}
    failed: set[str] = set()
    for spec in specs:
        status = runtime_status(spec.runtime)  # build-only: TensorRT with trtexec alone builds, cannot run
        if not status.can_build:
            skipped[spec.artifact] = status.reason
            continue
        try:
            record = engines_build.build_engine(spec, bundle_dir, out_dir, profile, **device)
        except Exception as exc:  # a model the builder cannot parse is that row's failure, not a traceback
            skipped[spec.artifact] = f"build failed: {first_line(exc)}"
            failed.add(spec.artifact)
            continue
        built[spec.artifact] = spec.path
        engines_build.file_records(records, spec.artifact, record)
        if not status.usable:
            skipped[spec.artifact] = f"{status.reason}; the engine is built at {out_dir / spec.path}"
    return [engines_build.to_artifact(s, params) for s in specs], skipped, built, failed, records


def _add_device_figures(rows: list[Row], out_dir: Path, settings: MeasureSettings, inputs) -> None:
    """Rows of a runtime that measures more on the device get those figures too (TensorRT: its build record and
    GPU compute time per batch-1 run, from CUDA events with the input already on the device)."""
    for row in rows:
        probe = RUNTIMES[row.runtime].device_figures if row.runtime in RUNTIMES else None
        if row.ok and probe:
            row.extend(**probe(out_dir / row.path, take(inputs, slice(0, 1)), settings.policy.warmup_runs,
                               max(settings.policy.min_runs, 100)))  # fmt: skip


def profile_bundle(
    bundle: Path, profile: Profile, output_dir: Path | None = None, threads: int | None = None
) -> ProfileResult:
    """Verify `bundle`, build this profile's engines, measure every artifact, write report.json/.md."""
    mismatch = device_mismatch_reason(profile)
    if mismatch and profile.device_class != "mobile":  # mobile rows are labelled host proxies
        raise EdgekdError(f"profile '{profile.name}' describes another device: {mismatch}. Run `edgekd profile` "
                          "on that device, or pass -p host to measure this machine")  # fmt: skip
    bundle = Path(bundle)
    out_dir = Path(output_dir) if output_dir else bundle.resolve().parent / f"profile-{profile.name}"
    claim_dir(out_dir, "profile")  # engines, the extracted bundle and the report land here, nowhere else
    bundle_dir = open_bundle(bundle, out_dir)
    manifest = verify_bundle(bundle_dir)
    inputs, labels, reference = load_eval_samples(bundle_dir, manifest)
    settings = _settings(manifest, profile, threads)
    num_classes = int(manifest["task"]["num_classes"])
    metric = report_metric(manifest)
    engines, skipped, built, build_failed, records = _build_engines(manifest, profile, bundle_dir, out_dir, settings)
    shipped, not_here = _bundle_artifacts(manifest, profile)
    rows = measure_rows(shipped, bundle_dir, inputs, labels, settings, num_classes, not_here, reference, metric)
    engine_rows = measure_rows(engines, out_dir, inputs, labels, settings, num_classes, skipped, reference, metric)
    for row in engine_rows:
        if row.artifact in build_failed:
            row.fail(row.reason)
    _add_device_figures(engine_rows, out_dir, settings, inputs)
    for row in engine_rows:
        if format_of(row.format).host_proxy:
            row.extend(**proxy_fields(profile))
    rows += engine_rows
    report = device_report(manifest, profile.name, settings.threads, rows, built, bundle_dir, device_facts(), records)
    document = publish_report(report.to_json(), out_dir / REPORT_JSON, "the device report")
    require_a_measured_row(rows, manifest["input"], inputs)
    return ProfileResult(out_dir, bundle_dir, document)


def device_facts() -> dict[str, Any]:
    """Host facts plus, for each usable runtime whose artifacts are tied to the device, what they are tied to
    (TensorRT: version, GPU, compute capability)."""
    facts: dict[str, Any] = dict(host_facts())
    for name, runtime in RUNTIMES.items():
        if runtime.device_facts and runtime.status().usable:
            facts[name] = runtime.device_facts()
    return facts


def merge_into(run_report_path: Path, device_report: dict[str, Any]) -> dict[str, Any]:
    """Add a device report's rows to the run's report (`merged_report`) and publish it again, its verdicts and
    recommendations now over the device's rows too."""
    run_report_path = Path(run_report_path)
    if run_report_path.is_dir():
        run_report_path = run_report_path / REPORT_JSON
    origin = f"report '{run_report_path}'"
    report = merged_report(load_report(run_report_path), device_report, origin)
    return publish_report(report, run_report_path, f"{origin} after merging")


__all__ = ["ProfileResult", "device_facts", "merge_into", "open_bundle", "profile_bundle"]
