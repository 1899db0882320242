"""Memory per pod from sampler rows with a known answer; the sampler's parsing of cgroups and shims."""

import numpy as np
import pandas as pd
import pytest

from bench.controller.density import by_step, curve, overhead, per_sweep, slope_ci, start_latency
from bench.node.memory import pod_of_cgroup, shim_info

MB = 1e6


def sweep_rows(target, sweep, pods, daemon_mb, shim_mb, pod_mb, phase="hold"):
    base = {"target": target, "sweep": sweep, "pods_running": pods, "phase": phase}
    rows = [{**base, "role": "daemon", "pss": daemon_mb * MB, "rss": 2 * daemon_mb * MB}]
    for i in range(pods):
        rows.append({**base, "role": "shim", "pss": shim_mb * MB, "rss": 3 * shim_mb * MB, "pod": f"p{i}"})
        rows.append({**base, "role": "pause", "pss": pod_mb / 2 * MB, "rss": pod_mb * MB, "pod": f"p{i}"})
        rows.append({**base, "role": "workload", "pss": pod_mb / 2 * MB, "rss": pod_mb * MB, "pod": f"p{i}"})
    return rows


def test_overhead_recovers_the_per_pod_slope_and_the_baseline():
    rng = np.random.default_rng(1)
    rows, sweep = [], 0
    for pods in (0, 1, 10, 25):
        for _ in range(6):
            daemon = 30 + 0.1 * pods + rng.normal(0, 0.2)
            rows += sweep_rows("containerd/runc", sweep, pods, daemon, 4.0, 0.5)
            sweep += 1
    rows += sweep_rows("containerd/runc", sweep, 7, 999, 999, 999, phase="ramp")  # ramp sweeps stay out
    (row,) = overhead(pd.DataFrame(rows)).to_dict("records")
    assert row["daemons at 0 pods PSS (MB)"] == pytest.approx(30, abs=0.3)
    assert row["per pod PSS (MB)"] == pytest.approx(0.1 + 4.0 + 0.5, abs=0.05)
    assert row["per pod PSS CI low"] <= row["per pod PSS (MB)"] <= row["per pod PSS CI high"]
    assert row["per pod PSS CI high"] - row["per pod PSS CI low"] < 0.1
    assert row["per pod RSS (MB)"] == pytest.approx(0.2 + 12 + 1, abs=0.1)
    assert row["shims per pod PSS (MB)"] == pytest.approx(4.0)
    assert row["pods per pod PSS (MB)"] == pytest.approx(0.5)
    assert row["max pods"] == 25 and row["sweeps"] == 24
    steps = by_step(pd.DataFrame(rows))
    assert list(steps["pods_running"]) == [0, 1, 10, 25]
    assert steps.loc[steps["pods_running"] == 10, "shims pss"].item() == pytest.approx(40)


def test_slope_needs_two_distinct_pod_counts():
    assert np.isnan(slope_ci(np.array([3.0, 3.0]), np.array([1.0, 2.0]))[0])
    s, lo, hi, b = slope_ci(np.array([0.0, 1, 2, 3]), np.array([1.0, 3, 5, 7]))
    assert (s, lo, hi, b) == pytest.approx((2, 2, 2, 1))


def test_per_sweep_without_hold_rows_is_empty():
    assert per_sweep(pd.DataFrame(sweep_rows("t", 0, 1, 1, 1, 1, phase="ramp"))).empty


def test_start_latency_sums_the_three_start_ops_per_pod():
    ops = ["RunPodSandbox", "CreateContainer", "StartContainer"]
    rows = [
        {
            "stack": "docker",
            "handler": "runc",
            "level": "density",
            "op": op,
            "iteration": i,
            "ok": True,
            "duration_ns": int((10 * (k + 1) + i) * 1e6),
        }
        for i in range(3)
        for k, op in enumerate(ops)
    ]
    rows.append({**rows[0], "iteration": 3})  # pod 3 never got further: left out
    got = start_latency(pd.DataFrame(rows))
    assert list(got["pods running"]) == [0, 1, 2]
    assert list(got["ms"]) == pytest.approx([60, 63, 66])


def test_pod_cgroup_and_shim_command_lines():
    uid = "0f8f2a9e-1c1e-4f5e-9d55-7b0a3c1e2d44"
    text = f"12:pids:/kubepods/besteffort/pod{uid}/abc123\n0::/\n"
    assert pod_of_cgroup(text) == (uid, "abc123")
    assert pod_of_cgroup("0::/docker/abc\n") == ("", "")
    crio = f"9:name=systemd:/kubepods/besteffort/pod{uid}/crio-5a4b4d4b\n"
    assert pod_of_cgroup(crio) == (uid, "5a4b4d4b")
    # The systemd driver: slices named after the uid with '_' for '-', scopes per container.
    slice_ = f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    systemd = f"4:memory:/kubepods.slice/kubepods-besteffort.slice/{slice_}/cri-containerd-abc123.scope\n"
    assert pod_of_cgroup(systemd) == (uid, "abc123")
    conmon = f"1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/{slice_}/crio-conmon-5a4b.scope\n"
    assert pod_of_cgroup(conmon) == (uid, "5a4b")
    # cgroup v2 (a VM node, lab machines): one line, the unified hierarchy's path, either driver.
    assert pod_of_cgroup(f"0::/kubepods.slice/kubepods-besteffort.slice/{slice_}/crio-5a4b.scope\n") == (uid, "5a4b")
    assert pod_of_cgroup(f"0::/kubepods/besteffort/pod{uid}/abc123\n") == (uid, "abc123")
    cmd = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "sb1", "-address", "/run/c.sock"]
    assert shim_info("containerd-shim-runc-v2", cmd) == ("/run/c.sock", "sb1")
    conmon = ["/usr/bin/conmon", "-c", "ctr9", "-u", "ctr9", "--exit-dir", "/run/hopbench/crio/exits"]
    assert shim_info("conmon", conmon) == ("conmon:/run/hopbench/crio/exits", "ctr9")
    # CRI-O's runsc shim names no containerd: known by its bundle folder in CRI-O's state
    crio_shim = [
        "containerd-shim-runsc-v1",
        "-namespace",
        "default",
        "-address",
        "",
        "-publish-binary",
        "/x/crio",
        "-id",
        "sb2",
    ]
    bundle = "/run/hopbench/crio/overlay-containers/sb2/userdata"
    assert shim_info("containerd-shim-runsc-v1", crio_shim, bundle) == ("cwd:" + bundle, "sb2")


def test_curve_sets_the_first_pod_against_the_marginal_pods():
    rows, sweep = [], 0
    for pods in (0, 1, 10, 30):
        for _ in range(3):
            # The first pod brings 20 MB more to the daemons (first allocations), later pods 1 MB each.
            daemon = 30 + (20 if pods else 0) + max(pods - 1, 0) * 1.0
            rows += sweep_rows("crio/runc", sweep, pods, daemon, 2.0, 0.5)
            sweep += 1
    table = curve(pd.DataFrame(rows))
    assert list(table["pods running"]) == [0, 1, 10, 30]
    assert list(table["which pods"]) == ["", "first pod", "pods 2-10", "pods 11-30"]
    added = list(table["PSS per pod added (MB)"])
    assert np.isnan(added[0])
    assert added[1] == pytest.approx(20 + 2.5) and added[2] == pytest.approx(1 + 2.5) and added[3] == pytest.approx(3.5)
