"""Measuring artifacts: timing (`timing`), output quality against the teacher (`quality`), static graph cost
(`graph`), one artifact's measuring session (`session`) in its worker process (`worker`), and the coordinator that
takes the workers' latency rounds in turns (`interleave`). The names below are the stable public surface."""

from edgekd.measure.quality import (
    STAGES,
    accuracy,
    drop_by_stage,
    fidelity,
    mean_cosine,
    mean_kl,
    neighbour_accuracy,
    predict,
    top1_agreement,
)
from edgekd.measure.timing import (
    NOISY_CV,
    NOISY_ROUND_SPREAD,
    TIMING_PRESETS,
    LatencyStats,
    TimingPolicy,
    measure_latency,
    measure_throughput,
    nearest_rank_percentile,
    summarize_ms,
    summarize_rounds,
    time_runs,
    timing_policy,
)

__all__ = [
    "NOISY_CV", "NOISY_ROUND_SPREAD", "STAGES", "TIMING_PRESETS", "LatencyStats", "TimingPolicy", "accuracy",
    "drop_by_stage", "fidelity", "mean_cosine", "mean_kl", "measure_latency", "measure_throughput",
    "nearest_rank_percentile", "neighbour_accuracy", "predict", "summarize_ms", "summarize_rounds", "time_runs",
    "timing_policy", "top1_agreement",
]  # fmt: skip
