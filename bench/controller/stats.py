"""Statistics on samples.

Percentiles use numpy's default (linear interpolation between order statistics, Hyndman
and Fan type 7). The confidence interval of a percentile is distribution-free: for the
q-quantile of n independent samples, the number of samples below the true quantile is
Binomial(n, q), so the order statistics x(l) and x(u) with
P(l <= B < u) >= 1 - alpha bracket it. Choosing l as the largest k with P(B < k) <= alpha/2
and u as the smallest k with P(B < k) >= 1 - alpha/2 gives at least the stated coverage.
When n is too small for a bound to exist (for p99 that means roughly n < 300 at 95%),
the bound is missing (NaN) rather than invented.

Warm-up samples and failed samples are kept in the results and excluded here; the
summary counts both so nothing disappears silently. Outliers are not trimmed.

Comparing two sample sets A (baseline) and B (candidate) of one op: the ratio of medians
B/A with a percentile-bootstrap interval (each set resampled on its own: they come from
independent lifecycles), and the two-sided Mann-Whitney U test (scipy; rank-based, no
normality assumed). A change is "clear" when the interval excludes 1 and p < alpha, and it
counts as a regression or improvement only when its ratio is also beyond a threshold: a
statistically clear 1% change on a noisy shared machine is not news.

p90 and p99 get percentile-bootstrap intervals where at least 5 samples lie above the
percentile (n * (1 - q) >= 5); below that the bootstrap only resamples the maximum and the
bounds are left missing.

At lab scale (a run of a million samples, bootstraps of 4000 rounds) resampling every sample is
rounds x n work and memory. So: a bootstrap of a quantile (a median, p90, p99, and the ratio or
difference of two independent medians) from EXACT_FROM samples on draws each resample's order
statistic from its exact distribution instead (quantile_draws); a bootstrap whose statistic does
not factor (paired medians, whole lifecycles) draws m-out-of-n above SUBSAMPLE_FROM samples and
rescales (scaled_bootstrap_ci); every bootstrap draws its rounds in chunks of bounded memory.
tests/test_scale.py sets each against the plain bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from bench.ops import KUBE_LIFECYCLE_OPS, KUBELET_LIFECYCLE_OPS, OCI_LIFECYCLE_OPS, POD_LIFECYCLE_OPS

GROUP = ["node", "stack", "handler", "level", "op", "concurrency"]
# What two runs are compared by: the same op of the same target, level and concurrency.
COMPARE_KEY = ["stack", "handler", "level", "op", "concurrency"]


def binom_cdf(k: int, n: int, q: float) -> float:
    """P(B <= k) for B ~ Binomial(n, q)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    from scipy.stats import binom

    return float(binom.cdf(k, n, q))


def binom_cdfs(n: int, q: float) -> np.ndarray:
    """P(B <= k) for every k in 0..n, B ~ Binomial(n, q): one vectorised pass, O(n)."""
    from scipy.stats import binom

    cdf: np.ndarray = np.minimum(binom.cdf(np.arange(n + 1), n, q), 1.0)
    return cdf


def quantile_ci(values: Sequence[float] | np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the q-quantile (NaN where n is too small).

    The k-th order statistic is the lower bound for the largest k with P(B < k) <= alpha/2, the
    upper bound for the smallest k with P(B < k) >= 1 - alpha/2 (B ~ Binomial(n, q)). Only the
    two order statistics are selected (np.partition), not the whole set sorted."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0 or not 0 < q < 1:
        return (math.nan, math.nan)
    alpha = 1 - confidence
    below = binom_cdfs(n, q)[:n]  # below[k-1] = P(B < k) = P(B <= k-1), k = 1..n
    lows = np.flatnonzero(below <= alpha / 2)
    highs = np.flatnonzero(below >= 1 - alpha / 2)
    picks = [int(i[j]) for i, j in ((lows, -1), (highs, 0)) if len(i)]
    part = np.partition(x, picks) if picks else x
    lo = float(part[lows[-1]]) if len(lows) else math.nan
    hi = float(part[highs[0]]) if len(highs) else math.nan
    return (lo, hi)


# Chunks of the bootstrap hold at most this many resampled values per group at once (32 MB of
# float64): the memory of a bootstrap stays flat however many samples it resamples.
CHUNK_VALUES = 4_000_000


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    *groups: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    rounds: int = 4000,
    seed: int = 0,
    paired: bool = False,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of `statistic` over `groups`: the one resampler of hopbench.

    Each group is resampled with replacement `rounds` times (each on its own, or with the same
    indices when `paired`, for (x, y) points); `statistic` gets one (rounds, n, ...) array per
    group and returns one value per round (NaN rounds are left out). Rounds are drawn in chunks
    of at most CHUNK_VALUES values per group, so memory does not grow with the sample count."""
    return _interval(_bootstrap_values(statistic, list(groups), rounds, seed, paired), confidence)


def _bootstrap_values(
    statistic: Callable[..., np.ndarray],
    groups: list[Sequence[float] | np.ndarray],
    rounds: int,
    seed: int,
    paired: bool,
    sizes: list[int] | None = None,
) -> np.ndarray:
    """The statistic of `rounds` resamples (of sizes[i] draws from group i; default: its own length)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(g, dtype=float) for g in groups]
    sizes = sizes or [len(a) for a in arrays]
    widest = max(size * (a.size // max(len(a), 1)) for size, a in zip(sizes, arrays, strict=True)) or 1
    step = max(1, min(rounds, CHUNK_VALUES // widest))
    values = []
    for done in range(0, rounds, step):
        r = min(step, rounds - done)
        if paired:
            idx = rng.integers(0, len(arrays[0]), size=(r, sizes[0]))
            draws = [a[idx] for a in arrays]
        else:
            draws = [a[rng.integers(0, len(a), size=(r, size))] for a, size in zip(arrays, sizes, strict=True)]
        values.append(np.asarray(statistic(*draws)))
    return np.concatenate(values)


# From this many samples on, a bootstrap of a quantile draws the resample's order statistic from
# its exact distribution (quantile_draws) instead of resampling every sample: same answer up to
# the interpolation between two neighbouring order statistics (< 1/n of the spread), O(n) once
# instead of O(rounds * n).
EXACT_FROM = 1000


def quantile_draws(values: Sequence[float] | np.ndarray, q: float, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """`rounds` bootstrap replicates of the q-quantile (0-1) of `values`, without resampling.

    A resample of n values has its k-th smallest at or below x(j) exactly when at least k of its
    n draws are at or below x(j): P = P(Binomial(n, j/n) >= k). That distribution over j is
    computed once (only where it is neither 0 nor 1: k +- 12 standard deviations) and sampled by
    inversion; k is the order statistic numpy's default (type 7) percentile starts from."""
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    k = int(math.floor((n - 1) * q)) + 1  # 1-based
    spread = 12 * math.sqrt(n * q * (1 - q)) + 10
    j = np.arange(max(1, int(k - spread)), min(n, int(k + spread)) + 1)
    cdf = binom.sf(k - 1, n, j / n)  # P(resample's k-th <= x(j))
    picks = np.searchsorted(cdf, rng.random(rounds), side="left")
    return np.asarray(x[j[np.minimum(picks, len(j) - 1)] - 1])


def bootstrap_percentile_ci(
    values: Sequence[float] | np.ndarray, q: float, confidence: float = 0.95, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the q-th percentile (0-100); NaN with fewer than 5 samples above it."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0 or len(x) * (1 - q / 100) < 5:
        return (math.nan, math.nan)
    if len(x) >= EXACT_FROM:
        draws = quantile_draws(x, q / 100, rounds, np.random.default_rng(seed))
        return _interval(draws, confidence)
    return bootstrap_ci(lambda d: np.percentile(d, q, axis=1), x, confidence=confidence, rounds=rounds, seed=seed)


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
    return (float(lo), float(hi))


def median_contrast_ci(
    contrast: Callable[[np.ndarray, np.ndarray], np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    confidence: float = 0.95,
    rounds: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of contrast(median(a*), median(b*)) with a and b resampled each on its own.

    Large sides draw their resample's median from its exact distribution (quantile_draws), small
    ones are resampled; either way a chunk of memory, never rounds x n."""
    if min(len(a), len(b)) >= EXACT_FROM:
        rng = np.random.default_rng(seed)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _interval(
                contrast(quantile_draws(a, 0.5, rounds, rng), quantile_draws(b, 0.5, rounds, rng)), confidence
            )

    def stat(da: np.ndarray, db: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return contrast(np.median(da, axis=1), np.median(db, axis=1))

    return bootstrap_ci(stat, a, b, confidence=confidence, rounds=rounds, seed=seed)


def summarize(samples: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per node/stack/handler/level/op/concurrency: counts, p50 with CI, p90, p99 (ms)."""
    rows = []
    if samples.empty:
        return pd.DataFrame(
            columns=[*GROUP, "n", "warmup", "failed", "p50_ms", "p50_lo_ms", "p50_hi_ms", "p90_ms", "p99_ms", "mean_ms"]
        )
    for key, group in samples.groupby(GROUP, sort=False, observed=True):
        measured = group[(~group["warmup"]) & group["ok"]]
        ms = measured["duration_ns"].to_numpy(dtype=float) / 1e6
        row = dict(zip(GROUP, key, strict=True))
        row.update(
            n=len(ms),
            warmup=int(group["warmup"].sum()),
            failed=int((~group["ok"]).sum()),
        )
        if len(ms):
            lo, hi = quantile_ci(ms, 0.5, confidence)
            row.update(
                p50_ms=float(np.percentile(ms, 50)),
                p50_lo_ms=lo,
                p50_hi_ms=hi,
                p90_ms=float(np.percentile(ms, 90)),
                p99_ms=float(np.percentile(ms, 99)),
                mean_ms=float(ms.mean()),
            )
            for q in (90, 99):
                qlo, qhi = bootstrap_percentile_ci(ms, q, confidence)
                row[f"p{q}_lo_ms"], row[f"p{q}_hi_ms"] = qlo, qhi
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_of_medians(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    rounds: int = 4000,
    seed: int = 0,
    paired: bool = False,
) -> tuple[float, float, float]:
    """median(b) / median(a) with a percentile-bootstrap interval (`paired`: a[i] and b[i] are
    drawn together, as same-round pairs are)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(xa) == 0 or len(xb) == 0 or np.median(xa) <= 0:
        return (math.nan, math.nan, math.nan)

    def ratio(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
        return np.asarray(mb / np.where(ma > 0, ma, np.nan))

    if paired:
        lo, hi = paired_log_ratio_ci(xa, xb, confidence, rounds, seed)
    else:
        lo, hi = median_contrast_ci(ratio, xa, xb, confidence, rounds, seed)
    return (float(np.median(xb) / np.median(xa)), lo, hi)


# A bootstrap of a statistic that does not factor per sample (medians of paired draws, of whole
# lifecycles) costs rounds x samples. Above SUBSAMPLE_FROM samples it draws a fraction f of each
# group per round, f = SUBSAMPLE_FROM / largest group (the m-out-of-n bootstrap of Bickel, Goetze
# and van Zwet, 1997), and scales each draw's deviation from the point estimate by sqrt(f): a
# median's spread shrinks as 1/sqrt(size), so the interval is the full bootstrap's at a fraction
# of its cost (tests/test_scale.py checks both agree). The statistic must be on a log scale (or
# any scale where the deviation is additive) for the scaling to hold.
SUBSAMPLE_FROM = 5000
SUBSAMPLE_ROUNDS = 1000  # the tails' Monte Carlo error from 1000 rounds: +-0.5 points of coverage


def scaled_bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    point: float,
    *groups: np.ndarray,
    confidence: float = 0.95,
    rounds: int = 4000,
    seed: int = 0,
    paired: bool = False,
) -> tuple[float, float]:
    """bootstrap_ci of an additive-scale statistic, m-out-of-n above SUBSAMPLE_FROM samples."""
    largest = max(len(g) for g in groups)
    if largest <= SUBSAMPLE_FROM:
        return bootstrap_ci(statistic, *groups, confidence=confidence, rounds=rounds, seed=seed, paired=paired)
    f = SUBSAMPLE_FROM / largest
    sizes = [max(2, math.ceil(f * len(g))) for g in groups]
    draws = _bootstrap_values(statistic, list(groups), min(rounds, SUBSAMPLE_ROUNDS), seed, paired, sizes)
    return _interval(point + (draws - point) * math.sqrt(f), confidence)


def paired_log_ratio_ci(
    xa: np.ndarray, xb: np.ndarray, confidence: float = 0.95, rounds: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Interval of median(b)/median(a) resampling (a[i], b[i]) together."""

    def log_ratio(da: np.ndarray, db: np.ndarray) -> np.ndarray:
        ma, mb = np.median(da, axis=1), np.median(db, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.log(mb / np.where(ma > 0, ma, np.nan)))

    ma, mb = float(np.median(xa)), float(np.median(xb))
    if ma <= 0 or mb <= 0:
        return (math.nan, math.nan)
    point = math.log(mb / ma)
    lo, hi = scaled_bootstrap_ci(log_ratio, point, xa, xb, confidence=confidence, rounds=rounds, seed=seed, paired=True)
    return (math.exp(lo), math.exp(hi))


def mann_whitney_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (NaN when a side is empty)."""
    from scipy.stats import mannwhitneyu

    if len(a) == 0 or len(b) == 0:
        return math.nan
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    threshold: float = 0.10,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> dict[str, object]:
    """B against baseline A: ratio of medians with its interval, U test, and the verdict.

    verdict: "regression" (a clear change whose ratio is above 1 + `threshold`),
    "improvement" (clear, below 1 - `threshold`), "clear but small", or "no clear change"."""
    ratio, lo, hi = ratio_of_medians(a, b, confidence)
    p = mann_whitney_p(a, b)
    clear = not math.isnan(p) and p < alpha and not (lo <= 1.0 <= hi)
    if clear and ratio > 1 + threshold:
        verdict = "regression"
    elif clear and ratio < 1 - threshold:
        verdict = "improvement"
    elif clear:
        verdict = "clear but small"
    else:
        verdict = "no clear change"
    return {
        "n_a": len(a),
        "n_b": len(b),
        "p50_a_ms": float(np.median(a)) if len(a) else math.nan,
        "p50_b_ms": float(np.median(b)) if len(b) else math.nan,
        "ratio": ratio,
        "ratio_lo": lo,
        "ratio_hi": hi,
        "p_value": p,
        "verdict": verdict,
    }


def measured_ms(samples: pd.DataFrame) -> pd.DataFrame:
    """Successful, non-warm-up samples with a `ms` column."""
    m = samples[(~samples["warmup"].astype(bool)) & samples["ok"].astype(bool)]
    return m.assign(ms=m["duration_ns"].astype(float) / 1e6)


def compare_runs(
    baseline: pd.DataFrame, candidate: pd.DataFrame, threshold: float = 0.10, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per stack/handler/level/op/concurrency found in both: `compare` of candidate against baseline.

    Nodes are not part of the key: a run is compared with runs of the same node by the
    caller (nightly picks its history per node)."""
    base = {k: g["ms"].to_numpy() for k, g in measured_ms(baseline).groupby(COMPARE_KEY, observed=True)}
    rows = []
    for k, gb in measured_ms(candidate).groupby(COMPARE_KEY, sort=True, observed=True):
        if k in base:
            rows.append(
                {**dict(zip(COMPARE_KEY, k, strict=True)), **compare(base[k], gb["ms"].to_numpy(), threshold, alpha)}
            )
    return pd.DataFrame(rows)


def op_order(ops: Sequence[str]) -> list[str]:
    """Ops in lifecycle order where known, others after them alphabetically."""
    known = [
        op
        for op in (*POD_LIFECYCLE_OPS, *KUBE_LIFECYCLE_OPS, *KUBELET_LIFECYCLE_OPS, *OCI_LIFECYCLE_OPS)
        if op in set(ops)
    ]
    return known + sorted(set(ops) - set(known))
