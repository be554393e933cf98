"""Same-run comparison (`edgekd gate --rebench BASELINE`): the baseline's and the candidate's artifacts are
measured again here, in one process, interleaved in ABBA rounds, so a busy spell on a shared CI runner slows
both alike instead of deciding the verdict.

Each round times A (baseline), B (candidate), B, A for a short segment each; the round's ratio is the median
of its B runs over the median of its A runs (per percentile). The verdict on `max_p50_increase_pct` (and
`max_p95_increase_pct`) comes from the median of the round ratios and its 95% bootstrap interval: pass when
the whole interval is within the budget, fail when the whole interval breaks it, and while it straddles the
budget more rounds are taken, up to a cap, before answering inconclusive.
"""

from __future__ import annotations

import fnmatch
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.budgets import BUDGET_SPECS
from edgekd.build.artifacts import Artifact, load_runner
from edgekd.bundle.files import extract_bundle, load_eval_samples, verify_bundle
from edgekd.errors import BundleError
from edgekd.gate import INCONCLUSIVE, Check, interval_verdict
from edgekd.measure import stats
from edgekd.measure.timing import bind_runner, time_round
from edgekd.pipeline.layout import MANIFEST
from edgekd.runtimes.base import TimedCall

REBENCH_BUDGETS = {"max_p50_increase_pct": 50, "max_p95_increase_pct": 95}  # budget -> percentile compared


@dataclass(frozen=True)
class RebenchPolicy:
    """ABBA rounds: `rounds` first, then `extra_rounds` at a time while inconclusive, at most `max_rounds`."""

    rounds: int = 10
    extra_rounds: int = 10
    max_rounds: int = 40
    segment_seconds: float = 0.05  # each A or B segment of a round
    segment_runs: int = 20  # and at least this many runs
    warmup_runs: int = 20


@dataclass(frozen=True)
class Side:
    """One bundle opened for re-measuring: its directory, manifest, artifacts by name and one eval sample."""

    bundle_dir: Path
    manifest: dict[str, Any]
    artifacts: dict[str, Artifact]
    sample: np.ndarray


def find_bundle(path: Path, scratch: Path) -> Path:
    """The bundle directory for `path`: a bundle, a run directory holding `bundle/`, that run's report.json, or
    a bundle archive (extracted safely into `scratch`)."""
    path = Path(path)
    if path.is_file() and path.name != MANIFEST and tarfile.is_tarfile(path):
        return extract_bundle(path, scratch / "bundle")
    for candidate in (path, path / "bundle", path.parent / "bundle"):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise BundleError(f"'{path}' is neither a bundle nor a run directory with one (bundle/{MANIFEST}): --rebench "
                      "needs the artifacts themselves, e.g. export/<run> or export/<run>/bundle")


def open_side(path: Path, scratch: Path) -> Side:
    bundle_dir = find_bundle(path, scratch)
    manifest = verify_bundle(bundle_dir)  # checksums: only artifacts edgekd wrote are loaded
    artifacts = {a["name"]: Artifact(**a) for a in manifest.get("artifacts", [])}
    inputs, _, _ = load_eval_samples(bundle_dir, manifest)
    return Side(bundle_dir, manifest, artifacts, inputs[:1])


@dataclass
class PairTiming:
    """Per-round ratios (candidate / baseline) of each compared percentile, and each side's pooled p50."""

    ratios: dict[int, list[float]]
    baseline_p50_ms: float = 0.0
    candidate_p50_ms: float = 0.0

    @property
    def rounds(self) -> int:
        return len(next(iter(self.ratios.values()), []))


def abba_round(a: TimedCall, b: TimedCall, policy: RebenchPolicy, percentiles: tuple[int, ...],
               pooled: tuple[list[float], list[float]]) -> dict[int, float]:  # fmt: skip
    """One A B B A round: the ratio B / A of each percentile of the round's runs."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for side, call in (("a", a), ("b", b), ("b", b), ("a", a)):
        wall, _ = time_round(call, policy.segment_runs, policy.segment_seconds)
        times[side] += wall
    pooled[0].append(float(np.median(times["a"])))
    pooled[1].append(float(np.median(times["b"])))
    a_sorted, b_sorted = np.sort(times["a"]), np.sort(times["b"])
    return {p: stats.nearest_rank(b_sorted, p) / stats.nearest_rank(a_sorted, p) for p in percentiles}


def rebench_pair(baseline: Artifact, candidate: Artifact, base: Side, new: Side, budgets: dict[str, float],
                 threads: int, policy: RebenchPolicy) -> list[Check]:  # fmt: skip
    """Time one artifact against its baseline in ABBA rounds; one check per rebench budget."""
    num_classes = int(new.manifest.get("task", {}).get("num_classes", 0) or 0)
    a = bind_runner(load_runner(baseline, base.bundle_dir, threads, num_classes), base.sample)
    b = bind_runner(load_runner(candidate, new.bundle_dir, threads, num_classes), new.sample)
    for _ in range(policy.warmup_runs):
        a.run()
        b.run()
    wanted = {name: REBENCH_BUDGETS[name] for name in budgets if name in REBENCH_BUDGETS}
    timing = PairTiming({p: [] for p in wanted.values()})
    pooled: tuple[list[float], list[float]] = ([], [])
    target_rounds = policy.rounds
    while True:
        while timing.rounds < target_rounds:
            for p, ratio in abba_round(a, b, policy, tuple(wanted.values()), pooled).items():
                timing.ratios[p].append(ratio)
        checks = [_ratio_check(candidate.name, name, budgets[name], timing.ratios[p], pooled)
                  for name, p in wanted.items()]  # fmt: skip
        if all(c.verdict != INCONCLUSIVE for c in checks) or timing.rounds >= policy.max_rounds:
            return checks
        target_rounds = min(policy.max_rounds, timing.rounds + policy.extra_rounds)


def _ratio_check(artifact: str, budget: str, limit: float, ratios: list[float],
                 pooled: tuple[list[float], list[float]]) -> Check:  # fmt: skip
    centre, low, high = stats.ratio_interval(ratios)
    base_ms, new_ms = float(np.median(pooled[0])), float(np.median(pooled[1]))
    what = (f"re-measured here in {len(ratios)} ABBA rounds (baseline p50 {base_ms:.4g} ms, candidate "
            f"{new_ms:.4g} ms), increase")
    return interval_verdict(artifact, BUDGET_SPECS[budget], limit, (centre - 1) * 100,
                            ((low - 1) * 100, (high - 1) * 100), what,
                            "more rounds (--rebench-max-rounds) or a quieter machine would settle it")


def rebench(candidate: Path, baseline: Path, artifacts: list[str], budgets: dict[str, float], threads: int,
            policy: RebenchPolicy | None = None) -> dict[str, list[Check]]:  # fmt: skip
    """Checks per candidate artifact matching a glob in `artifacts` (every student artifact when empty) against
    the baseline bundle's artifact of the same name."""
    policy = policy or RebenchPolicy()
    with tempfile.TemporaryDirectory(prefix="edgekd-rebench-") as scratch:
        new = open_side(candidate, Path(scratch) / "candidate")
        base = open_side(baseline, Path(scratch) / "baseline")
        names = [n for n, a in new.artifacts.items() if a.role != "teacher"
                 and (not artifacts or any(fnmatch.fnmatchcase(n, p) for p in artifacts))]  # fmt: skip
        out: dict[str, list[Check]] = {}
        for name in names:
            if name not in base.artifacts:
                out[name] = [Check(name, b, budgets[b], None, INCONCLUSIVE, f"the baseline bundle {base.bundle_dir} "
                                   "carries no artifact of this name: nothing to compare with")
                             for b in budgets if b in REBENCH_BUDGETS]  # fmt: skip
                continue
            out[name] = rebench_pair(base.artifacts[name], new.artifacts[name], base, new, budgets, threads, policy)
        return out
