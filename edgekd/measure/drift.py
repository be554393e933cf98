"""The machine's speed drift, told apart from one artifact's own instability.

Interleaved artifacts take their batch-1 rounds in turns (`measure.interleave`), so round r of every artifact
ran within the same second or so. When the whole machine slows down or speeds up (another tenant on a shared
host, clock scaling), every artifact's round r moves by about the same factor. That common factor is the
machine's drift: it widens every row's interval, but it says nothing about one row, and flagging every row
`noisy` for it hides the row whose own timing is unstable. Each round's factor is the median, over artifacts, of
that round's median relative to the artifact's overall median; an artifact's own spread is the spread of its
round medians once those factors are divided out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekd.measure.stats import relative_mad

# Fewer artifacts than this in a pass leave no majority to tell the machine's drift from one artifact's own.
MIN_ARTIFACTS = 3
MIN_ROUNDS = 3


def round_factors(round_medians: Sequence[Sequence[float]]) -> list[float] | None:
    """Per round, the speed factor every artifact shared (1.0 = its usual speed), from each artifact's round
    medians; None where there are too few artifacts or rounds, or their rounds do not line up."""
    series = [np.asarray(m, dtype=float) for m in round_medians]
    if len(series) < MIN_ARTIFACTS or len({len(s) for s in series}) != 1 or len(series[0]) < MIN_ROUNDS:
        return None
    if any(np.any(s <= 0) for s in series):
        return None
    relative = np.stack([s / np.median(s) for s in series])  # artifacts x rounds
    return [float(f) for f in np.median(relative, axis=0)]


def drift_spread(factors: Sequence[float]) -> float:
    """The robust spread of the shared factors: how much the machine's speed wandered during the rounds."""
    return relative_mad(factors)


def own_spread(medians: Sequence[float], factors: Sequence[float]) -> float:
    """The robust spread of one artifact's round medians once the shared factors are divided out."""
    return relative_mad([m / f for m, f in zip(medians, factors, strict=True)])
