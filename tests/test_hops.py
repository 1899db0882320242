"""Differential hop cost on recorded-style samples with a known answer."""

import numpy as np
import pandas as pd
import pytest

from bench.hops import bootstrap_median_diff, differential, per_lifecycle_ms


def rows(stack, handler, level, op, values_ms, warmup=False, ok=True, concurrency=1):
    return [
        {
            "stack": stack,
            "handler": handler,
            "level": level,
            "op": op,
            "iteration": i,
            "concurrency": concurrency,
            "warmup": warmup,
            "ok": ok,
            "duration_ns": int(v * 1e6),
        }
        for i, v in enumerate(values_ms)
    ]


def test_hop_cost_is_the_difference_of_medians_with_a_ci_that_covers_it():
    rng = np.random.default_rng(3)
    create = 30 + rng.normal(0, 1, 40)
    start = 8 + rng.normal(0, 0.5, 40)
    # StartContainer = runtime create + start + a 12 ms hop, with its own noise.
    startc = 30 + 8 + 12 + rng.normal(0, 1.5, 40)
    data = pd.DataFrame(
        rows("none", "runc", "oci", "create", create)
        + rows("none", "runc", "oci", "start", start)
        + rows("containerd", "runc", "cri", "StartContainer", startc)
    )
    (row,) = differential(data).to_dict("records")
    assert row["cri op"] == "StartContainer" and row["oci ops"] == "create + start"
    assert row["hop cost (ms)"] == pytest.approx(12, abs=1.0)
    assert row["CI low"] < 12 < row["CI high"]
    assert row["CI high"] - row["CI low"] < 3


def test_warmup_failed_and_incomplete_lifecycles_stay_out():
    data = pd.DataFrame(
        rows("none", "runc", "oci", "create", [10, 10, 10])
        + rows("none", "runc", "oci", "start", [5, 5])  # iteration 2 has no start: incomplete
        + rows("none", "runc", "oci", "create", [99], warmup=True)
    )
    assert list(per_lifecycle_ms(data, ("create", "start"))) == [15.0, 15.0]


def test_bootstrap_is_reproducible_and_centred():
    a = np.array([10.0, 11, 12, 13, 14])
    b = np.array([1.0, 2, 3, 4, 5])
    first = bootstrap_median_diff(a, b, seed=1)
    assert first == bootstrap_median_diff(a, b, seed=1)
    assert first[0] == 9.0 and first[1] <= 9.0 <= first[2]


def test_no_row_without_both_levels():
    data = pd.DataFrame(rows("containerd", "runc", "cri", "StartContainer", [50, 51, 52]))
    assert differential(data).empty
