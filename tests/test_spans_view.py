"""The span view (bench/controller/spans.py) on planted spans whose parts are known: client,
server, transport, shim, CNI and daemon per call; the waterfall; what tracing costs. Real spans
from containerd and CRI-O are tests/integration/test_traces.py's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from bench.controller import spans as sv
from bench.controller.results import RunStore
from bench.controller.run import Run

MS = 1_000_000


def span(trace, sid, parent, name, kind, start_ms, end_ms, service="containerd", **where):
    base = {"stack": "", "handler": "", "iteration": -1, "concurrency": 0, "worker": -1, "warmup": False, "level": ""}
    return {
        "run_id": "r1",
        "node": "local",
        **base,
        **where,
        "service": service,
        "trace_id": trace,
        "span_id": sid,
        "parent_span_id": parent,
        "name": name,
        "span_kind": kind,
        "start_unix_ns": int(start_ms * MS),
        "end_unix_ns": int(end_ms * MS),
        "status": 0,
        "attributes": "{}",
    }


def lifecycle(i: int, stack: str = "containerd@2.4.2+traced", slow: float = 0.0) -> list[dict]:
    """One pod start-up: RunPodSandbox 10 ms (server 9: CNI 3, a shim call 2), CreateContainer
    4 ms (server 3.5), StartContainer 6 ms (server 5: shim 4, nested in it a runc span)."""
    where = {"stack": stack, "handler": "runc", "iteration": i, "concurrency": 1, "worker": 0, "warmup": i == 0}
    where["level"] = "cri"
    t, o = f"t{stack}{i}", 100.0 * i
    return [
        span(t, f"root{i}", "", "lifecycle", "internal", o, o + 30 + slow, service="hopbench", **where),
        span(t, f"c1{i}", f"root{i}", "RunPodSandbox", "client", o, o + 10 + slow, service="hopbench", **where),
        span(t, f"s1{i}", f"c1{i}", "runtime.v1.RuntimeService/RunPodSandbox", "server", o + 0.5, o + 9.5 + slow),
        span(t, f"n1{i}", f"s1{i}", "cni.setup_pod_network", "internal", o + 1, o + 4),
        span(t, f"k1{i}", f"s1{i}", "containerd.task.v3.Task/Create", "client", o + 5, o + 7),
        span(t, f"c2{i}", f"root{i}", "CreateContainer", "client", o + 11, o + 15, service="hopbench", **where),
        span(t, f"s2{i}", f"c2{i}", "runtime.v1.RuntimeService/CreateContainer", "server", o + 11.2, o + 14.7),
        span(t, f"c3{i}", f"root{i}", "StartContainer", "client", o + 16, o + 22, service="hopbench", **where),
        span(t, f"s3{i}", f"c3{i}", "runtime.v1.RuntimeService/StartContainer", "server", o + 16.5, o + 21.5),
        span(t, f"k3{i}", f"s3{i}", "containerd.task.v3.Task/Start", "client", o + 17, o + 21),
        span(t, f"r3{i}", f"k3{i}", "runtimeOCI.start", "internal", o + 17.5, o + 20),
    ]


def test_each_call_is_cut_into_client_server_transport_shim_cni_and_daemon():
    spans = pd.DataFrame([s for i in range(8) for s in lifecycle(i)])
    parts = sv.call_parts(spans).set_index(["iteration", "op"])
    run = parts.loc[(3, "RunPodSandbox")]
    assert (run["client"], run["server"], run["transport"]) == (10.0, 9.0, 1.0)
    assert (run["CNI"], run["shim"], run["daemon"]) == (3.0, 2.0, 4.0)
    start = parts.loc[(3, "StartContainer")]
    assert start["shim"] == 4.0 and start["daemon"] == 1.0  # the runc span inside the shim call counts once
    rows = sv.hop_rows(spans).set_index("op")
    assert list(rows.index) == ["RunPodSandbox", "CreateContainer", "StartContainer"]
    assert rows.loc["CreateContainer", "n"] == 7 and rows.loc["CreateContainer", "traced"] == 1.0
    assert abs(rows.loc["CreateContainer", "transport (ms)"] - 0.5) < 1e-9


def test_a_shim_that_traces_splits_its_call_into_ttrpc_and_its_own_server_span():
    """+traced-shim: the shim answers containerd's Task/Create client span (2 ms) with a server
    span of the same name (1.5 ms); a shim without that build leaves both parts NaN, not 0."""
    stack = "containerd@2.4.2+traced-shim"
    spans = []
    for i in range(8):
        life = lifecycle(i, stack)
        o = 100.0 * i
        life.append(
            span(f"t{stack}{i}", f"h1{i}", f"k1{i}", "containerd.task.v3.Task/Create", "server", o + 5.2, o + 6.7)
        )
        spans += life
    parts = sv.call_parts(pd.DataFrame(spans)).set_index(["iteration", "op"])
    run = parts.loc[(3, "RunPodSandbox")]
    assert run["shim"] == 2.0 and abs(run["shim server"] - 1.5) < 1e-9 and abs(run["ttrpc"] - 0.5) < 1e-9
    assert pd.isna(parts.loc[(3, "StartContainer"), "shim server"])  # no server span under Task/Start here
    rows = sv.hop_rows(pd.DataFrame(spans)).set_index("op")
    assert abs(rows.loc["RunPodSandbox", "shim server (ms)"] - 1.5) < 1e-9
    plain = sv.hop_rows(pd.DataFrame([s for i in range(8) for s in lifecycle(i)])).set_index("op")
    assert pd.isna(plain.loc["RunPodSandbox", "shim server (ms)"]) and plain.loc["RunPodSandbox", "shim (ms)"] == 2.0


def test_the_shim_build_cost_pairs_the_shim_tracing_twin_with_the_traced_one():
    names = ["containerd@2.4.2", "containerd@2.4.2+traced", "containerd@2.4.2+traced-shim"]
    assert sv.tracing_pairs(names) == [("containerd@2.4.2", "containerd@2.4.2+traced")]
    assert sv.tracing_pairs(names, sv.TRACED_SHIM, sv.TRACED) == [
        ("containerd@2.4.2+traced", "containerd@2.4.2+traced-shim")
    ]
    rows = []
    for stack, ms in (("containerd@2.4.2+traced", 10.0), ("containerd@2.4.2+traced-shim", 12.0)):
        for i in range(10):
            rows.append(
                {
                    **{"stack": stack, "handler": "runc", "level": "cri", "concurrency": 1, "op": "CreateContainer"},
                    **{"iteration": i, "warmup": False, "ok": True, "duration_ns": int((ms + i / 100) * MS)},
                }
            )
    (row,) = sv.cost_rows(pd.DataFrame(rows), shim=True).to_dict("records")
    assert abs(row["shim_tracing shim / release shim"] - 1.2) < 0.01 and row["CI low"] > 1.0
    assert sv.cost_rows(pd.DataFrame(rows)).empty  # no untraced instance: no tracing pair


def test_a_call_the_runtime_did_not_trace_counts_as_untraced_not_as_zero():
    spans = pd.DataFrame([s for i in range(1, 4) for s in lifecycle(i) if not s["span_id"].startswith("s2")])
    rows = sv.hop_rows(spans).set_index("op")
    assert rows.loc["CreateContainer", "traced"] == 0.0
    assert pd.isna(rows.loc["CreateContainer", "server (ms)"]) and rows.loc["CreateContainer", "client (ms)"] == 4.0


def test_the_tracing_cost_pairs_each_traced_twin_with_its_untraced_instance():
    names = ["containerd@2.4.2", "containerd@2.4.2+traced", "crio@1.36.3+traced", "docker@29.8.1-dev+cgroupfs"]
    assert sv.tracing_pairs(names) == [("containerd@2.4.2", "containerd@2.4.2+traced")]
    rows = []
    for stack, ms in (("containerd@2.4.2", 10.0), ("containerd@2.4.2+traced", 11.0)):
        for i in range(10):
            rows.append(
                {
                    **{"stack": stack, "handler": "runc", "level": "cri", "concurrency": 1, "op": "RunPodSandbox"},
                    **{"iteration": i, "warmup": False, "ok": True, "duration_ns": int((ms + i / 100) * MS)},
                }
            )
    cost = sv.cost_rows(pd.DataFrame(rows))
    (row,) = cost.to_dict("records")
    assert abs(row["traced / untraced"] - 1.1) < 0.01 and row["CI low"] <= row["traced / untraced"] <= row["CI high"]


def test_the_report_section_has_a_waterfall_per_stack_and_the_hop_table(tmp_path):
    store = RunStore(tmp_path, "r1")
    store.update_meta(node="local", scenario={"name": "traces", "tracing": True})
    for i in range(8):
        for s in lifecycle(i) + lifecycle(i, "crio@1.36.3+traced", slow=i):
            store.add_record("spans.jsonl", s)
    store.update_meta(status="complete")
    store.close()
    assert (store.dir / "spans.parquet").exists()
    run = Run(store.dir)
    (section,) = sv.VIEW.render(run)
    images = [b for b in section.blocks if getattr(b, "src", "").startswith("data:image/png")]
    assert len(images) == 2
    assert "containerd 112" in section.blocks[0].text and "hopbench 64" in section.blocks[0].text
    # The median start-up of CRI-O's lifecycles 1..7 (0 is the warm-up): slow grows with i.
    trace = sv.median_startup_trace(run.spans, "crio@1.36.3+traced")
    assert trace == "tcrio@1.36.3+traced4"
    assert json.loads(run.spans.iloc[0]["attributes"]) == {}


def test_a_kubelets_cri_calls_are_cut_up_and_given_the_stack_its_node_name_names():
    """Level kube: the kubelet's client span for RunPodSandbox (its host.name the stack's kubelet
    node) inside one of our lifecycles; the runtime's server span under it. Its housekeeping
    outside every lifecycle is left out."""
    stack = "containerd@2.4.2+traced"
    where = {"stack": stack, "handler": "runc", "iteration": 2, "concurrency": 1, "worker": 0, "warmup": False}
    where["level"] = "kube"
    host = json.dumps({"host.name": "hb-kube-containerd-2.4.2-traced"})
    rows = [
        span("ours", "root", "", "lifecycle", "internal", 0, 1000, service="hopbench", **where),
        span("k", "kc", "sync", "runtime.v1.RuntimeService/RunPodSandbox", "client", 10, 60, service="kubelet"),
        span("k", "ks", "kc", "runtime.v1.RuntimeService/RunPodSandbox", "server", 11, 59),
        span("k", "cni", "ks", "cni.setup_pod_network", "internal", 20, 40),
        span("h", "lc", "", "runtime.v1.RuntimeService/ListContainers", "client", 2000, 2001, service="kubelet"),
    ]
    for r in rows:
        if r["service"] == "kubelet":
            r["attributes"] = host
    parts = sv.call_parts(pd.DataFrame(rows))
    (call,) = parts.to_dict("records")
    assert (call["op"], call["stack"], call["level"], call["iteration"], call["caller"]) == (
        "RunPodSandbox",
        stack,
        "kube",
        2,
        "kubelet",
    )
    assert (call["client"], call["server"], call["CNI"], call["daemon"]) == (50.0, 48.0, 20.0, 28.0)


KEPT = Path(__file__).resolve().parents[1] / "results" / "kept" / "20261206T045328Z-traces-local-b02e"


def test_the_kept_traced_run_has_every_lifecycles_runtime_spans_a_waterfall_per_stack_and_the_cost(tmp_path):
    """scenarios/traces.yaml, kept: containerd, CRI-O and Docker each beside its +traced twin, 30
    lifecycles + 3 warm-up at 1 and 8 in flight. Every call of containerd's and CRI-O's twins
    has the runtime's span under it; Docker's none (cri-dockerd passes no traceparent on); the
    report draws a waterfall per stack and gives traced / untraced per op."""
    run = tmp_path / KEPT.name
    shutil.copytree(KEPT, run)
    r = Run(run)
    parts = sv.call_parts(r.spans)
    measured = parts[parts["level"] == "cri"]
    for stack in ("containerd@2.4.2+traced", "crio@1.36.3+traced"):
        mine = measured[measured["stack"] == stack]
        assert len(mine) > 600 and mine["server"].notna().all(), stack
    docker = measured[measured["stack"] == "docker@29.8.1-dev+traced"]
    one = docker[docker["concurrency"] == 1]
    # cri-dockerd passes no traceparent on: dockerd's Engine API spans are joined by time, one
    # lifecycle in flight only (RunPodSandbox: the pause container's 7 Engine API calls).
    assert one["server"].notna().all() and one["joined"].str.startswith("time").all()
    assert docker[docker["concurrency"] == 8]["server"].isna().all()
    assert (one[one["op"] == "RunPodSandbox"]["joined"] == "time (7 Engine API calls)").all()
    rows = sv.hop_rows(r.spans).set_index(["stack", "concurrency", "op"])
    start = rows.loc[("containerd@2.4.2+traced", 1, "StartContainer")]
    assert start["shim (ms)"] > 0.5 * start["server (ms)"]  # the shim's Task/Create + Task/Start
    assert rows.loc[("crio@1.36.3+traced", 1, "RunPodSandbox"), "CNI (ms)"] > 0
    cost = sv.cost_rows(r.samples)
    assert set(cost["stack"]) == {"containerd@2.4.2", "crio@1.36.3", "docker@29.8.1-dev"}
    assert cost[["CI low", "CI high"]].notna().all().all()
    # The section alone (the whole report of this run is `hopbench report`, tests/test_report*.py's
    # business): a waterfall per instance, traced or not, and the cost table.
    (section,) = sv.VIEW.render(r)
    images = [b for b in section.blocks if getattr(b, "src", "").startswith("data:image/png")]
    assert len(images) == 6
    assert any("What tracing costs" in getattr(b, "text", "") for b in section.blocks)


KUBE = KEPT.parent / "20261206T045629Z-traces-kube-local-f6b7"


def test_the_kept_kube_run_cuts_up_the_kubelets_calls_with_containerds_spans_under_them(tmp_path):
    """scenarios/traces-kube.yaml, kept: the kubelet of each +traced instance traced its CRI calls;
    containerd's server span is under each of the pod lifecycle's calls; Docker's calls get
    dockerd's spans by time."""
    run = tmp_path / KUBE.name
    shutil.copytree(KUBE, run)
    rows = sv.hop_rows(Run(run).spans).set_index(["stack", "op"])
    for op in ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "StopPodSandbox"):
        row = rows.loc[("containerd@2.4.2+traced", op)]
        assert row["caller"] == "kubelet" and row["n"] == 12 and row["traced"] == 1.0, (op, row)
        # Docker's: dockerd's Engine API spans joined by time (cri-dockerd passes no context on).
        assert rows.loc[("docker@29.8.1-dev+traced", op), "traced"] == 1.0
    assert rows.loc[("containerd@2.4.2+traced", "StartContainer"), "shim (ms)"] > 0


HOPS = KEPT.parent / "20261206T045925Z-traces-hops-local-fdd8"


def test_the_three_views_of_the_runtimes_part_agree_where_they_see_the_same_calls_and_say_why_not(tmp_path):
    """scenarios/traces-hops.yaml, kept: the runtime alone (differential) <= the runtime inside the
    stack (split) <= the daemon's call to it (spans) for the ops that start a container; where the
    split's runtime part does not fit in the span's call (containerd deletes a task in its exit
    handler, outside the stop call's spans), the table says so."""
    run = tmp_path / HOPS.name
    shutil.copytree(HOPS, run)
    views = sv.three_views(Run(run)).set_index(["stack", "op"])
    for key in (("containerd@2.4.2+traced", "StartContainer"), ("crio@1.36.3+traced", "CreateContainer")):
        v = views.loc[key]
        alone, inside, call = (
            v["differential: runtime alone (ms)"],
            v["split: runtime in the stack (ms)"],
            v["spans: shim call (ms)"],
        )
        assert alone <= inside <= call and v["agree"], (key, v)
    stop = views.loc[("containerd@2.4.2+traced", "StopContainer")]
    assert not stop["agree"] and "exit handler" in stop["why they differ"]
    assert views.loc[("crio@1.36.3+traced", "StopContainer"), "why they differ"].startswith("CRI-O's oci StopContainer")


SHIM = KEPT.parent / "20261206T072009Z-traces-shim-local-49db"


def test_the_shim_tracing_build_splits_the_shim_call_and_is_weighed_against_the_release_build(tmp_path):
    """scenarios/traces-shim.yaml, kept: the shim built with shim_tracing answers containerd's
    Task/Create and Task/Start with spans of its own, so the shim call cuts into ttrpc and the
    shim's own span, and, beside the split's runc timing of the same lifecycles, into runc and the
    shim's own work; the build's cost against the release-style one is a ratio per op."""
    run = tmp_path / SHIM.name
    shutil.copytree(SHIM, run)
    r = Run(run)
    rows = sv.of(r).set_index(["stack", "level", "concurrency", "op"])
    start = rows.loc[("containerd@2.4.2+traced-shim", "cri", 1, "StartContainer")]
    assert 0 < start["ttrpc (ms)"] < start["shim server (ms)"] < start["shim (ms)"]
    assert pd.isna(rows.loc[("containerd@2.4.2+traced", "cri", 1, "StartContainer"), "shim server (ms)"])
    views = sv.three_views(r).set_index(["stack", "op"])
    own = views.loc[("containerd@2.4.2+traced-shim", "StartContainer")]
    assert own["agree"] and 0 < own["shim's own work (ms)"] < own["split level: shim's own span (ms)"]
    cost = sv.cost_rows(r.samples, shim=True)
    assert len(cost) == 28 and set(cost["stack"]) == {"containerd@2.4.2+traced"}
    assert (cost["CI low"] <= cost["shim_tracing shim / release shim"]).all()
