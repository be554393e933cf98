"""The machine's drift, shared by artifacts timed in turns, is told apart from one artifact's own instability:
a slowdown that hits every row flags none of them noisy (it is said once, for the run), while the one row whose
timing is unstable on its own is still flagged."""

import numpy as np

from edgekd.measure.drift import own_spread, round_factors
from edgekd.measure.interleave import separate_machine_drift
from edgekd.measure.timing import LatencyStats, summarize_rounds
from edgekd.report.summary import method_line

# the whole machine: usual speed, then 40% slower for three rounds, then 20% faster (another tenant, clocks)
MACHINE = [1.0, 1.0, 1.4, 1.4, 1.4, 1.0, 0.8, 0.8, 1.0, 1.0]


def _result(base_ms, rounds_factor, seed, own_jitter=0.0):
    rng = np.random.default_rng(seed)
    rounds = []
    for f in rounds_factor:
        own = rng.lognormal(0.0, own_jitter)  # this runtime's own swings, round to round
        rounds.append(list(rng.normal(base_ms * f * own, base_ms * 0.005, 400)))
    latency = summarize_rounds(rounds).to_dict()
    latency["interleaved_across"] = 4
    return {"status": "ok", "latency_ms": latency}


def test_shared_slowdown_flags_no_row_and_an_unstable_row_still_is():
    results = [_result(0.03, MACHINE, 0), _result(0.3, MACHINE, 1), _result(0.05, MACHINE, 2),
               _result(0.06, MACHINE, 3, own_jitter=0.3)]  # fmt: skip
    before = [LatencyStats.from_dict(r["latency_ms"]) for r in results]
    assert all(s.noisy for s in before)  # judged alone, every row looks noisy: the flag would fire on every row
    separate_machine_drift(results)
    after = [LatencyStats.from_dict(r["latency_ms"]) for r in results]
    assert [s.noisy for s in after] == [False, False, False, True]
    assert all(s.shared_drift > 0.1 for s in after)
    assert all(s.own_round_spread < 0.03 for s in after[:3])
    assert "against the other artifacts" in after[3].noisy_message()
    assert after[0].round_factors[2] > 1.3 and after[0].round_factors[6] < 0.85


def test_too_few_artifacts_or_unaligned_rounds_keep_the_plain_rule():
    assert round_factors([[1.0, 1.2, 1.0], [2.0, 2.4, 2.0]]) is None  # two: no majority to tell drift apart
    assert round_factors([[1.0, 1.2, 1.0], [2.0, 2.4, 2.0], [1.0, 1.0]]) is None  # a worker dropped a round
    results = [_result(0.03, MACHINE, 0), _result(0.3, MACHINE, 1)]
    separate_machine_drift(results)
    stats = LatencyStats.from_dict(results[0]["latency_ms"])
    assert stats.own_round_spread is None and stats.noisy  # as before: drift or instability, it cannot tell


def test_own_spread_divides_out_the_shared_factors():
    factors = round_factors([[1.0, 2.0, 1.0, 1.0], [3.0, 6.0, 3.0, 3.0], [0.5, 1.0, 0.5, 0.5]])
    assert factors == [1.0, 2.0, 1.0, 1.0]
    assert own_spread([2.0, 4.0, 2.0, 2.0], factors) == 0.0


def _report(drift):
    latency = {"p50": 0.03, "shared_drift": drift}
    return {"measurement": {"preset": "default", "isolation": "subprocess", "threads": 2, "batch_sizes": [1, 64],
                            "noisy_round_spread": 0.1,
                            "policy": {"warmup_runs": 10, "min_runs": 100, "min_seconds": 2.0, "rounds": 10}},
            "rows": [{"artifact": "a", "latency_ms": latency}, {"artifact": "b", "latency_ms": latency}]}  # fmt: skip


def test_the_run_says_once_when_the_machine_drifted():
    assert "Machine drift" in method_line(_report(0.25)) and "25%" in method_line(_report(0.25))
    assert "Machine drift" not in method_line(_report(0.04))
