import math

import numpy as np
import pandas as pd
import pytest

from bench.stats import binom_cdf, quantile_ci, summarize


def test_binomial_cdf_known_values():
    assert binom_cdf(1, 10, 0.5) == pytest.approx(11 / 1024)
    assert binom_cdf(10, 10, 0.5) == 1.0
    assert binom_cdf(-1, 10, 0.5) == 0.0


def test_median_ci_is_the_textbook_order_statistics():
    # n = 10: the 95% distribution-free interval of the median is (x(2), x(9)).
    x = np.arange(1.0, 11.0)
    assert quantile_ci(x, 0.5) == (2.0, 9.0)
    # Order does not matter.
    assert quantile_ci(x[::-1], 0.5) == (2.0, 9.0)


def test_p99_bounds_are_missing_for_small_samples():
    lo, hi = quantile_ci(np.arange(30.0), 0.99)
    assert math.isnan(hi)
    assert not math.isnan(lo)


def test_ci_covers_the_true_median_at_the_stated_rate():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        lo, hi = quantile_ci(rng.lognormal(0, 1, 25), 0.5)
        hits += lo <= 1.0 <= hi  # the lognormal(0, 1) median is 1
    assert hits / trials >= 0.93


def frame(rows):
    base = {"node": "n", "stack": "containerd", "handler": "runc", "level": "cri", "concurrency": 1}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_summary_excludes_warmup_and_failures_but_counts_them():
    rows = [{"op": "StartContainer", "duration_ns": ms * 1_000_000, "warmup": False, "ok": True} for ms in (10, 20, 30)]
    rows += [{"op": "StartContainer", "duration_ns": 999_000_000, "warmup": True, "ok": True}]
    rows += [{"op": "StartContainer", "duration_ns": 1, "warmup": False, "ok": False}]
    s = summarize(frame(rows)).iloc[0]
    assert s["n"] == 3
    assert s["warmup"] == 1
    assert s["failed"] == 1
    assert s["p50_ms"] == pytest.approx(20.0)
    assert s["p90_ms"] == pytest.approx(28.0)  # linear interpolation
