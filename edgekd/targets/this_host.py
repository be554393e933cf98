"""Facts about the machine a measurement ran on, recorded in every report: CPU and its instruction-set
flags, GPU and driver, and on a Jetson the L4T / JetPack release, power mode and clocks where readable."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

# Instruction-set flags (as /proc/cpuinfo spells them) that change which kernels a runtime picks.
ISA_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                         "amx_bf16", "amx_int8", "asimd", "asimddp", "fphp", "bf16", "i8mm")  # fmt: skip


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return ""


def _run(args: list[str], timeout: float = 10) -> str:
    if shutil.which(args[0]) is None:
        return ""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith(("model name", "Model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def isa_flags() -> tuple[str, ...]:
    """The CPU's flags from /proc/cpuinfo ('flags' on x86, 'Features' on Arm), all of them."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith(("flags", "Features")):
            return tuple(line.split(":", 1)[1].split())
    return ()


@functools.cache
def nvidia_gpus() -> tuple[dict[str, str], ...]:
    """Name, driver, memory and compute capability of each NVIDIA GPU that nvidia-smi lists; on a Jetson
    without nvidia-smi (JetPack 5), its integrated GPU as CUDA reports it."""
    fields = ["name", "driver_version", "memory.total", "compute_cap"]
    out = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"])
    gpus = tuple(dict(zip(fields, (v.strip() for v in line.split(",")), strict=False))
                 for line in out.splitlines() if line.strip())  # fmt: skip
    if gpus or not is_jetson():
        return gpus
    import torch

    if not torch.cuda.is_available():
        return ({"name": f"integrated GPU of {board_model() or 'Jetson'}", "driver_version": "", "memory.total": "",
                 "compute_cap": ""},)  # fmt: skip
    major, minor = torch.cuda.get_device_capability(0)
    return ({"name": torch.cuda.get_device_name(0), "driver_version": "", "memory.total": "",
             "compute_cap": f"{major}.{minor}"},)  # fmt: skip


def is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").is_file()


def board_model() -> str:
    """The board name from the device tree (Raspberry Pi, Jetson), '' on a PC."""
    return _read("/proc/device-tree/model")


def jetson_facts() -> dict[str, object]:
    """L4T release, JetPack version, nvpmodel power mode and GPU / CPU clocks where readable; {} elsewhere."""
    if not is_jetson():
        return {}
    facts: dict[str, object] = {"l4t_release": _read("/etc/nv_tegra_release").splitlines()[0]}
    jetpack = _run(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"])
    if jetpack:
        facts["jetpack"] = jetpack
    mode = _run(["nvpmodel", "-q"])
    if mode:
        facts["power_mode"] = mode.splitlines()[0].removeprefix("NV Power Mode:").strip()
    for devfreq in sorted(Path("/sys/class/devfreq").glob("*")):  # e.g. 17000000.gpu (JP6), 17000000.ga10b (JP5)
        if "gpu" in devfreq.name or "ga10b" in devfreq.name:
            cur = _read(str(devfreq / "cur_freq"))
            if cur.isdigit():
                facts["gpu_clock_hz"] = int(cur)
                break
    return facts


def host_facts() -> dict[str, object]:
    wanted = set(isa_flags())
    facts: dict[str, object] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "isa": [flag for flag in ISA_FLAGS_OF_INTEREST if flag in wanted],
    }
    if board_model():
        facts["board"] = board_model()
    if nvidia_gpus():
        facts["gpus"] = list(nvidia_gpus())
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        facts["cpu_governor"] = governor
    clock_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if clock_khz.isdigit():
        facts["cpu0_clock_hz"] = int(clock_khz) * 1000
    facts.update(jetson_facts())
    return facts


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
