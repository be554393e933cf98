"""Measuring a runner: latency, throughput and accuracy, each figure from this run.

Timing: warm-up runs are discarded, then timed runs continue until both a minimum count and a minimum
duration are reached (so a fast model gets many samples and a slow one is not cut short), with
`time.perf_counter_ns`. Percentiles use the nearest-rank method, as OpenVINO's benchmark_app does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from edgekd.runtimes.base import Runner


@dataclass(frozen=True)
class TimingPolicy:
    warmup_runs: int = 10
    min_runs: int = 100
    min_seconds: float = 1.0


@dataclass(frozen=True)
class LatencyStats:
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    runs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def nearest_rank_percentile(sorted_values: list[float], percent: float) -> float:
    """The smallest value with at least `percent`% of the values at or below it."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_ms(samples_ms: list[float]) -> LatencyStats:
    ordered = sorted(samples_ms)
    mean = sum(ordered) / len(ordered)
    variance = sum((x - mean) ** 2 for x in ordered) / max(len(ordered) - 1, 1)
    return LatencyStats(
        p50=nearest_rank_percentile(ordered, 50),
        p90=nearest_rank_percentile(ordered, 90),
        p95=nearest_rank_percentile(ordered, 95),
        p99=nearest_rank_percentile(ordered, 99),
        mean=mean,
        std=math.sqrt(variance),
        min=ordered[0],
        max=ordered[-1],
        runs=len(ordered),
    )


def time_runs(runner: Runner, batch: np.ndarray, policy: TimingPolicy) -> list[float]:
    """Per-run wall times in milliseconds, after warm-up."""
    for _ in range(policy.warmup_runs):
        runner(batch)
    samples_ns: list[int] = []
    min_ns = int(policy.min_seconds * 1e9)
    started = time.perf_counter_ns()
    while len(samples_ns) < policy.min_runs or time.perf_counter_ns() - started < min_ns:
        t0 = time.perf_counter_ns()
        runner(batch)
        samples_ns.append(time.perf_counter_ns() - t0)
    return [ns / 1e6 for ns in samples_ns]


def measure_latency(runner: Runner, sample: np.ndarray, policy: TimingPolicy) -> LatencyStats:
    """Latency at batch 1 on one real sample."""
    return summarize_ms(time_runs(runner, sample[:1], policy))


def measure_throughput(runner: Runner, inputs: np.ndarray, batch_size: int, policy: TimingPolicy) -> float:
    """Samples per second at `batch_size`, from the mean time of repeated full batches of real inputs."""
    batch = np.resize(inputs, (batch_size, *inputs.shape[1:])).astype(inputs.dtype)
    samples_ms = time_runs(runner, batch, policy)
    return batch_size / (sum(samples_ms) / len(samples_ms) / 1e3)


def predict(runner: Runner, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([runner(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def top1_agreement(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == teacher_logits.argmax(axis=1)).mean())
