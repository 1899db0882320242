"""The analysis at scale keeps its answers: exact order-statistic draws, m-out-of-n bootstraps,
binned trends, the journal stamp and the per-run summaries agree with the slow ways."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.controller import drift, gate, history, stats, summaries
from bench.controller.results import load_samples, samples_current
from benchmarks.synth import make_run


def test_exact_median_draws_match_resampling():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(0, 0.3, 3000), rng.lognormal(0.05, 0.3, 3000)
    exact = stats.median_contrast_ci(lambda x, y: y / x, a, b)
    resampled = stats.bootstrap_ci(lambda da, db: np.median(db, axis=1) / np.median(da, axis=1), a, b)
    assert exact == pytest.approx(resampled, rel=2e-3)
    x = rng.lognormal(0, 0.5, 5000)
    assert stats.bootstrap_percentile_ci(x, 90) == pytest.approx(
        stats.bootstrap_ci(lambda d: np.percentile(d, 90, axis=1), x, rounds=2000), rel=5e-3
    )


def test_subsampled_paired_bootstrap_matches_the_full_one():
    rng = np.random.default_rng(3)
    n = 20000
    shared = np.exp(np.linspace(0, 0.3, n) + rng.normal(0, 0.1, n))
    a, b = shared * rng.lognormal(0, 0.2, n), 1.03 * shared * rng.lognormal(0, 0.2, n)
    _, lo, hi = stats.ratio_of_medians(a, b, paired=True)
    full = stats.bootstrap_ci(
        lambda da, db: np.median(db, axis=1) / np.median(da, axis=1), a, b, paired=True, rounds=1000
    )
    assert (lo, hi) == pytest.approx(full, abs=0.002)
    assert hi - lo == pytest.approx(full[1] - full[0], rel=0.2)


def test_quantile_ci_agrees_with_the_binomial_sum():
    x = np.random.default_rng(0).normal(size=501)
    lo, hi = stats.quantile_ci(x, 0.5)
    srt = np.sort(x)
    cdf = [stats.binom_cdf(k, 501, 0.5) for k in range(501)]  # P(B <= k), summed the slow way in scipy
    below = np.array([0.0, *cdf[:-1]])  # P(B < k) for k = 0..500
    assert lo == srt[np.flatnonzero(below <= 0.025)[-1] - 1]
    assert hi == srt[np.flatnonzero(below >= 0.975)[0] - 1]


def test_binned_trend_keeps_the_slope():
    rng = np.random.default_rng(2)
    x = np.arange(20000, dtype=float)
    y = 0.2 * x / x[-1] + rng.normal(0, 0.1, len(x))
    change, lo, hi = drift._trend(x, y)
    assert lo < change < hi
    assert change == pytest.approx(np.expm1(0.2), abs=0.03)


def test_journal_stamp_says_when_the_parquet_is_whole(tmp_path):
    run = make_run(tmp_path, "r", 400, seed=1)
    assert samples_current(run)
    with open(run / "samples.jsonl", "a") as fh:
        row = json.loads((run / "samples.jsonl").read_text().splitlines()[-1])
        fh.write(json.dumps({**row, "iteration": 9999}) + "\n")
    assert not samples_current(run)
    assert len(load_samples(run)) == len(load_samples(run, columns=["run_id"])) == 401  # rebuilt, then read
    assert samples_current(run)
    (run / "samples.parquet").unlink()  # a crash before the first parquet: the journal is all there is
    assert len(load_samples(run)) == 401


def test_summary_nights_equal_the_gate_on_samples(tmp_path):
    run = make_run(tmp_path, "r", 3000, seed=4)
    summary = summaries.run_summary(run)
    assert (run / summaries.SUMMARY_FILE).exists()
    nights = summaries.nights(summary)
    m = stats.measured_ms(load_samples(run))
    for key, g in m.groupby(stats.COMPARE_KEY, observed=True):
        assert nights[key] == gate.night(g["ms"].to_numpy())
    assert summaries.run_summary(run).equals(summary)  # from the cache


def test_nightly_over_synthetic_nights_finds_the_regression(tmp_path):
    for night in range(8):
        make_run(
            tmp_path,
            f"n{night}",
            1500,
            seed=night,
            scenario="nightly",
            started_at=f"2026-01-{night + 1:02d}T00:00:00+00:00",
            shift=1.3 if night == 7 else 1.0,
        )
    result = history.nightly_check(tmp_path / "n7", tmp_path, history=7)
    assert len(result["baseline_runs"]) == 7
    assert result["regressions"] >= 10  # every cri row of both targets is 30% slower
    assert all(r["level"] == "cri" for r in result["rows"] if r["verdict"] == "regression")
