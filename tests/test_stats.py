import math

import numpy as np
import pandas as pd
import pytest

from bench.controller.stats import binom_cdf, quantile_ci, summarize


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


def lognormal(rng, median_ms, n, sigma=0.08):
    return median_ms * np.exp(rng.normal(0, sigma, n))


def test_compare_flags_a_planted_regression_and_not_noise():
    from bench.controller.stats import compare

    rng = np.random.default_rng(7)
    base = lognormal(rng, 50, 150)
    slower = lognormal(rng, 55, 30)  # +10%
    same = lognormal(rng, 50, 30)
    faster = lognormal(rng, 40, 30)
    r = compare(base, slower, threshold=0.05)
    assert r["verdict"] == "regression" and r["ratio_lo"] > 1 and r["p_value"] < 0.05
    assert r["ratio"] == pytest.approx(1.10, abs=0.04)
    assert compare(base, same, threshold=0.05)["verdict"] == "no clear change"
    assert compare(base, faster, threshold=0.05)["verdict"] == "improvement"
    # A clear but small change stays below the threshold.
    small = compare(lognormal(rng, 50, 400, 0.02), lognormal(rng, 51, 400, 0.02), threshold=0.05)
    assert small["verdict"] == "clear but small"


def test_noise_only_changes_are_rarely_flagged():
    from bench.controller.stats import compare

    rng = np.random.default_rng(11)
    flagged = sum(
        compare(lognormal(rng, 50, 150), lognormal(rng, 50, 30), threshold=0.05)["verdict"]
        in ("regression", "improvement")
        for _ in range(40)
    )
    assert flagged <= 1


def test_ratio_of_medians_interval_and_empty_input():
    from bench.controller.stats import ratio_of_medians

    ratio, lo, hi = ratio_of_medians([10, 10, 10, 10], [20, 20, 20, 20])
    assert (ratio, lo, hi) == (2.0, 2.0, 2.0)
    assert all(np.isnan(v) for v in ratio_of_medians([], [1.0]))


def test_bootstrap_percentile_interval_needs_samples_above_the_percentile():
    from bench.controller.stats import bootstrap_percentile_ci

    x = np.arange(1, 101, dtype=float)
    lo, hi = bootstrap_percentile_ci(x, 90)
    assert lo < np.percentile(x, 90) < hi
    assert all(np.isnan(v) for v in bootstrap_percentile_ci(x, 99))  # 1 sample above p99 of 100
