"""The crosscheck's pure logic: critest's JSON, the daemons' metrics, the tables, the control index.

tests/data/critest/ holds what critest v1.37.0 wrote (`critest -benchmark`, 2 pod and 2 container
samples, against nullcri); tests/data/metrics/ holds lines as containerd 2.4, CRI-O 1.36 and
Docker 29 print them. The real tools run in tests/integration/test_crosscheck.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.controller import control, crosscheck
from bench.node import critest, metrics

DATA = Path(__file__).parent / "data" / "critest"

CONTAINERD = (Path(__file__).parent / "data" / "metrics" / "containerd.txt").read_text()
CRIO = (Path(__file__).parent / "data" / "metrics" / "crio.txt").read_text()
DOCKERD = (Path(__file__).parent / "data" / "metrics" / "dockerd.txt").read_text()


def test_critest_json_becomes_cri_ops_in_order_on_the_monotonic_clock():
    raw, timed = critest.parse(DATA, offset_ns=-1000)
    assert set(raw) == {"pod", "container"}
    assert set(timed) == set(critest.OPS)
    pod = raw["pod"]["datapoints"][-1]
    run = timed["RunPodSandbox"]
    assert run.start_ns == pod["startTime"] - 1000 and run.duration_ns == pod["operationsDurationsNs"][0]
    status = timed["PodSandboxStatus"]
    assert status.start_ns == run.start_ns + run.duration_ns and status.ok


def test_critests_pod_and_container_requests_are_its_own():
    pod = critest.pod_config("PodSandbox-for-creating-performance-test-", "")
    assert pod.metadata.uid.startswith("cri-test-uid") and pod.metadata.namespace.startswith("cri-test-namespace")
    assert pod.metadata.attempt == 2 and not pod.labels and not pod.annotations and not pod.log_directory
    assert not pod.linux.HasField("security_context") and pod.linux.cgroup_parent == ""
    ctr = critest.container_config("localhost/hopbench/workload:1")
    assert list(ctr.command) == ["top"] and ctr.image.user_specified_image == "localhost/hopbench/workload:1"
    assert critest.container_config("busybox").image.user_specified_image == "busybox:latest"
    assert critest.cgroup_parent(None) == "/test.slice"


@pytest.mark.parametrize(
    ("text", "daemon", "call", "count", "seconds"),
    [
        (CONTAINERD, "containerd", "runtime.v1.RuntimeService/RunPodSandbox", 10, 1.5),
        (CONTAINERD, "containerd", "containerd.services.containers.v1.Containers/Create", 4, 0.2),
        (CRIO, "crio", "RunPodSandbox", 20, 2.0),
        (DOCKERD, "dockerd", "create", 3, 0.3),
    ],
)
def test_each_daemons_call_counters_are_read(text, daemon, call, count, seconds):
    found = metrics.calls(metrics.parse_prometheus(text), daemon)
    assert found[call] == pytest.approx((count, seconds))


def test_clocks_add_the_growth_between_reads_per_level():
    clocks = metrics.Clocks()
    key = ("containerd@2.4.2", "runc", "cri")
    clocks.add(key, {"a/Run": (10.0, 1.0)}, {"a/Run": (13.0, 1.6), "a/Idle": (0.0, 0.0)})
    clocks.add(key, {"Run": (0.0, 0.0)}, {"Run": (3.0, 0.5)}, client=True)
    clocks.add(key, None, {"a/Run": (99.0, 9.0)})  # a failed read adds nothing
    (found,) = clocks.report()
    assert found["calls"] == {"a/Run": {"count": 3.0, "seconds": pytest.approx(0.6)}}
    assert found["client_calls"] == {"Run": {"count": 3.0, "seconds": 0.5}}
    with pytest.raises(ValueError, match="127.0.0.1"):
        metrics.scrape("http://192.0.2.1:1/metrics")


def _samples(rows):
    return pd.DataFrame(
        [
            {"node": "n", "handler": "runc", "concurrency": 1, "warmup": False, "ok": True, "start_ns": 0, **r}
            for r in rows
        ]
    )


def test_the_crosscheck_table_pairs_critest_with_hopbench_by_round_and_adds_the_daemon():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        node = 1 + 0.3 * (i % 2)  # every other round slow: pairs see it on both sides
        for level, scale in (("critest", 1.0), ("cri-critest", 1.02), ("cri", 1.5)):
            ms = 100 * scale * node * math.exp(rng.normal(0, 0.01))
            rows.append(
                {"stack": "containerd", "level": level, "op": "RunPodSandbox", "iteration": i, "duration_ns": ms * 1e6}
            )
    figures = [
        {
            "stack": "containerd",
            "handler": "runc",
            "level": "cri-critest",
            "daemon": "containerd",
            "calls": {"runtime.v1.RuntimeService/RunPodSandbox": {"count": 60, "seconds": 6.0}},
            "client_calls": {"RunPodSandbox": {"count": 60, "seconds": 6.3}},
        }
    ]
    table = crosscheck.table(_samples(rows), figures)
    (row,) = table.to_dict("records")
    assert row["ratio"] == pytest.approx(1.02, abs=0.01) and row["agree"] == "yes"
    assert row["kubelet/critest requests"] == pytest.approx(1.5 / 1.02, abs=0.02)
    assert row["daemon mean ms"] == pytest.approx(100) and row["client mean ms"] == pytest.approx(105)
    assert row["client − daemon ms"] == pytest.approx(5)
    view = crosscheck.daemon_view(figures, {"cri-critest"})
    assert list(view["daemon calls"]) == [60] and list(view["client calls"]) == [60]


def test_the_null_rows_give_each_clients_cost_per_op():
    rows = [
        {"stack": "null", "level": lv, "op": "StartContainer", "iteration": i, "duration_ns": us * 1000}
        for i in range(10)
        for lv, us in (("cri-critest", 500 + i), ("critest", 400 + i))
    ]
    (row,) = crosscheck.overhead(_samples(rows)).to_dict("records")
    assert row["hopbench − critest p50 µs"] == pytest.approx(100)


def test_the_control_index_says_how_much_slower_the_node_was():
    rng = np.random.default_rng(1)

    def run(factor):
        return _samples(
            [
                {
                    "stack": "none",
                    "level": "control",
                    "op": op,
                    "iteration": i,
                    "duration_ns": base * factor * math.exp(rng.normal(0, 0.05)) * 1e6,
                }
                for i in range(30)
                for op, base in (("cpu-loop", 20), ("syscall-loop", 4), ("runc create", 60))
            ]
        )

    idx = control.index(run(1.0), run(1.28))
    assert (
        1.2 < idx["ratio"] < 1.36
        and idx["lo"] > 1.15
        and set(idx["ops"]) == {"cpu-loop", "syscall-loop", "runc create"}
    )
    assert "% slower than A" in control.sentence(idx, "A", "B")
    same = control.index(run(1.0), run(1.0))
    assert same["lo"] <= 1 <= same["hi"] and "no clearly different speed" in control.sentence(same, "A", "B")
    no_control = run(1.0).assign(level="cri")
    assert control.index(run(1.0), no_control) == {} and "unknown" in control.sentence({}, "A", "B")
    table = control.relative(pd.DataFrame({"ratio": [1.28]}), idx)
    assert table["ratio_vs_control"].iloc[0] == pytest.approx(1.28 / idx["ratio"])
