"""The node speed index: how much faster or slower the node itself was in one run than in another.

Every run times level control beside its targets (bench.node.levels.control: a CPU loop, a
syscall loop, runc on a bundle), interleaved with them. Between two runs, each control op's
ratio of medians (B / A) says how much the node changed for that kind of work; the index is
their geometric mean, with a 95% percentile-bootstrap interval that resamples each run's
control lifecycles (all ops of one lifecycle together). A stack's ratio between the runs is
then read beside it: "ratio / index" is the change that is the stack's own, the raw ratio
stays. Only the lowest concurrency's control lifecycles count (at c > 1 the control runs c
copies at once: another workload).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.controller import stats

LEVEL = "control"


def _matrix(samples: pd.DataFrame) -> pd.DataFrame:
    m = stats.measured_ms(samples)
    m = m[m["level"] == LEVEL]
    if m.empty:
        return pd.DataFrame()
    # The lowest concurrency only: at c > 1 the control runs c copies at once, another workload.
    m = m[m["concurrency"] == m["concurrency"].min()]
    return m.pivot_table(index="iteration", columns="op", values="ms", aggfunc="first")


def index(a: pd.DataFrame, b: pd.DataFrame, rounds: int = 2000, seed: int = 0) -> dict[str, Any]:
    """B's node against A's: {ratio, lo, hi, ops: {op: ratio}}; {} when either run has no control."""
    ma, mb = _matrix(a), _matrix(b)
    ops = sorted(set(ma.columns) & set(mb.columns)) if not ma.empty and not mb.empty else []
    if not ops:
        return {}
    xa, xb = ma[ops].to_numpy(float), mb[ops].to_numpy(float)
    per_op = np.nanmedian(xb, axis=0) / np.nanmedian(xa, axis=0)
    point = float(np.exp(np.mean(np.log(per_op))))

    # np.nanmedian goes row by row in Python: only where some lifecycle lacks an op.
    median = np.nanmedian if np.isnan(xa).any() or np.isnan(xb).any() else np.median

    def log_index(da: np.ndarray, db: np.ndarray) -> np.ndarray:
        # Each draw resamples whole lifecycles (rows): (rounds, lifecycles, ops) -> one index per round.
        return np.asarray(np.nanmean(np.log(median(db, axis=1) / median(da, axis=1)), axis=1))

    lo, hi = (
        math.exp(v) for v in stats.scaled_bootstrap_ci(log_index, math.log(point), xa, xb, rounds=rounds, seed=seed)
    )
    return {
        "ratio": point,
        "lo": lo,
        "hi": hi,
        "n_a": len(xa),
        "n_b": len(xb),
        "ops": {op: float(r) for op, r in zip(ops, per_op, strict=True)},
    }


def sentence(idx: dict[str, Any], a_name: str, b_name: str) -> str:
    """The index in words: 'the node was 28% slower in B than in A: control ratio 1.28 [1.21, 1.35]'."""
    if not idx:
        return f"No control in {a_name} or {b_name}: the node's own change between them is unknown."
    r = idx["ratio"]
    if idx["lo"] <= 1 <= idx["hi"]:
        how = "no clearly different speed"
    else:
        how = f"{abs(r - 1) * 100:.0f}% {'slower' if r > 1 else 'faster'}"
    return (
        f"The node ran {b_name} at {how} than {a_name}: control ratio {r:.2f} [{idx['lo']:.2f}, {idx['hi']:.2f}] "
        f"(geometric mean over {len(idx['ops'])} control ops; a stack's ratio / this is its own change)."
    )


def relative(table: pd.DataFrame, idx: dict[str, Any]) -> pd.DataFrame:
    """The comparison table with `ratio_vs_control` (ratio / index) beside the raw ratio."""
    if table.empty or not idx:
        return table
    return table.assign(ratio_vs_control=table["ratio"] / idx["ratio"] if idx["ratio"] > 0 else math.nan)
