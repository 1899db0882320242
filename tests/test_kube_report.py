"""The report's Kubernetes figures from fixed inputs: Prometheus text, samples, memory rows."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench import RESULTS_SCHEMA_VERSION
from bench.controller import kube
from bench.controller.run import Run

BEFORE = """# HELP kubelet_runtime_operations_duration_seconds [ALPHA] Duration in seconds of runtime operations.
# TYPE kubelet_runtime_operations_duration_seconds histogram
kubelet_runtime_operations_duration_seconds_bucket{operation_type="run_podsandbox",le="0.1"} 1
kubelet_runtime_operations_duration_seconds_bucket{operation_type="run_podsandbox",le="0.2"} 1
kubelet_runtime_operations_duration_seconds_bucket{operation_type="run_podsandbox",le="+Inf"} 1
kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"} 0.05
kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"} 1
kubelet_runtime_operations_duration_seconds_count{operation_type="version"} 3
kubelet_pod_start_sli_duration_seconds_sum 0
kubelet_pod_start_sli_duration_seconds_count 0
"""
AFTER = """kubelet_runtime_operations_duration_seconds_bucket{operation_type="run_podsandbox",le="0.1"} 3
kubelet_runtime_operations_duration_seconds_bucket{operation_type="run_podsandbox",le="0.2"} 5
kubelet_runtime_operations_duration_seconds_bucket{operation_type="run_podsandbox",le="+Inf"} 5
kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"} 0.55
kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"} 5
kubelet_runtime_operations_duration_seconds_count{operation_type="version"} 11
kubelet_pod_start_sli_duration_seconds_sum 4.0
kubelet_pod_start_sli_duration_seconds_count 4
not a metric line
"""


def test_prometheus_text_parses_names_labels_and_values_and_skips_the_rest():
    parsed = kube.parse_prometheus(AFTER)
    key = ("kubelet_runtime_operations_duration_seconds_count", frozenset({("operation_type", "run_podsandbox")}))
    assert parsed[key] == 5
    assert parsed[("kubelet_pod_start_sli_duration_seconds_count", frozenset())] == 4
    assert len(parsed) == 8


def test_a_histogram_grows_by_the_difference_of_two_scrapes():
    count, total, buckets = kube.histogram_delta(
        kube.parse_prometheus(BEFORE),
        kube.parse_prometheus(AFTER),
        "kubelet_runtime_operations_duration_seconds",
        operation_type="run_podsandbox",
    )
    assert count == 4 and total == pytest.approx(0.5)
    assert buckets == [(0.1, 2.0), (0.2, 4.0), (math.inf, 4.0)]
    # The 2nd of 4 observations is at the top of the first bucket; the 3rd halfway up the next.
    assert kube.bucket_quantile(buckets, 0.5) == pytest.approx(0.1)
    assert kube.bucket_quantile(buckets, 0.75) == pytest.approx(0.15)
    assert math.isnan(kube.bucket_quantile([], 0.5))


def run_with(tmp_path, level="kube", ident="containerd-2.4.2"):
    """A run folder holding one kubelet's scrapes, loaded as the report loads it."""
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / f"{level}-{ident}-metrics-before.txt").write_text(BEFORE)
    (tmp_path / "kube" / f"{level}-{ident}-metrics-after.txt").write_text(AFTER)
    meta = {"schema_version": RESULTS_SCHEMA_VERSION, "run_id": tmp_path.name}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return Run(tmp_path)


def samples_of(rows):
    base = {"node": "local", "handler": "runc", "iteration": 0, "worker": 0, "warmup": False, "ok": True}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_the_kubelets_view_sits_beside_the_cri_levels_for_the_same_stack(tmp_path):
    samples = samples_of(
        [
            {"stack": "containerd@2.4.2", "level": "cri", "op": "RunPodSandbox", "duration_ns": ms * 1_000_000,
             "concurrency": 1, "iteration": i}
            for i, ms in enumerate((100, 120, 140))
        ]
    )  # fmt: skip
    run = run_with(tmp_path)
    view = kube.kubelet_view(kube.scrapes(run), samples)
    row = view[view["cri op"] == "RunPodSandbox"].iloc[0]
    assert row["stack"] == "containerd@2.4.2" and row["level"] == "kube"
    assert row["kubelet calls"] == 4 and row["kubelet mean (ms)"] == pytest.approx(125.0)
    assert row["cri level n"] == 3 and row["cri level p50 (ms)"] == pytest.approx(120.0)
    calls = kube.kubelet_calls(kube.scrapes(run), samples).iloc[0]
    assert calls["pods started"] == 4 and calls["CRI calls"] == 12 and calls["calls per pod"] == pytest.approx(3.0)
    assert calls["besides the lifecycle"] == "version 8"
    slis = kube.kubelet_slis(kube.scrapes(run), samples).iloc[0]
    assert slis["pod_start_sli_duration n"] == 4 and slis["pod_start_sli_duration mean (ms)"] == pytest.approx(1000.0)


def test_pod_startup_sums_the_three_start_phases_of_each_complete_lifecycle():
    rows = []
    for i in range(30):
        for op, ms in (("PodScheduled", 10), ("SandboxReady", 200 + i), ("PodReady", 100)):
            rows.append({"stack": "docker@29.8.1-dev", "level": "kube", "op": op, "duration_ns": ms * 1_000_000,
                         "concurrency": 1, "iteration": i})  # fmt: skip
    # A lifecycle that failed at SandboxReady has no startup; a deletion is not part of it.
    at = {"stack": "docker@29.8.1-dev", "level": "kube", "concurrency": 1}
    rows.append({**at, "op": "PodScheduled", "duration_ns": 1, "iteration": 99})
    rows.append({**at, "op": "PodDelete", "duration_ns": 10**9, "iteration": 0})
    table = kube.startup(samples_of(rows))
    (row,) = table.to_dict("records")
    assert row["n"] == 30 and row["p50 (ms)"] == pytest.approx(310 + 14.5)
    assert row["within SLO (p99 ≤ 5 s)"] is True


def test_kubelet_memory_is_per_level_and_stack_with_its_idle_and_peak():
    mib = 1024 * 1024
    rows = []
    for sweep, (pods, rss) in enumerate(((0, 70), (0, 72), (5, 80), (10, 90))):
        rows.append({"phase": "kube", "stack": "containerd@2.4.2", "role": "kubelet", "sweep": sweep,
                     "pods_running": pods, "rss": rss * mib, "pss": (rss - 1) * mib})  # fmt: skip
        rows.append({"phase": "kube", "stack": "containerd@2.4.2", "role": "daemon", "sweep": sweep,
                     "pods_running": pods, "rss": 50 * mib, "pss": 40 * mib})  # fmt: skip
    rows.append({"phase": "hold", "stack": "containerd@2.4.2", "role": "daemon", "sweep": 0, "pods_running": 0,
                 "rss": 999 * mib, "pss": 999 * mib})  # fmt: skip
    (row,) = kube.kubelet_memory(pd.DataFrame(rows)).to_dict("records")
    assert row["kubelet RSS idle (MiB)"] == pytest.approx(71.0)
    assert row["kubelet RSS max (MiB)"] == pytest.approx(90.0) and row["kubelet PSS max (MiB)"] == pytest.approx(89.0)
    assert row["runtime daemons RSS max (MiB)"] == pytest.approx(50.0) and row["max pods running"] == 10


def pod(node="", conditions=(), statuses=(), phase="Pending"):
    return {
        "metadata": {"name": "p"},
        "spec": {"nodeName": node, "containers": [{"name": "workload"}]},
        "status": {"phase": phase, "conditions": [dict(c) for c in conditions], "containerStatuses": list(statuses)},
    }


def test_a_pods_phases_come_from_its_binding_conditions_and_running_containers():
    from bench.node import kubepod

    assert kubepod.reached(pod()) == (set(), "")
    unschedulable = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "1 node(s) had untolerated taint(s)"}])  # fmt: skip
    assert kubepod.pending(unschedulable).startswith("PodScheduled False: Unschedulable 1 node(s)")
    sandbox = pod("n", [{"type": "PodReadyToStartContainers", "status": "True"}])
    assert kubepod.reached(sandbox) == ({"PodScheduled", "SandboxReady"}, "")
    # Ready alone is not enough: every container must be running.
    ready_not_running = pod("n", [{"type": "Ready", "status": "True"}], [{"state": {"terminated": {}}}])
    assert "PodReady" not in kubepod.reached(ready_not_running)[0]
    running = pod("n", [{"type": "Ready", "status": "True"}], [{"state": {"running": {}}}], "Running")
    assert kubepod.reached(running) == ({"PodScheduled", "SandboxReady", "PodReady"}, "")
    stuck = pod("n", statuses=[{"state": {"waiting": {"reason": "CreateContainerError", "message": "no  hugetlb"}}}])
    assert kubepod.reached(stuck)[1] == "CreateContainerError: no hugetlb"
    assert kubepod.reached(pod("n", phase="Failed"))[1].startswith("pod p phase Failed")
    # A container that failed to start: the pod has no message of its own, the runtime's error is said.
    start_error = {"name": "workload", "state": {"terminated": {"reason": "StartError", "exitCode": 128,
                                                                "message": "unable to  freeze"}}}  # fmt: skip
    assert kubepod.reached(pod("n", statuses=[start_error], phase="Failed"))[1] == (
        "pod p phase Failed: container workload terminated: StartError (exit 128): unable to freeze"
    )


def test_the_dockershim_answer_is_kubelet_and_cri_dockerd_minus_dockershim_on_the_same_stack():
    rows = []
    for i in range(20):
        for level, op, ms in (
            ("dockershim", "PodReady", 300),
            ("dockershim", "PodDelete", 600),
            ("kubelet", "SandboxReady", 220),
            ("kubelet", "PodReady", 130),
            ("kubelet", "PodDelete", 650),
        ):
            rows.append({"stack": "docker@20.10.24", "level": level, "op": op, "duration_ns": ms * 1_000_000,
                         "concurrency": 1, "iteration": i})  # fmt: skip
    table = kube.dockershim(samples_of(rows)).set_index("pod")
    assert table.loc["pod start", "dockershim p50 (ms)"] == pytest.approx(300.0)
    assert table.loc["pod start", "kubelet + cri-dockerd p50 (ms)"] == pytest.approx(350.0)
    assert table.loc["pod start", "out of tree - in tree (ms)"] == pytest.approx(50.0)
    assert table.loc["pod stop", "out of tree - in tree (ms)"] == pytest.approx(50.0)
    assert kube.dockershim(samples_of([r for r in rows if r["level"] == "kubelet"])).empty


def test_a_dockershim_kubelet_gets_no_field_it_does_not_know_and_the_stacks_network(tmp_path):
    from pathlib import Path

    from bench import stacks
    from bench.node import kubeletd

    stack = stacks.Stack(
        name="docker@20.10.24", description_path="/etc/hopbench/stacks/docker-distro.json",
        cri_endpoint="unix:///run/x/cri-dockerd.sock", daemons=(), handlers={}, pause_image="localhost/p:1",
        workload_image="localhost/w:1", kind="docker",
        extra={"docker_endpoint": "unix:///run/x/docker.sock", "cni": {"conf_dir": str(tmp_path / "cni")}},
    )  # fmt: skip
    conf = kubeletd.config(stack, Path("/nonexistent/r"), 1, 2, "/cg", cgroup_v1=True, legacy=True)
    assert not {"failCgroupV1", "containerRuntimeEndpoint", "podLogsDir"} & set(conf)
    # Tracing: a current kubelet samples every span to the receiver; a 1.23 one has no such field.
    traced = kubeletd.config(stack, Path("/r"), 1, 2, "/cg", cgroup_v1=True, tracing_endpoint="127.0.0.1:14317")
    assert traced["tracing"] == {"endpoint": "127.0.0.1:14317", "samplingRatePerMillion": 1_000_000}
    assert "tracing" not in kubeletd.config(stack, Path("/r"), 1, 2, "/cg", True, legacy=True, tracing_endpoint="x:1")
    (tmp_path / "cni").mkdir()
    with pytest.raises(kubeletd.KubeletFailed, match="no CNI network list"):
        kubeletd.dockershim_args(stack, tmp_path / "root")
    conflist = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "cniVersion": "1.0.0"}]}
    (tmp_path / "cni" / "10-n.conflist").write_text(json.dumps(conflist))
    args = kubeletd.dockershim_args(stack, tmp_path / "root")
    assert "--docker-endpoint=unix:///run/x/docker.sock" in args
    assert f"--cni-conf-dir={tmp_path / 'root' / 'cni-conf'}" in args
    legacy = json.loads((tmp_path / "root" / "cni-conf" / "10-n.conflist").read_text())
    assert legacy == {**conflist, "cniVersion": "0.4.0", "plugins": [{"type": "bridge", "cniVersion": "0.4.0"}]}
    assert "--pod-infra-container-image=localhost/p:1" in args and "--network-plugin=cni" in args
    import dataclasses

    with pytest.raises(kubeletd.KubeletFailed, match="docker_endpoint"):
        kubeletd.dockershim_args(dataclasses.replace(stack, extra={}), Path("/nonexistent/r"))


def test_a_bad_control_plane_description_names_the_file_and_a_bad_node_name_is_refused(tmp_path):
    from bench.errors import InputError
    from bench.node import apiserver

    path = tmp_path / "control-plane.json"
    path.write_text('{"server": "https://127.0.0.1:16443"}')
    with pytest.raises(InputError, match=f"{path}: not a control plane description"):
        apiserver.ControlPlane.load(path)
    good = {"server": "https://127.0.0.1:16443", "version": "1.36.3", "ca": "c", "ca_key": "k", "client_cert": "a",
            "client_key": "b"}  # fmt: skip
    path.write_text(json.dumps(good))
    cp = apiserver.ControlPlane.load(path)
    assert cp.host_port == ("127.0.0.1", 16443)
    with pytest.raises(InputError, match="DNS-1123"):
        apiserver.issue_node_cert(cp, "Bad_Name/../x", tmp_path)
    config = json.loads(apiserver.kubeconfig(cp, tmp_path / "c.crt", tmp_path / "c.key", "system:node:n"))
    assert config["clusters"][0]["cluster"] == {"server": cp.server, "certificate-authority": "c"}
    assert config["users"][0]["user"]["client-key"] == str(tmp_path / "c.key")


def test_the_dockershim_hop_per_op_compares_the_two_kubelets_own_means():
    view = pd.DataFrame(
        [
            {"level": "dockershim", "stack": "docker@20.10.24", "cri op": "RunPodSandbox", "kubelet calls": 4,
             "kubelet mean (ms)": 300.0},
            {"level": "kubelet", "stack": "docker@20.10.24", "cri op": "RunPodSandbox", "kubelet calls": 4,
             "kubelet mean (ms)": 320.0},
            {"level": "kubelet", "stack": "docker@20.10.24", "cri op": "RemovePodSandbox", "kubelet calls": 0,
             "kubelet mean (ms)": math.nan},
        ]
    )  # fmt: skip
    (row,) = kube.dockershim_ops(view).to_dict("records")
    assert row["cri op"] == "RunPodSandbox" and row["cri-dockerd - dockershim (ms)"] == pytest.approx(20.0)
    assert kube.dockershim_ops(view[view["level"] == "kubelet"]).empty
