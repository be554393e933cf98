"""The engine plan of a run: which target profiles, which ONNX files engines build from, what this machine
builds and measures for them, and roofline estimates for the targets it cannot measure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekd.build import engines as engines_build
from edgekd.build.artifacts import Artifact
from edgekd.pipeline.layout import FP32_ONNX, quantized_onnx
from edgekd.recipe import BuildSection, TargetsSection
from edgekd.runtimes import format_of, get_runtime
from edgekd.targets.profiles import OpenvinoSection, Profile, load_profile
from edgekd.targets.roofline import roofline_cost


def target_profiles(section: TargetsSection, openvino_precision: str | None) -> list[Profile]:
    profiles = [load_profile(name) for name in dict.fromkeys(section.profiles)]
    if openvino_precision is not None:
        profiles = [replace(p, openvino=OpenvinoSection(openvino_precision)) for p in profiles]
    return profiles


def onnx_sources(variants: Iterable[str]) -> list[str]:
    """The ONNX files this run made (engines are built from them): the export and its quantized `variants`
    (the recipe's), not what lies around in the run directory."""
    return [FP32_ONNX, *(quantized_onnx(variant) for variant in variants)]


def host_specs(section: BuildSection, sources: list[str], profiles: list[Profile]) -> list[engines_build.EngineSpec]:
    """What this machine builds: the host profile's engines, the ORT-format models of mobile profiles
    (measured here as labelled proxies), and derived ONNX files (fp16) any profile runs, which travel in the
    bundle. Engines tied to a device (TensorRT) are built on it, or here when this host is such a device."""
    specs: dict[str, engines_build.EngineSpec] = {}
    for profile in profiles:
        for spec in engines_build.specs_for(profile, sources, section.openvino_int8):
            runtime = get_runtime(spec.runtime)
            wanted = profile.device_class in ("host", "mobile") or format_of(spec.format).onnx_graph
            device_only = runtime.built_on_device and profile.device_class != "host"
            switched_off = bool(runtime.off_switch) and not getattr(section, runtime.off_switch)
            if wanted and not (spec.is_source or device_only or switched_off):
                specs.setdefault(spec.artifact, spec)
    return list(specs.values())


def measured_here(built: list[Artifact], profiles: list[Profile]) -> list[Artifact]:
    """The built artifacts the host rows measure: the host profile's (mobile models get proxy rows per target)."""
    host = {s.artifact for p in profiles if p.device_class == "host" for s in engines_build.engine_specs()
            if s.runtime in p.runtimes and s.precision in p.precisions and not engines_build.not_meaningful_here(s)}
    return [a for a in built if a.name in host]


def target_estimates(profiles: list[Profile], sources: list[str], run_dir: Path) -> list[dict[str, Any]]:
    """Roofline lower bounds for every non-host target, from the fp32 graph's FLOPs and bytes."""
    targets = [p for p in profiles if p.device_class != "host"]
    if not targets:
        return []
    cost = roofline_cost(run_dir / engines_build.FP32_ONNX)
    return [e for p in targets for e in engines_build.estimates_for(p, engines_build.specs_for(p, sources), cost)]
