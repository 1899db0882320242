"""Differential hop cost on recorded-style samples with a known answer."""

import numpy as np
import pandas as pd
import pytest

from bench.controller.hops import bootstrap_median_diff, differential, per_lifecycle_ms, split_table
from bench.ops import PARTS


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
    assert row["cri op"] == "StartContainer" and row["lower"] == "oci: create + start"
    assert row["hop"] == "whole stack"  # only cri and oci measured: everything above the runtime
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


def test_each_adjacent_pair_of_measured_levels_is_one_hop():
    rng = np.random.default_rng(5)
    n = 40

    def noisy(ms):
        return ms + rng.normal(0, 0.3, n)

    data = pd.DataFrame(
        rows("none", "runc", "oci", "create", noisy(30))
        + rows("none", "runc", "oci", "start", noisy(8))
        + rows("docker", "runc", "containerd", "ContainerCreate", noisy(3))
        + rows("docker", "runc", "containerd", "TaskCreate", noisy(40))
        + rows("docker", "runc", "containerd", "TaskStart", noisy(7))  # 50 in all: 12 above oci
        + rows("docker", "runc", "engine", "ContainerStart", noisy(75))  # 25 above containerd
        + rows("docker", "runc", "cri", "StartContainer", noisy(80))  # 5 above engine
    )
    table = differential(data).set_index("hop")
    assert list(table.index) == ["cri-dockerd", "dockerd", "containerd + shim"]
    assert table.loc["cri-dockerd", "hop cost (ms)"] == pytest.approx(5, abs=0.5)
    assert table.loc["dockerd", "hop cost (ms)"] == pytest.approx(25, abs=0.5)
    assert table.loc["containerd + shim", "hop cost (ms)"] == pytest.approx(12, abs=0.5)
    assert table.loc["dockerd", "upper"] == "engine: ContainerStart"
    assert table.loc["dockerd", "lower"] == "containerd: ContainerCreate + TaskCreate + TaskStart"
    # The oci samples belong to no stack and still count under docker.
    assert (table["n lower"] == n).all()


def split_rows(op, parts_ms, warmup=False):
    out = []
    for i, p in enumerate(parts_ms):
        row = {"stack": "containerd", "handler": "runc", "op": op, "iteration": i, "concurrency": 1, "warmup": warmup}
        row.update({f"{k}_ns": int(v * 1e6) for k, v in zip(PARTS, p, strict=True)})
        row["duration_ns"] = sum(row[f"{k}_ns"] for k in PARTS)
        row["calls"] = "oci:create oci:start"
        out.append(row)
    return out


def test_split_table_medians_and_the_add_up_check():
    # Parts that move together: medians add up to the op's median exactly.
    steady = [(5, 0, 30 + i, 3, 2) for i in range(9)]
    # Parts that trade off against each other: the medians of the parts overshoot the op's.
    trading = [(1, 0, 1, 0, 0), (2, 0, 30, 0, 0), (30, 0, 2, 0, 0), (31, 0, 31, 0, 0), (29, 0, 29, 0, 0)]
    splits = pd.DataFrame(
        split_rows("StartContainer", steady)
        + split_rows("StopContainer", trading)
        + split_rows("StartContainer", [(900, 0, 0, 0, 0)], warmup=True)
    )
    table = split_table(splits).set_index("cri op")
    start = table.loc["StartContainer"]
    assert start["n"] == 9
    assert start["op p50 (ms)"] == pytest.approx(44)
    assert start["runtime (ms)"] == pytest.approx(34) and start["before (ms)"] == pytest.approx(5)
    assert start["gap %"] == pytest.approx(0, abs=1e-9) and bool(start["adds up"])
    stop = table.loc["StopContainer"]
    # Totals 2, 32, 32, 62, 58: median 32. Medians of the parts: before 29, runtime 29.
    assert stop["op p50 (ms)"] == pytest.approx(32)
    assert stop["sum of parts (ms)"] == pytest.approx(58)
    assert stop["gap %"] == pytest.approx(100 * (58 - 32) / 32)
    assert not bool(stop["adds up"])


def test_pod_start_hops_run_api_path_then_kubelet_then_cri():
    n = 20
    data = []
    for op, ms in (("RunPodSandbox", 100.0), ("CreateContainer", 10.0), ("StartContainer", 50.0)):
        data += rows("containerd@2.4.2", "runc", "cri", op, [ms] * n)
    data += rows("containerd@2.4.2", "runc", "kubelet", "SandboxReady", [150.0] * n)
    data += rows("containerd@2.4.2", "runc", "kubelet", "PodReady", [70.0] * n)
    for op, ms in (("PodScheduled", 15.0), ("SandboxReady", 180.0), ("PodReady", 75.0)):
        data += rows("containerd@2.4.2", "runc", "kube", op, [ms] * n)
    table = differential(pd.DataFrame(data))
    start = table[table["cri op"] == "pod start"].set_index("hop")
    assert list(start.index) == ["API server + scheduler", "kubelet"]
    assert start.loc["API server + scheduler", "hop cost (ms)"] == pytest.approx(270.0 - 220.0)
    assert start.loc["kubelet", "hop cost (ms)"] == pytest.approx(60.0)
    assert start.loc["kubelet", "upper"] == "kubelet: SandboxReady + PodReady"
    assert start.loc["API server + scheduler", "upper"] == "kube: PodScheduled + SandboxReady + PodReady"


def test_without_level_kubelet_the_kube_hop_is_control_plane_and_kubelet():
    n = 20
    data = []
    for op, ms in (("RunPodSandbox", 100.0), ("CreateContainer", 10.0), ("StartContainer", 50.0)):
        data += rows("docker@29.8.1-dev", "runc", "cri", op, [ms] * n)
    for op, ms in (("PodScheduled", 15.0), ("SandboxReady", 180.0), ("PodReady", 75.0)):
        data += rows("docker@29.8.1-dev", "runc", "kube", op, [ms] * n)
    table = differential(pd.DataFrame(data))
    (row,) = table[table["cri op"] == "pod start"].to_dict("records")
    assert row["hop"] == "control plane + kubelet" and row["hop cost (ms)"] == pytest.approx(110.0)
