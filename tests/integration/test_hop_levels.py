"""Levels engine, containerd and split against the real daemons, and the hops scenario end to end."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import grpc
import pandas as pd
import pytest

from bench import stacks
from bench.controller.hops import differential, split_table
from bench.controller.results import load_run, read_jsonl
from bench.node import kubelet
from bench.node.levels import Turn
from bench.node.levels.containerd import NAMESPACE, ContainerdLevel
from bench.node.levels.engine import EngineLevel
from bench.ops import CONTAINERD_LIFECYCLE_OPS, ENGINE_LIFECYCLE_OPS, PARTS
from bench.scenario import Workload

from .conftest import run_hopbench

pytestmark = pytest.mark.integration
IMAGE = "/var/lib/hopbench/images/workload.oci.tar"
WORKLOAD = Workload()


def stack(name: str) -> stacks.Stack:
    """The default instance of stack `name` (containerd -> containerd@2.4.2)."""
    found = {s.kind: s for s in stacks.discover() if s.default}
    if name not in found or found[name].unavailable:
        pytest.fail(f"stack {name} is not provisioned on this machine: {found.get(name)}")
    return found[name]


def crio_available() -> bool:
    found = {s.kind: s for s in stacks.discover() if s.default}
    return "crio" in found and not found["crio"].unavailable


def test_engine_level_runs_pods_through_dockerd_and_leaves_nothing(provisioned):
    docker = stack("docker")
    run_id = f"it-engine-{uuid.uuid4().hex[:8]}"
    level = EngineLevel(
        docker.extra["docker_endpoint"], docker.pause_image, WORKLOAD, docker.workload_image, run_id, 60
    )
    try:
        for i in range(2):
            out = level.lifecycle(Turn(i))
            results, problem = out.timed, out.problem
            assert problem == ""
            assert [t.op for t in results] == list(ENGINE_LIFECYCLE_OPS)
            assert all(t.ok and t.duration_ns > 0 for t in results), [t.error for t in results]
        assert level.client.containers({kubelet.RUN_LABEL: run_id}) == []
    finally:
        level.cleanup()
        level.close()


def test_engine_level_reports_a_missing_image_as_a_failed_op(provisioned):
    docker = stack("docker")
    level = EngineLevel(
        docker.extra["docker_endpoint"], docker.pause_image, WORKLOAD, "localhost/hopbench/absent:0", "it-x", 60
    )
    try:
        results = level.lifecycle(Turn(0)).timed
        assert [t.op for t in results] == ["PauseCreate", "PauseStart", "ContainerCreate"]
        assert not results[-1].ok and "404" in (results[-1].error or "")
        # The pause container it made is gone again.
        assert level.client.containers({kubelet.RUN_LABEL: "it-x"}) == []
    finally:
        level.close()


@pytest.mark.parametrize("stack_name", ["containerd", "docker"])
def test_containerd_level_runs_tasks_through_the_stacks_containerd(provisioned, tmp_path, stack_name):
    s = stack(stack_name)
    conf = s.extra["containerd_level"]
    handler = s.handlers["runc"]
    run_id = f"it-ctrd-{uuid.uuid4().hex[:8]}"
    level = ContainerdLevel(
        conf["endpoint"],
        conf["rootfs"],
        handler.extra.get("wrapper") or handler.binary,
        IMAGE,
        tmp_path / "work",
        run_id,
        60,
    )
    try:
        for i in range(2):
            out = level.lifecycle(Turn(i))
            results, problem = out.timed, out.problem
            assert problem == ""
            assert [t.op for t in results] == list(CONTAINERD_LIFECYCLE_OPS)
            assert all(t.ok and t.duration_ns > 0 for t in results), [t.error for t in results]
        left = level.containers.List(
            level_list_request(run_id), metadata=(("containerd-namespace", NAMESPACE),), timeout=10
        ).containers
        assert list(left) == []
    finally:
        level.cleanup()
        level.close()
    assert not (tmp_path / "work").exists()


def level_list_request(run_id: str):
    from bench._containerd.services.containers.v1 import containers_pb2

    return containers_pb2.ListContainersRequest(filters=[f'labels."{kubelet.RUN_LABEL}"=={run_id}'])


def test_containerd_level_cleanup_removes_a_running_task(provisioned, tmp_path):
    s = stack("containerd")
    conf = s.extra["containerd_level"]
    level = ContainerdLevel(
        conf["endpoint"], conf["rootfs"], s.handlers["runc"].binary, IMAGE, tmp_path / "w", "it-c", 60
    )
    try:
        cid = "hb-it-left-" + uuid.uuid4().hex[:6]
        level.live.add(cid)
        level._create(cid)
        level._task_create(cid, tmp_path / "w" / "out")
        n, errors = level.cleanup()
        assert (n, errors) == (1, [])
        with pytest.raises(grpc.RpcError) as err:
            level.containers.Get(level_get_request(cid), metadata=(("containerd-namespace", NAMESPACE),), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        level.close()


def level_get_request(cid: str):
    from bench._containerd.services.containers.v1 import containers_pb2

    return containers_pb2.GetContainerRequest(id=cid)


def test_the_wrapper_traces_only_while_the_trace_file_exists(provisioned, tmp_path):
    s = stack("containerd")
    trace = Path(s.extra["trace_path"])
    wrapper = s.handlers["runc"].extra["wrapper"]
    assert not trace.exists(), "a trace file is left over from an earlier run"
    subprocess.run([wrapper, "--root", str(tmp_path), "state", "nope"], capture_output=True, check=False)
    assert not trace.exists()
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.write_text("")
    try:
        proc = subprocess.run([wrapper, "--root", str(tmp_path), "state", "nope"], capture_output=True, check=False)
        assert proc.returncode == 1  # runc's own status comes through
        line = trace.read_text()
        fields = line.rstrip("\n").split("\t")
        assert fields[0] == "oci" and fields[4] == "1" and fields[5:] == ["--root", str(tmp_path), "state", "nope"]
        entry, fork, exit_ = (int(x) for x in fields[1:4])
        assert entry <= fork < exit_
    finally:
        os.unlink(trace)


def write_scenario(tmp_path: Path, levels: str, iterations: int, kinds: tuple[str, ...]) -> Path:
    scen = tmp_path / "scenario.yaml"
    targets = ", ".join(f"{k}/runc" for k in kinds)
    scen.write_text(
        f"schema: 1\nname: ithops\ntargets: [{targets}]\nlevels: {levels}\n"
        f"iterations: {iterations}\nwarmup: 1\nconcurrency: [1]\n"
    )
    return scen


def test_hops_levels_end_to_end(provisioned, tmp_path):
    """Every level of both stacks in one run: per-level samples, hop costs, a split that adds up."""
    kinds = ("containerd", "docker", "crio") if crio_available() else ("containerd", "docker")
    scen = write_scenario(tmp_path, "[cri, split, engine, containerd, oci]", 5, kinds)
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(scen), "--results", str(results))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    assert meta["status"] == "complete"
    instances = {stacks.kind_of(str(k)): str(k) for k in samples["stack"].unique()}
    levels = {stacks.kind_of(str(k)): set(v) for k, v in samples.groupby("stack")["level"].unique().items()}
    expected = {
        "containerd": {"cri", "split", "containerd"},
        "docker": {"cri", "split", "engine", "containerd"},
        "crio": {"cri", "split"},  # CRI-O has no engine or containerd API below it
        "none": {"oci", "control"},  # level control joins every run's interleaved lifecycles
    }
    assert levels == {k: expected[k] for k in (*kinds, "none")}
    assert samples["ok"].all()
    checks = read_jsonl(run / "checks.jsonl")
    assert all(c["ok"] for c in checks) and len(checks) >= 6 * 6

    hops = differential(samples)
    docker_start = hops[(hops["target"] == f"{instances['docker']}/runc") & (hops["cri op"] == "StartContainer")]
    assert list(docker_start["hop"]) == ["cri-dockerd", "dockerd", "containerd + shim"]
    assert (hops["CI low"] <= hops["hop cost (ms)"]).all() and (hops["hop cost (ms)"] <= hops["CI high"]).all()

    splits = read_jsonl(run / "splits.jsonl")
    assert splits, "level split recorded nothing"
    for row in splits:
        assert sum(row[f"{p}_ns"] for p in PARTS) == row["duration_ns"]
    by_op = {(stacks.kind_of(r["stack"]), r["op"]): r for r in splits if not r["warmup"]}
    for kind in kinds:
        # CRI-O runs `runc create` inside CreateContainer, the others inside StartContainer.
        create = by_op[(kind, "CreateContainer" if kind == "crio" else "StartContainer")]
        start = by_op[(kind, "StartContainer")]
        assert "oci:create" in create["calls"] and "oci:start" in start["calls"] and start["runtime_ns"] > 0
        sandbox = by_op[(kind, "RunPodSandbox")]
        assert "cni:ADD" in sandbox["calls"] and sandbox["network_ns"] > 0
    table = split_table(pd.DataFrame(splits))
    assert set(table["target"]) == {f"{instances[k]}/runc" for k in kinds}
    calls = read_jsonl(run / "calls.jsonl")
    assert {c["object"] for c in calls} <= {"sandbox", "container"}
    assert not Path(stack("containerd").extra["trace_path"]).exists(), "the trace was left armed"

    html = (run / "report.html").read_text()
    for heading in ("The same work at each level", "Hop cost between adjacent levels", "Where each CRI op"):
        assert heading in html
