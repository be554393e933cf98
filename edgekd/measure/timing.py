"""Timing a runner: latency statistics and throughput, each figure from this run.

Method (the same as OpenVINO's benchmark_app where it has one): warm-up runs are discarded, then timed runs
continue until BOTH a minimum count and a minimum duration are reached — a fast model gets many samples and a
slow one is not cut short — each timed with `time.perf_counter_ns`. Percentiles use the nearest-rank method.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from edgekd import samples
from edgekd.errors import RecipeError, did_you_mean
from edgekd.runtimes.base import Runner
from edgekd.samples import Inputs

# A row whose standard deviation exceeds this fraction of its mean is flagged: the machine was busy, or the
# runtime's timing is bimodal, and its percentiles should not be trusted to a few percent.
NOISY_CV = 0.25


@dataclass(frozen=True)
class TimingPolicy:
    warmup_runs: int = 10
    min_runs: int = 100
    min_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.min_runs < 1 or self.warmup_runs < 0 or self.min_seconds < 0:
            raise RecipeError(f"timing policy {self} is invalid: min_runs must be >= 1, warm-up and seconds >= 0 "
                              "(a recipe's 0 means the preset's value: resolve with timing_policy())")  # fmt: skip


# Documented presets (recipe key `measure.preset`). `quick` keeps a CI run or a test in seconds and is noisy;
# `default` is what a report should be read from; `thorough` is for a decision between close candidates.
TIMING_PRESETS: dict[str, TimingPolicy] = {
    "quick": TimingPolicy(warmup_runs=3, min_runs=20, min_seconds=0.1),
    "default": TimingPolicy(warmup_runs=10, min_runs=100, min_seconds=2.0),
    "thorough": TimingPolicy(warmup_runs=50, min_runs=1000, min_seconds=10.0),
}


def timing_policy(preset: str, warmup_runs: int = 0, min_runs: int = 0, min_seconds: float = 0.0) -> TimingPolicy:
    """The preset's policy with any non-zero field overriding it (0 = take the preset's value)."""
    if preset not in TIMING_PRESETS:
        choices = ", ".join(TIMING_PRESETS)
        raise RecipeError(f"recipe key 'measure.preset': unknown preset '{preset}'"
                          f"{did_you_mean(preset, TIMING_PRESETS)}; choose from {choices}")  # fmt: skip
    policy = TIMING_PRESETS[preset]
    overrides = {"warmup_runs": warmup_runs, "min_runs": min_runs, "min_seconds": min_seconds}
    return replace(policy, **{k: v for k, v in overrides.items() if v})


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over `runs` timed runs; `cv` is std / mean (the spread, unitless)."""

    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    runs: int
    cv: float = 0.0
    seconds: float = 0.0  # wall time of the timed runs

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @property
    def noisy(self) -> bool:
        return self.cv > NOISY_CV


def nearest_rank_percentile(sorted_values: list[float], percent: float) -> float:
    """The smallest value with at least `percent`% of the values at or below it (rank = ceil(p/100 * n))."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_ms(samples_ms: list[float]) -> LatencyStats:
    """Statistics of per-run times; std is the sample standard deviation (n - 1)."""
    ordered = sorted(samples_ms)
    mean = sum(ordered) / len(ordered)
    variance = sum((x - mean) ** 2 for x in ordered) / max(len(ordered) - 1, 1)
    std = math.sqrt(variance)
    return LatencyStats(
        p50=nearest_rank_percentile(ordered, 50),
        p90=nearest_rank_percentile(ordered, 90),
        p95=nearest_rank_percentile(ordered, 95),
        p99=nearest_rank_percentile(ordered, 99),
        mean=mean,
        std=std,
        min=ordered[0],
        max=ordered[-1],
        runs=len(ordered),
        cv=std / mean if mean > 0 else 0.0,
        seconds=sum(ordered) / 1e3,
    )


def time_runs(runner: Runner, batch: Inputs, policy: TimingPolicy) -> list[float]:
    """Per-run wall times in milliseconds, after warm-up."""
    return time_cycling(runner, [batch], policy)


def time_cycling(runner: Runner, batches: list[Inputs], policy: TimingPolicy) -> list[float]:
    """Per-run wall times in milliseconds, each run on the next of `batches` (round robin), after warm-up."""
    for i in range(policy.warmup_runs):
        runner(batches[i % len(batches)])
    samples_ns: list[int] = []
    min_ns = int(policy.min_seconds * 1e9)
    started = time.perf_counter_ns()
    while len(samples_ns) < policy.min_runs or time.perf_counter_ns() - started < min_ns:
        batch = batches[len(samples_ns) % len(batches)]
        t0 = time.perf_counter_ns()
        runner(batch)
        samples_ns.append(time.perf_counter_ns() - t0)
    return [ns / 1e6 for ns in samples_ns]


def repeat_to_batch(inputs: Inputs, batch_size: int) -> Inputs:
    """A batch of `batch_size` real samples (cycling through `inputs` if it has fewer)."""
    return samples.repeat_to_batch(inputs, batch_size)


def measure_latency(runner: Runner, sample: Inputs, policy: TimingPolicy) -> LatencyStats:
    """Latency at batch 1 on one real sample."""
    return summarize_ms(time_runs(runner, samples.take(sample, slice(0, 1)), policy))


def measure_latency_real_lengths(runner: Runner, inputs: Inputs, policy: TimingPolicy) -> dict[str, Any] | None:
    """Latency at batch 1 over the eval samples, each cut to its real token count (what an app feeds), round
    robin; with the lengths it ran at. None for inputs without an attention mask (no sequence to cut)."""
    lengths = samples.real_lengths(inputs)
    if lengths is None:
        return None
    batches = [samples.trim_to_length(samples.take(inputs, slice(i, i + 1)), max(int(n), 1))
               for i, n in enumerate(lengths)]  # fmt: skip
    stats = summarize_ms(time_cycling(runner, batches, policy))
    return {**stats.to_dict(), "lengths": {"min": int(lengths.min()), "p50": float(np.median(lengths)),
                                           "max": int(lengths.max()), "mean": float(lengths.mean()),
                                           "samples": int(len(lengths)),
                                           "padded_to": int(inputs[samples.MASK].shape[1])}}


def measure_throughput(runner: Runner, inputs: Inputs, batch_size: int, policy: TimingPolicy) -> float:
    """Samples per second at `batch_size`, from the mean time of repeated full batches of real inputs."""
    samples_ms = time_runs(runner, repeat_to_batch(inputs, batch_size), policy)
    return batch_size / (sum(samples_ms) / len(samples_ms) / 1e3)
