"""The nightly gate on simulated histories: its false-alarm and detection rates, stated.

Noise as measured on the development machine: every sample of a row spreads by 15%
(log-normal), every night drifts by 3% (log-normal) -- as a whole (`shared`, the node drifts)
or row by row (`per row`, the harder case for a gate) -- 28 rows a night, 60 measured samples
per row as scenarios/nightly.yaml takes. A regression is +15% or +25% on one row from one
night on. Goal (issue 15): at most 1 false-alarm night in 20, and a +15% regression caught in
at least 8 of 10 (here: by its second night; the first night alone catches about 6 in 10).

The seeds are fixed, so the figures are reproducible; `pytest -s tests/test_gate.py` prints them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.controller import gate

ROWS, SAMPLES, DRIFT, SPREAD, HISTORY = 28, 60, 0.03, 0.15, 7


def nights(rng: np.random.Generator, count: int, shared: bool, step: float = 0.0, step_at: int = 10**9) -> list:
    base = rng.uniform(1, 500, size=ROWS)
    out = []
    for t in range(count):
        drift = np.full(ROWS, rng.normal(0, DRIFT)) if shared else rng.normal(0, DRIFT, size=ROWS)
        factor = np.ones(ROWS)
        if t >= step_at:
            factor[0] = 1 + step
        out.append([base[r] * factor[r] * np.exp(drift[r] + rng.normal(0, SPREAD, SAMPLES)) for r in range(ROWS)])
    return out


def verdicts(history: list, t: int) -> dict[object, gate.RowVerdict]:
    rows = {}
    for r in range(ROWS):
        earlier = [gate.night(history[k][r]) for k in range(max(0, t - HISTORY - 1), t)]
        rows[r] = ([e for e in earlier if e is not None], earlier[-1], gate.night(history[t][r]))
    return gate.decide(rows, HISTORY, threshold=0.10, alpha=0.05)  # type: ignore[arg-type]


def rates(shared: bool, quiet: int = 160, trials: int = 50) -> dict[str, float]:
    rng = np.random.default_rng(20261128 + shared)
    alarms = 0
    for _ in range(quiet):
        v = verdicts(nights(rng, HISTORY + 2, shared), HISTORY + 1)
        alarms += any(x.verdict == "regression" for x in v.values())
    out = {"false-alarm nights": alarms / quiet}
    for step in (0.15, 0.25):
        first = by_second = 0
        for _ in range(trials):
            h = nights(rng, HISTORY + 3, shared, step, step_at=HISTORY + 1)
            a = verdicts(h, HISTORY + 1)[0].verdict == "regression"
            b = verdicts(h, HISTORY + 2)[0].verdict == "regression"
            first += a
            by_second += a or b
        out[f"+{step:.0%} first night"] = first / trials
        out[f"+{step:.0%} by second night"] = by_second / trials
    return out


@pytest.mark.parametrize("shared", [True, False], ids=["drift shared", "drift per row"])
def test_gate_rates_on_simulated_histories(shared):
    r = rates(shared)
    print(f"\ngate, drift {'shared' if shared else 'per row'}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    assert r["false-alarm nights"] <= 1 / 20, r
    assert r["+15% by second night"] >= 0.8, r
    assert r["+25% first night"] >= 0.9, r


def test_holm_adjusts_step_down_and_stays_monotone():
    adj = gate.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adj == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


def test_a_night_is_its_log_median_and_a_few_samples_are_no_night():
    n = gate.night([10.0, 20.0, 40.0])
    assert n is not None and n.log_median == pytest.approx(math.log(20.0)) and n.n == 3
    assert gate.night([1.0, 2.0]) is None


def test_drift_between_nights_is_estimated_beyond_the_sampling_noise():
    rng = np.random.default_rng(1)
    h = nights(rng, 8, shared=False)
    per_row = [gate.pooled([n for n in (gate.night(h[k][r]) for k in range(8)) if n is not None]) for r in range(ROWS)]
    assert 0.0004 < gate.drift_variance(per_row) < 0.0016  # 0.03^2 = 0.0009


def test_too_few_nights_is_never_a_regression():
    rng = np.random.default_rng(2)
    h = nights(rng, 3, shared=True, step=1.0, step_at=2)
    rows = {r: ([gate.night(h[k][r]) for k in range(2)], None, gate.night(h[2][r])) for r in range(ROWS)}
    v = gate.decide(rows, HISTORY, min_baseline=3)  # type: ignore[arg-type]
    assert {x.verdict for x in v.values()} == {"too few nights"}
