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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUP = ["node", "stack", "handler", "level", "op", "concurrency"]


def _log_binom_pmf(k: int, n: int, q: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(q) + (n - k) * math.log1p(-q)


def binom_cdf(k: int, n: int, q: float) -> float:
    """P(B <= k) for B ~ Binomial(n, q)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, sum(math.exp(_log_binom_pmf(i, n, q)) for i in range(k + 1)))


def quantile_ci(values: Sequence[float] | np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the q-quantile (NaN where n is too small)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or not 0 < q < 1:
        return (math.nan, math.nan)
    alpha = 1 - confidence
    lo = hi = math.nan
    cdf = [binom_cdf(k - 1, n, q) for k in range(1, n + 2)]  # cdf[k-1] = P(B < k)
    lows = [k for k in range(1, n + 1) if cdf[k - 1] <= alpha / 2]
    if lows:
        lo = float(x[max(lows) - 1])
    highs = [k for k in range(1, n + 1) if cdf[k - 1] >= 1 - alpha / 2]
    if highs:
        hi = float(x[min(highs) - 1])
    return (lo, hi)


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
        rows.append(row)
    return pd.DataFrame(rows)


def op_order(ops: Sequence[str]) -> list[str]:
    """Ops in lifecycle order where known, others after them alphabetically."""
    from bench.levels.cri import POD_LIFECYCLE_OPS
    from bench.levels.oci import OCI_LIFECYCLE_OPS

    known = [op for op in (*POD_LIFECYCLE_OPS, *OCI_LIFECYCLE_OPS) if op in set(ops)]
    return known + sorted(set(ops) - set(known))
