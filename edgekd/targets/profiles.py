"""Hardware profiles: a target as typed, validated TOML data (`profiles/*.toml`), and which ones this machine
can measure for real.

Profile data only; facts about the machine edgekd runs on come from `edgekd.targets.this_host`. The wheel
ships the top-level `profiles/` directory as the package `edgekd.profiles`. A source checkout reads
`profiles/` beside the package (so a team's edits take effect at once); an installed wheel reads the copy
inside it. A user's own profile is any TOML path.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from edgekd.errors import RecipeError, did_you_mean
from edgekd.recipe import _build as build_typed  # the recipe's validator: key paths + did-you-mean
from edgekd.runtimes import RUNTIMES, get_runtime, runtime_names, runtime_status
from edgekd.targets.this_host import host_facts, is_jetson, isa_flags

DEVICE_CLASSES = ("host", "x86", "jetson", "arm-sbc", "mobile")
PRECISIONS = ("fp32", "fp16", "int8")
MOBILE_PROVIDERS = ("XNNPACK", "NNAPI", "CoreML", "CPU")


@dataclass(frozen=True)
class PeakSection:
    """Dense peak throughput per precision in tera-operations per second (FLOPs for floats, OPs for int8);
    0 = unknown, so no estimate is made for that precision."""

    fp32: float = 0.0
    fp16: float = 0.0
    int8: float = 0.0


@dataclass(frozen=True)
class ToolchainSection:
    jetpack: str = ""  # e.g. "6.2"; empty where it does not apply
    tensorrt: str = ""  # the TensorRT major.minor that JetPack ships; engines only load on that version
    notes: str = ""


@dataclass(frozen=True)
class OpenvinoSection:
    # "f32" forces fp32 arithmetic; "auto" lets the CPU plugin pick (bf16 on CPUs that have it)
    inference_precision: str = "auto"


@dataclass(frozen=True)
class MobileSection:
    execution_providers: tuple[str, ...] = ()  # in the order the app should register them
    optimization_style: str = "Fixed"  # ORT-format optimisation: "Fixed" (portable) or "Runtime"


@dataclass(frozen=True)
class BudgetsSection:
    """Default budgets for `edgekd gate` on this target (0 = no budget)."""

    max_p50_ms: float = 0.0
    max_accuracy_drop: float = 0.0
    max_size_mb: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str
    device_class: str
    description: str = ""
    runtimes: tuple[str, ...] = ("onnxruntime",)
    precisions: tuple[str, ...] = ("fp32", "int8")
    threads: int = 0  # 0 = one per CPU core
    batch_sizes: tuple[int, ...] = (1,)
    peak_tops: PeakSection = field(default_factory=PeakSection)
    memory_bandwidth_gbps: float = 0.0  # GB/s (1e9 bytes); 0 = unknown
    isa_required: tuple[str, ...] = ()  # /proc/cpuinfo flags a CPU must have to measure this profile for real
    toolchain: ToolchainSection = field(default_factory=ToolchainSection)
    openvino: OpenvinoSection = field(default_factory=OpenvinoSection)
    mobile: MobileSection = field(default_factory=MobileSection)
    budgets: BudgetsSection = field(default_factory=BudgetsSection)
    source: str = ""  # the file it came from; set by the loader

    def __post_init__(self) -> None:
        _check_profile(self)

    def peak_ops_per_s(self, precision: str) -> float:
        return getattr(self.peak_tops, precision, 0.0) * 1e12


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RecipeError(f"profile key '{key}': unknown value '{value}'{did_you_mean(value, choices)}; "
                          f"choose from {', '.join(choices)}")  # fmt: skip


def _check_profile(p: Profile) -> None:
    _choice("device_class", p.device_class, DEVICE_CLASSES)
    _choice("openvino.inference_precision", p.openvino.inference_precision, ("auto", "f32"))
    _choice("mobile.optimization_style", p.mobile.optimization_style, ("Fixed", "Runtime"))
    for key, values, choices in (("runtimes", p.runtimes, runtime_names()), ("precisions", p.precisions, PRECISIONS),
                                 ("mobile.execution_providers", p.mobile.execution_providers, MOBILE_PROVIDERS)):
        for value in values:
            _choice(key, value, choices)
    checks = [
        (p.threads >= 0, "threads", "must be >= 0 (0 = one per core)"),
        (bool(p.batch_sizes) and all(b >= 1 for b in p.batch_sizes), "batch_sizes", "must be a list of ints >= 1"),
        (p.memory_bandwidth_gbps >= 0, "memory_bandwidth_gbps", "must be >= 0"),
        (all(getattr(p.peak_tops, k) >= 0 for k in PRECISIONS), "peak_tops", "figures must be >= 0"),
    ]  # fmt: skip
    for runtime in p.runtimes:  # what a runtime needs from the profiles that list it (ORT Mobile: the providers)
        probe = get_runtime(runtime).profile_problem
        problem = probe(p) if probe else None
        if problem:
            checks.append((False, *problem))
    for ok, key, why in checks:
        if not ok:
            raise RecipeError(f"profile key '{key}' {why}")


def profiles_dir() -> Path | None:
    """`profiles/` beside the package in a source checkout or editable install, else None."""
    candidate = Path(__file__).resolve().parents[2] / "profiles"  # edgekd/targets/ -> the checkout
    return candidate if candidate.is_dir() else None


def _shipped_texts() -> dict[str, tuple[str, str]]:
    """name -> (TOML text, where it came from) for every shipped profile."""
    local = profiles_dir()
    if local is not None:
        return {p.stem: (p.read_text(encoding="utf-8"), str(p)) for p in sorted(local.glob("*.toml"))}
    package = resources.files("edgekd.profiles")
    return {
        item.name.removesuffix(".toml"): (item.read_text(encoding="utf-8"), f"edgekd.profiles/{item.name}")
        for item in sorted(package.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".toml")
    }


def shipped_profile_names() -> list[str]:
    return list(_shipped_texts())


def parse_profile(text: str, origin: str) -> Profile:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"profile '{origin}' is not valid TOML: {exc}") from None
    try:
        profile = build_typed(Profile, data)
    except RecipeError as exc:
        raise RecipeError(f"profile '{origin}': {str(exc).replace('recipe key', 'profile key')}") from None
    except TypeError as exc:  # a required key (name, device_class) is missing
        raise RecipeError(f"profile '{origin}': {exc}; every profile needs 'name' and 'device_class'") from None
    return replace(profile, source=origin)


def profile_text(name_or_path: str | Path) -> tuple[str, str]:
    """(TOML text, where it came from) of a shipped profile by name or a user's profile file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RecipeError(f"profile file '{path}' does not exist")
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise RecipeError(f"profile file '{path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    texts = _shipped_texts()
    if str(name_or_path) not in texts:
        raise RecipeError(f"no profile '{name_or_path}'{did_you_mean(str(name_or_path), texts)}; "
                          f"known: {', '.join(texts)} (or pass a .toml path)")  # fmt: skip
    return texts[str(name_or_path)]


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or a user's profile file by path. `host` gets its detected runtimes."""
    profile = parse_profile(*profile_text(name_or_path))
    return resolve_host(profile) if profile.device_class == "host" else profile


def resolve_host(profile: Profile) -> Profile:
    """The host profile plus the runtimes that join it wherever they are usable (TensorRT where an NVIDIA GPU
    and TensorRT are present)."""
    joining = tuple(name for name, runtime in RUNTIMES.items() if runtime.joins_host and name not in profile.runtimes
                    and measurable_reason(replace(profile, runtimes=(name,))) is None)  # fmt: skip
    return replace(profile, runtimes=(*profile.runtimes, *joining)) if joining else profile


def device_mismatch_reason(profile: Profile) -> str | None:
    """None when this machine is the kind of device `profile` describes (class, board, instruction set),
    else why not. Runtimes are not considered: a Jetson without TensorRT is still a Jetson."""
    facts = host_facts()
    if profile.device_class == "mobile":
        return "a phone is not at hand; the ORT-format model is measured on this host as a labelled proxy"
    if profile.device_class == "jetson" and not is_jetson():
        return "this machine is not a Jetson (no /etc/nv_tegra_release)"
    if profile.device_class == "arm-sbc" and profile.name not in str(facts.get("board", "")).lower().replace(" ", "-"):
        return f"this machine is not a {profile.name} (board: {facts.get('board') or 'unknown'})"
    if profile.device_class == "x86" and facts["machine"] not in ("x86_64", "AMD64"):
        return f"this machine is {facts['machine']}, not x86_64"
    missing = [flag for flag in profile.isa_required if flag not in isa_flags()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}"
    return None


def measurable_reason(profile: Profile) -> str | None:
    """None when this machine can measure `profile` for real (right device, every runtime usable)."""
    reason = device_mismatch_reason(profile)
    if reason:
        return reason
    for runtime in profile.runtimes:  # a runtime that needs a GPU says so first (TensorRT: "no NVIDIA GPU")
        reason = runtime_status(runtime).why_not
        if reason:
            return reason
    return None
