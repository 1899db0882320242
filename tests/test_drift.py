"""Drift estimate and paired comparisons on synthetic interleaved runs (pure logic)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.controller import drift

OPS = ("A", "B")


def run(drift_total: float, rounds: int = 40, seed: int = 0, spread: float = 0.05) -> pd.DataFrame:
    """Three targets interleaved at concurrency 1; every lifecycle multiplied by the node's drift
    (log-linear from 1 to 1 + drift_total over the rounds); docker is 1.5x containerd."""
    rng = np.random.default_rng(seed)
    base = {"containerd": 10.0, "crio": 12.0, "docker": 15.0}
    rows = []
    for r in range(rounds):
        node = math.exp(math.log1p(drift_total) * r / (rounds - 1))
        for i, (stack, ms) in enumerate(base.items()):
            for k, op in enumerate(OPS):
                d = ms * node * math.exp(rng.normal(0, spread))
                rows.append(
                    {
                        "node": "n",
                        "stack": stack,
                        "handler": "runc",
                        "level": "cri",
                        "op": op,
                        "concurrency": 1,
                        "iteration": r,
                        "warmup": False,
                        "ok": True,
                        "start_ns": (r * 10 + i * 3 + k) * 10**6,
                        "duration_ns": int(d * 1e6),
                    }
                )
    return pd.DataFrame(rows)


def test_node_trend_recovers_a_known_drift_and_finds_none_where_there_is_none():
    slow = drift.node_trend(run(0.30))["1"]
    assert slow["rounds"] == 40 and slow["targets"] == 3
    assert 0.25 < slow["change"] < 0.35 and slow["change_lo"] > 0.2
    # Without drift the 95% interval holds 0 in about 19 runs of 20 (here 39 of 40 seeds).
    covered = sum(
        t["change_lo"] < 0 < t["change_hi"] for t in (drift.node_trend(run(0.0, seed=s))["1"] for s in range(20))
    )
    assert covered >= 17
    per = drift.per_target(run(0.30))
    assert len(per) == 3 and (per["change_lo"] > 0.15).all()


def test_paired_interval_is_narrower_than_the_unpaired_one_under_drift_and_both_cover_the_truth():
    table = drift.side_by_side(run(0.60, seed=2), "cri", 1)
    row = table[(table["target"] == "docker/runc") & (table["op"] == "A")].iloc[0]
    assert row["against"] == "containerd/runc" and row["pairs"] == 40
    assert row["lo"] < 1.5 < row["hi"]
    assert row["hi"] - row["lo"] < 0.6 * (row["independent_hi"] - row["independent_lo"])


def test_lifecycles_keep_complete_measured_ones_only():
    s = run(0.0, rounds=5)
    s.loc[(s["stack"] == "crio") & (s["iteration"] == 2) & (s["op"] == "B"), "ok"] = False
    s.loc[(s["stack"] == "docker") & (s["iteration"] == 0), "warmup"] = True
    life = drift.lifecycles(s)
    assert len(life) == 15 - 2
    assert set(life["round"]) == set(range(5))
