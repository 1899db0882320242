"""The nightly gate: is tonight's run a regression, at a false-alarm rate people can live with?

The earlier gate tested each row of a night on its own (Mann-Whitney on the samples, the point
ratio against the threshold). It treated a night's samples as independent of the baseline's,
but nights differ as a whole, and with 28 rows a night each tested at 5% some row is "clear"
almost every night: on simulated quiet nights (3% night-to-night drift, 15% spread per
sample) it alarmed on 5 nights of 20.

This gate (one row = stack, handler, level, op, concurrency):

1. **The right noise.** A row's night is summarised by the log of its median. Tonight's log
   median varies by its sampling noise (from its own samples: the variance of a median is
   about pi/2 * sigma^2 / n, sigma from the MAD of the log samples) *plus* the node's
   night-to-night drift, which samples within a night cannot show. The drift's variance is
   estimated from the baseline nights of every row together (each row's spread of night
   medians less its sampling part, averaged over the rows: the node drifts as a whole), so
   a row with 7 baseline nights still gets a well-founded variance.
2. **Two looks, both counted.** The *single-night* test sets tonight against the baseline
   nights; the *two-night* test sets the mean of tonight and the night before against the
   nights before those (persistence: a real regression stays, a bad night does not, and two
   nights halve the sampling noise). Each row's p-value is the smaller of the two, doubled
   (Bonferroni over the two looks).
3. **Error control across the night's rows**: Holm's step-down at `alpha` over all rows, so
   the chance of any false alarm on a quiet night is at most `alpha` (family-wise), not
   `alpha` per row.
4. **Beyond the threshold**: a rejected row is a regression when its ratio (of the look that
   decided) is above 1 + threshold and the interval of that ratio at the Holm-adjusted level
   lies above 1; an improvement likewise below. Asking the interval's lower bound itself to
   clear 1 + threshold would need a far larger regression to be seen under this noise (with
   30 samples a night, the 95% interval of one night's ratio is about ±9% wide).

tests/test_gate.py simulates histories and states both rates: false-alarm nights and the
share of +15% and +25% regressions caught on their first night and by their second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The distribution functions themselves (scipy.stats' t.sf and norm.ppf give the same values
# through these, at a fiftieth of the cost per scalar call (2.9 against 146 us measured here):
# the gate makes thousands a night).
from scipy.special import ndtri, stdtr

DF = 60

MAD_TO_SIGMA = 1.4826
MEDIAN_VARIANCE = math.pi / 2


@dataclass(frozen=True)
class Night:
    """One row's night: the log of its median, the spread of its log samples (MAD-based sigma),
    and the variance of that log median, pi/2 * sigma^2 / n (set from the row's pooled sigma by
    `pooled`: one night's MAD from 30 samples is too unsteady to divide by)."""

    log_median: float
    sigma: float
    n: int
    variance: float = math.nan


def night(values_ms: Sequence[float] | np.ndarray) -> Night | None:
    """Summary of one row's measured samples of one night (None without at least 3)."""
    x = np.log(np.asarray(values_ms, dtype=float))
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return None
    med = _median(x)
    return night_of(med, MAD_TO_SIGMA * _median(np.abs(x - med)), len(x))


def _median(x: np.ndarray) -> float:
    """np.median's value (the mean of the two middle values when even), without its per-call
    overhead: a nightly gate takes two per row and night."""
    s = np.sort(x)
    n = len(s)
    return float((s[(n - 1) // 2] + s[n // 2]) / 2)


def night_of(log_median: float, sigma: float, n: int) -> Night:
    """A night from its log median, MAD-based sigma and count (the variance of the median follows)."""
    return Night(log_median, sigma, n, MEDIAN_VARIANCE * sigma**2 / n)


def pooled(nights: Sequence[Night]) -> list[Night]:
    """The row's nights with the sampling variance from the row's sigma over all its nights (their
    median): the spread within a night is the op's, it does not change night to night the way the
    level does."""
    sigma = float(np.median([n.sigma for n in nights]))
    return [Night(n.log_median, n.sigma, n.n, MEDIAN_VARIANCE * sigma**2 / n.n) for n in nights]


def drift_variance(histories: Sequence[Sequence[Night]]) -> float:
    """The node's night-to-night variance of log medians, from every row's baseline nights at once:
    per row, the spread of its night medians less their mean sampling variance; the mean over rows
    (at least 0)."""
    parts = []
    for nights in histories:
        if len(nights) >= 3:
            lm = np.array([n.log_median for n in nights])
            parts.append(float(np.var(lm, ddof=1)) - float(np.mean([n.variance for n in nights])))
    return max(0.0, float(np.mean(parts))) if parts else 0.0


def _look(recent: Sequence[Night], base: Sequence[Night], drift: float) -> tuple[float, float]:
    """(difference of mean log medians, its variance): `recent` nights against `base` nights."""
    k, h = len(recent), len(base)
    d = float(np.mean([n.log_median for n in recent]) - np.mean([n.log_median for n in base]))
    var = sum(n.variance for n in recent) / k**2 + drift / k
    var += sum(n.variance for n in base) / h**2 + drift / h
    return d, var


@dataclass(frozen=True)
class RowVerdict:
    ratio: float  # of the look that decided
    ratio_lo: float  # its interval at the Holm-adjusted level
    ratio_hi: float
    ratio_tonight: float  # tonight against the baseline, always
    p_value: float  # the row's p (min of the two looks, doubled), before Holm
    look: str  # "tonight" or "two nights"
    verdict: str


def decide(
    raw_rows: dict[object, tuple[list[Night], Night | None, Night]],
    history: int = 7,
    threshold: float = 0.10,
    alpha: float = 0.05,
    min_baseline: int = 3,
) -> dict[object, RowVerdict]:
    """Every row of tonight: rows[key] = (earlier nights oldest first, the previous night or None, tonight).

    The single-night look uses the last `history` earlier nights (the previous one included);
    the two-night look uses the previous night and tonight against the `history` nights before
    the previous one. Rows with fewer than `min_baseline` earlier nights get "too few nights"."""
    rows = {}
    for key, (earlier, previous, tonight) in raw_rows.items():
        every = pooled([*earlier, tonight])
        rows[key] = (every[:-1], every[earlier.index(previous)] if previous is not None else None, every[-1])
    drift = drift_variance([earlier[-history:] for earlier, _, _ in rows.values()])
    looks: dict[object, list[tuple[str, float, float]]] = {}
    for key, (earlier, previous, tonight) in rows.items():
        base1 = earlier[-history:]
        if len(base1) < min_baseline:
            continue
        found = [("tonight", *_look([tonight], base1, drift))]
        if previous is not None:
            base2 = [n for n in earlier if n is not previous][-history:]
            if len(base2) >= min_baseline:
                found.append(("two nights", *_look([previous, tonight], base2, drift)))
        looks[key] = found
    # Regressions and improvements are two families, each tested one-sided with Holm at alpha:
    # a quiet night raises a false regression alarm with probability at most alpha.
    out: dict[object, RowVerdict] = {}
    for key in rows:
        if key not in looks:
            out[key] = RowVerdict(*(math.nan,) * 5, "", "too few nights")
    if not looks:
        return out
    family: dict[int, dict[object, tuple[float, tuple[str, float, float]]]] = {}
    for sign in (1, -1):
        ps: dict[object, tuple[float, tuple[str, float, float]]] = {}
        for key, found in looks.items():
            p_of = [_p_one(sign * d, var) for _, d, var in found]
            best = int(np.argmin(p_of))
            ps[key] = (min(1.0, p_of[best] * len(found)), found[best])
        family[sign] = ps
    adjusted = {sign: holm({k: p for k, (p, _) in ps.items()}) for sign, ps in family.items()}
    m = len(looks)
    # Each row's place in its family's Holm order (the level Holm tested it at).
    ranks = {sign: {k: i for i, (k, _) in enumerate(sorted(ps.items(), key=_first_p))} for sign, ps in family.items()}
    for key, found in looks.items():
        sign = 1 if found[0][1] >= 0 else -1
        # The direction whose family rejects (a row cannot be both); else tonight's direction.
        for s_ in (1, -1):
            if adjusted[s_][key] < alpha:
                sign = s_
                break
        p, (look, d, var) = family[sign][key]
        # The one-sided bound at the level Holm used for this row (its rank), widened for the looks.
        level = alpha / (m - ranks[sign][key]) / len(found)
        half = float(ndtri(1 - level)) * math.sqrt(var)
        ratio = math.exp(d)
        lo, hi = (math.exp(d - half), math.inf) if sign > 0 else (0.0, math.exp(d + half))
        verdict = "no clear change"
        if adjusted[sign][key] < alpha:
            if sign > 0 and ratio > 1 + threshold and lo > 1:
                verdict = "regression"
            elif sign < 0 and ratio < 1 - threshold and hi < 1:
                verdict = "improvement"
            else:
                verdict = "clear but small"
        out[key] = RowVerdict(ratio, lo, hi, math.exp(found[0][1]), p, look, verdict)
    return out


def _first_p(item: tuple[object, tuple[float, tuple[str, float, float]]]) -> float:
    return item[1][0]


def _p_one(d: float, var: float) -> float:
    """One-sided p of a difference d > 0."""
    if var <= 0:
        return 0.0 if d > 0 else 1.0
    return float(stdtr(DF, -d / math.sqrt(var)))  # Student's t survival function at d / sd


def holm(p: dict[object, float]) -> dict[object, float]:
    """Holm's step-down adjusted p-values (family-wise error at any alpha)."""
    order = sorted(p, key=lambda k: p[k])
    m = len(order)
    out: dict[object, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[key]))
        out[key] = running
    return out
