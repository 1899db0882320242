"""Throughput per concurrency and the saturation knee, from samples laid out as interleaved bursts."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.controller import sweep


def bursts_of(capacity: float, concurrencies=(1, 2, 4, 8, 16), rounds: int = 4) -> pd.DataFrame:
    """A target that serves `capacity` lifecycles per second at most: a burst of c takes c / min(c, capacity) s."""
    rows = []
    t = 0
    for c in concurrencies:
        wall_ns = int(1e9 * c / min(c, capacity))
        for r in range(rounds):
            for w in range(c):
                i = r * c + w
                rows.append(("n", "s@1", "runc", "cri", "Run", i, c, w, False, t, wall_ns // 2, True, ""))
                rows.append(
                    ("n", "s@1", "runc", "cri", "Stop", i, c, w, False, t + wall_ns // 2, wall_ns // 2, True, "")
                )
            t += wall_ns + 1000
    cols = ["node", "stack", "handler", "level", "op", "iteration", "concurrency", "worker", "warmup", "start_ns"]
    return pd.DataFrame(rows, columns=[*cols, "duration_ns", "ok", "error"])


def test_throughput_is_lifecycles_over_burst_wall_time_and_the_knee_is_found():
    table = sweep.throughput(bursts_of(capacity=4.0))
    per = dict(zip(table["concurrency"], table["per_s"], strict=True))
    assert per[1] == pytest.approx(1.0, rel=1e-3) and per[2] == pytest.approx(2.0, rel=1e-3)
    assert per[4] == pytest.approx(4.0, rel=1e-3) and per[16] == pytest.approx(4.0, rel=1e-3)
    assert (table["bursts"] == 4).all()
    knee = sweep.saturation(table).iloc[0]
    assert knee["saturates_at"] == 4 and knee["best_per_s"] == pytest.approx(4.0, rel=1e-3)
    assert knee["lifecycle_p50_ms_at_most"] == pytest.approx(4000, rel=1e-3)  # 16 in flight, 4 per second


def test_fewer_than_three_concurrencies_have_no_knee():
    assert sweep.saturation(sweep.throughput(bursts_of(4.0, concurrencies=(1, 2)))).empty
