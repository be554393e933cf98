"""Timing a runner: latency statistics and throughput, each figure from this run.

Method (the same as OpenVINO's benchmark_app where it has one): warm-up runs are discarded, then timed runs
continue until BOTH a minimum count and a minimum duration are reached — a fast model gets many samples and a
slow one is not cut short — each timed with `time.perf_counter_ns`. Percentiles use the nearest-rank method.
The timed runs are split into rounds (same total budget) so that drift between rounds shows and intervals
reflect it (`measure.stats`); `RoundTimer` takes them one at a time, so that several artifacts can take turns
(`measure.interleave`).
The timed call is the runner's bound call (`bind`): inputs set once, no result dict, no output copy.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from edgekd import samples
from edgekd.errors import RecipeError, did_you_mean
from edgekd.measure import stats
from edgekd.runtimes.base import Runner, TimedCall
from edgekd.samples import Inputs

# A row is flagged noisy when its round medians wander apart by more than this (robust spread: 1.4826 x MAD of
# the round medians over their median). Rare huge outliers inside a round do not move a median; a machine whose
# speed drifts during the run, or a runtime whose timing is bimodal, does.
NOISY_ROUND_SPREAD = 0.10
NOISY_CV = NOISY_ROUND_SPREAD  # the name reports and benchmarks used before rounds; same meaning now
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class TimingPolicy:
    """Warm-up runs, then `rounds` rounds that together take at least `min_runs` runs and `min_seconds`
    (each round its share of both), so the spread between rounds can be seen within the same time budget."""

    warmup_runs: int = 10
    min_runs: int = 100
    min_seconds: float = 2.0
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.min_runs < 1 or self.warmup_runs < 0 or self.min_seconds < 0 or self.rounds < 1:
            raise RecipeError(f"timing policy {self} is invalid: min_runs must be >= 1, rounds >= 1, warm-up and "
                              "seconds >= 0 (a recipe's 0 means the preset's value: resolve with timing_policy())")

    def per_round(self) -> tuple[int, float]:
        """(minimum runs, minimum seconds) of one round."""
        return math.ceil(self.min_runs / self.rounds), self.min_seconds / self.rounds


# Documented presets (recipe key `measure.preset`). `quick` keeps a CI run or a test in seconds and is noisy;
# `default` is what a report should be read from; `thorough` is for a decision between close candidates.
# Rounds split the same time budget (a round of `default` is 0.2 s: long enough for a stable median).
TIMING_PRESETS: dict[str, TimingPolicy] = {
    "quick": TimingPolicy(warmup_runs=3, min_runs=20, min_seconds=0.1, rounds=5),
    "default": TimingPolicy(warmup_runs=10, min_runs=100, min_seconds=2.0, rounds=10),
    "thorough": TimingPolicy(warmup_runs=50, min_runs=1000, min_seconds=10.0, rounds=20),
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
    """Milliseconds over `runs` timed runs in `rounds` rounds. `cv` is std / mean (kept for old readers: one
    outlier inflates it); `round_spread` is the robust spread of the round medians, which decides `noisy`.
    `p50_ci95` etc. are 95% intervals; `loop_overhead_ms` is the timing loop's own cost per call (an empty call);
    `runtime_p50` (where the runtime times itself) is the runtime's own median, `call_overhead_ms` = p50 minus it.
    """

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
    rounds: int = 1
    round_p50: tuple[float, ...] = ()
    round_spread: float | None = None
    p50_ci95: tuple[float, float] | None = None
    p90_ci95: tuple[float, float] | None = None
    p95_ci95: tuple[float, float] | None = None
    p99_ci95: tuple[float, float] | None = None
    tail_ratio: float | None = None  # p99 / p50
    outliers: int | None = None  # runs beyond Q3 + 3 x IQR
    loop_overhead_ms: float | None = None
    runtime_p50: float | None = None
    runtime_p50_ci95: tuple[float, float] | None = None
    call_overhead_ms: float | None = None
    # where the rounds were interleaved with other artifacts' (edgekd.measure.interleave): how many artifacts
    # took turns, this one's place in each round (0 = first) and when each of its rounds began (s since the first)
    interleaved_across: int | None = None
    round_slots: tuple[int, ...] | None = None
    round_start_s: tuple[float, ...] | None = None
    # where enough artifacts took turns (edgekd.measure.drift): the speed factor all of them shared per round, its
    # spread (the machine's drift) and this artifact's round spread once it is divided out (which decides `noisy`)
    round_factors: tuple[float, ...] | None = None
    shared_drift: float | None = None
    own_round_spread: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: intervals as [low, high], and fields this measurement has no value for left out."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})

    @property
    def spread(self) -> float | None:
        """The spread that judges this row: its own where the machine's shared drift could be divided out."""
        return self.own_round_spread if self.own_round_spread is not None else self.round_spread

    @property
    def noisy(self) -> bool:
        return self.spread is not None and self.spread > NOISY_ROUND_SPREAD

    def noisy_message(self) -> str:
        """What was seen, for the row's `noisy` flag."""
        low, high = self.p50_ci95 or (self.p50, self.p50)
        if self.own_round_spread is not None:
            what = (f"vary by {self.own_round_spread:.0%} against the other artifacts timed in the same rounds (robust "
                    f"spread once the machine's shared drift of {self.shared_drift:.0%} is divided out, > "
                    f"{NOISY_ROUND_SPREAD:.0%}): this runtime's timing is unstable here (bimodal, or disturbed by "
                    "its own threads)")  # fmt: skip
        else:
            what = (f"vary by {self.round_spread:.0%} (robust spread, > {NOISY_ROUND_SPREAD:.0%}): the machine's "
                    "speed drifted during the run or the runtime's timing is bimodal")
        return (f"the medians of {self.rounds} timing rounds (from {min(self.round_p50):.4g} to "
                f"{max(self.round_p50):.4g} ms) {what}; p50 95% interval {low:.4g}-{high:.4g} ms; re-measure before "
                "trusting small differences")


def nearest_rank_percentile(sorted_values: list[float], percent: float) -> float:
    """The smallest value with at least `percent`% of the values at or below it (rank = ceil(p/100 * n))."""
    return stats.nearest_rank(sorted_values, percent)


def summarize_rounds(rounds: list[list[float]], runtime_rounds: list[list[float]] | None = None,
                     loop_overhead_ms: float | None = None) -> LatencyStats:  # fmt: skip
    """Statistics of per-run times (ms) taken in rounds; std is the sample standard deviation (n - 1)."""
    arrays = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    ordered = np.sort(np.concatenate(arrays))
    mean = float(ordered.mean())
    std = float(ordered.std(ddof=1)) if len(ordered) > 1 else 0.0
    point = {p: stats.nearest_rank(ordered, p) for p in PERCENTILES}
    round_p50 = tuple(float(np.median(r)) for r in arrays)
    intervals = {f"p{p}_ci95": stats.percentile_interval(arrays, ordered, p) for p in PERCENTILES}
    runtime: dict[str, Any] = {}
    if runtime_rounds:
        own = [np.asarray(r, dtype=float) for r in runtime_rounds if len(r)]
        own_sorted = np.sort(np.concatenate(own))
        runtime_p50 = stats.nearest_rank(own_sorted, 50)
        runtime = {"runtime_p50": runtime_p50, "runtime_p50_ci95": stats.percentile_interval(own, own_sorted, 50),
                   "call_overhead_ms": max(point[50] - runtime_p50, 0.0)}  # fmt: skip
    return LatencyStats(
        p50=point[50], p90=point[90], p95=point[95], p99=point[99],
        mean=mean, std=std, min=float(ordered[0]), max=float(ordered[-1]), runs=len(ordered),
        cv=std / mean if mean > 0 else 0.0, seconds=float(ordered.sum()) / 1e3,
        rounds=len(arrays), round_p50=round_p50,
        round_spread=stats.relative_mad(round_p50) if len(arrays) >= 3 else None,  # too few rounds to judge
        tail_ratio=point[99] / point[50] if point[50] > 0 else None, outliers=stats.outlier_count(ordered),
        loop_overhead_ms=loop_overhead_ms, **intervals, **runtime,
    )  # fmt: skip


def summarize_ms(samples_ms: list[float]) -> LatencyStats:
    """Statistics of per-run times taken in one round (no spread between rounds to judge noise from)."""
    return summarize_rounds([samples_ms])


def bind_runner(runner: Runner, batch: Inputs) -> TimedCall:
    """The cheapest honest call of `runner` on `batch`: its own `bind` where it has one, else its plain call."""
    bind = getattr(runner, "bind", None)
    return bind(batch) if bind is not None else TimedCall(lambda: runner(batch))


@dataclass
class TimedRounds:
    """Per-run wall times (ms) by round, and the runtime's own times where it reports them."""

    wall: list[list[float]]
    runtime: list[list[float]] | None = None


def time_round(call: TimedCall, min_runs: int, min_seconds: float) -> tuple[list[float], list[float] | None]:
    """One round: runs until both `min_runs` and `min_seconds` are reached; wall ms and runtime ms per run."""
    samples_ns: list[int] = []
    own: list[float] | None = [] if call.runtime_ms is not None else None
    run, clock, min_ns = call.run, time.perf_counter_ns, int(min_seconds * 1e9)
    started = clock()
    while len(samples_ns) < min_runs or clock() - started < min_ns:
        t0 = clock()
        run()
        samples_ns.append(clock() - t0)
        if own is not None:
            own.append(call.runtime_ms())  # type: ignore[misc]  # outside the timed interval
    return [ns / 1e6 for ns in samples_ns], own


class RoundTimer:
    """Timed runs of one bound call, one round at a time on request: what lets a coordinator take turns between
    artifacts (round r of every artifact before round r + 1 of any). Warm-up runs happen on construction."""

    def __init__(self, runner: Runner, batch: Inputs, policy: TimingPolicy) -> None:
        self.call = bind_runner(runner, batch)
        self.policy = policy
        self.timed = TimedRounds([], [] if self.call.runtime_ms is not None else None)
        for _ in range(policy.warmup_runs):
            self.call.run()

    def rewarm_runs(self) -> int:
        """Untimed runs before a round that follows other artifacts' turns: their runs left this one's caches
        and thread pool cold. The preset's warm-up, spread over its rounds (at least one)."""
        return max(1, math.ceil(self.policy.warmup_runs / self.policy.rounds))

    def round(self, rewarm: int = 0) -> None:
        """`rewarm` untimed runs, then one round of `policy.per_round()` timed runs."""
        for _ in range(rewarm):
            self.call.run()
        wall, own = time_round(self.call, *self.policy.per_round())
        self.timed.wall.append(wall)
        if self.timed.runtime is not None and own is not None:
            self.timed.runtime.append(own)


def time_rounds(runner: Runner, batch: Inputs, policy: TimingPolicy) -> TimedRounds:
    """Warm-up, then `policy.rounds` rounds of timed runs of the bound call."""
    timer = RoundTimer(runner, batch, policy)
    for _ in range(policy.rounds):
        timer.round()
    return timer.timed


def time_runs(runner: Runner, batch: Inputs, policy: TimingPolicy) -> list[float]:
    """Per-run wall times in milliseconds, after warm-up, all rounds together."""
    return [x for r in time_rounds(runner, batch, policy).wall for x in r]


def loop_overhead_ms(runs: int = 2000) -> float:
    """Median cost of the timing loop around an empty call: what every sample carries besides the model."""
    wall, _ = time_round(TimedCall(lambda: None), runs, 0.0)
    return stats.nearest_rank(sorted(wall), 50)


def time_cycling(runner: Runner, batches: list[Inputs], policy: TimingPolicy) -> list[float]:
    """Per-run wall times in milliseconds, each run on the next of `batches` (round robin), after warm-up over
    every batch: a runtime that compiles kernels per input shape (OpenVINO's CPU plugin, on each new sequence
    length) pays that once per shape, which an app in steady state has long paid; timing it would rank such a
    runtime by its first calls (MiniLM-3L's int8 IR: 5.8 ms per text with new lengths in the timed runs, 0.9
    warm)."""
    for i in range(max(policy.warmup_runs, len(batches))):
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


def latency_timer(runner: Runner, sample: Inputs, policy: TimingPolicy) -> RoundTimer:
    """The batch-1 latency timer on one real sample (the first), warmed up, no round taken yet."""
    return RoundTimer(runner, samples.take(sample, slice(0, 1)), policy)


def latency_stats(timed: TimedRounds) -> LatencyStats:
    """The latency figures of rounds taken, beside the timing loop's own cost."""
    return summarize_rounds(timed.wall, timed.runtime, loop_overhead_ms())


def measure_latency(runner: Runner, sample: Inputs, policy: TimingPolicy) -> LatencyStats:
    """Latency at batch 1 on one real sample, in rounds, beside the timing loop's own cost."""
    return latency_stats(time_rounds(runner, samples.take(sample, slice(0, 1)), policy))


def measure_latency_real_lengths(runner: Runner, inputs: Inputs, policy: TimingPolicy) -> dict[str, Any] | None:
    """Latency at batch 1 over the eval samples, each cut to its real token count (what an app feeds), round
    robin; with the lengths it ran at. None for inputs without an attention mask (no sequence to cut)."""
    lengths = samples.real_lengths(inputs)
    if lengths is None:
        return None
    batches = [samples.trim_to_length(samples.take(inputs, slice(i, i + 1)), max(int(n), 1))
               for i, n in enumerate(lengths)]  # fmt: skip
    latency = summarize_ms(time_cycling(runner, batches, policy))
    return {**latency.to_dict(), "lengths": {"min": int(lengths.min()), "p50": float(np.median(lengths)),
                                             "max": int(lengths.max()), "mean": float(lengths.mean()),
                                             "samples": int(len(lengths)),
                                             "padded_to": int(inputs[samples.MASK].shape[1])}}


def measure_throughput(runner: Runner, inputs: Inputs, batch_size: int, policy: TimingPolicy) -> float:
    """Samples per second at `batch_size`, from the mean time of repeated full batches of real inputs."""
    samples_ms = time_runs(runner, repeat_to_batch(inputs, batch_size), policy)
    return batch_size / (sum(samples_ms) / len(samples_ms) / 1e3)
