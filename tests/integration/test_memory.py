"""The memory sampler against real pods of two stacks, and the density level end to end."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from bench import stacks
from bench.controller.results import load_memory, load_run, read_jsonl
from bench.node import kubelet, memory
from bench.node.cri import CriClient, remove_pod_files

from .conftest import kind_target, no_pods_left, run_hopbench, run_until

pytestmark = pytest.mark.integration


def start_pod(stack: stacks.Stack, run_id: str) -> tuple[CriClient, str, str, kubelet.Pod]:
    client = CriClient(stack.cri_endpoint, 60)
    pod = kubelet.Pod(name=f"hb-mem-{uuid.uuid4().hex[:6]}", run_id=run_id)
    pod.prepare()
    handler = stack.handlers["runc"].runtime_handler
    sandbox_cfg = kubelet.sandbox_config(pod)
    sandbox = client.run_pod_sandbox(sandbox_cfg, handler)
    assert sandbox.ok, sandbox.error
    image = stack.workload_image
    cfg = kubelet.container_config(pod, client.image_id(image), image, [], [])
    container = client.create_container(sandbox.value, cfg, sandbox_cfg)
    assert container.ok, container.error
    assert client.start_container(container.value).ok
    client.wait_running_with_output(container.value)
    return client, str(sandbox.value), str(container.value), pod


def test_sampler_attributes_daemons_shims_and_pod_processes_of_every_stack(provisioned):
    # The default instance of each stack (CRI-O where it is provisioned: its conmon is the shim).
    found = {s.kind: s for s in stacks.discover() if s.default and not s.unavailable}
    chosen = [found[k] for k in ("containerd", "docker", "crio") if k in found]
    assert {"containerd", "docker"} <= {s.kind for s in chosen}
    run_id = f"it-mem-{uuid.uuid4().hex[:8]}"
    pods = []
    try:
        for stack in chosen:
            for _ in range(2):
                pods.append((stack, *start_pod(stack, run_id)))
        procs = memory.Classifier(chosen).classify()
        daemons = {(p.stack, p.name) for p in procs if p.role == "daemon"}
        expected = {
            "containerd": {"containerd"},
            "docker": {"dockerd", "cri-dockerd", "containerd"},
            "crio": {"crio"},
        }
        assert daemons == {(s.name, d) for s in chosen for d in expected[s.kind]}
        for stack, _, sandbox_id, container_id, pod in pods:
            mine = [p for p in procs if p.pod == pod.uid]
            roles = sorted(p.role for p in mine)
            # containerd runs one shim per pod (keyed by the sandbox), dockerd one per container;
            # CRI-O one conmon per container and, for kubelet's default pod (a PID namespace per
            # container), no pause container at all.
            pod_roles = {
                "containerd": ["pause", "workload", "shim"],
                "docker": ["pause", "workload", "shim", "shim"],
                "crio": ["workload", "shim"],
            }[stack.kind]
            assert roles == sorted(pod_roles), (stack.name, mine)
            assert {p.stack for p in mine} == {stack.name}
            assert {p.object_id for p in mine if p.role == "pause"} <= {sandbox_id}
            assert {p.object_id for p in mine if p.role == "workload"} == {container_id}
            assert {p.name for p in mine if p.role == "workload"} == {"hopbench-workload"}
        rows = [memory.measure(p) for p in procs]
        measured = [r for r in rows if r is not None]
        assert measured and all(r["rss"] > 0 and r["pss"] is not None and r["uss"] is not None for r in measured)
        assert all(r["pss"] <= r["rss"] for r in measured)
    finally:
        for _, client, sandbox_id, _, pod in pods:
            client.remove_pod(sandbox_id)
            remove_pod_files(pod)
            client.close()


def density_scenario(tmp_path: Path, steps: str, hold_s: float) -> Path:
    scen = tmp_path / "density.yaml"
    scen.write_text(
        "schema: 1\nname: itdensity\ntargets: [containerd/runc, docker/runc]\nlevels: [density]\n"
        f"density: {{steps: {steps}, hold_s: {hold_s}, interval_s: 0.3}}\n"
    )
    return scen


def test_density_run_measures_memory_per_pod_and_removes_every_pod(provisioned, tmp_path):
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(density_scenario(tmp_path, "[1, 3]", 1.0)), "--results", str(results))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    mem = load_memory(run)
    assert (run / "memory.parquet").exists()
    hold = mem[mem["phase"] == "hold"].assign(target=lambda m: m["target"].map(kind_target))
    assert set(hold["target"]) == {"containerd/runc", "docker/runc"}
    assert set(hold["pods_running"]) == {0, 1, 3}
    pod_rows = hold[hold["role"].isin(["pause", "workload"])]
    assert pod_rows.groupby(["target", "sweep"])["pod"].nunique().groupby("target").max().to_dict() == {
        "containerd/runc": 3,
        "docker/runc": 3,
    }
    assert {kind_target(t) for t in meta["sampler"]} == {"containerd/runc", "docker/runc"}
    assert all(s["sweeps"] > 3 for s in meta["sampler"].values())
    assert set(samples["op"]) == {"RunPodSandbox", "CreateContainer", "StartContainer"} and samples["ok"].all()
    no_pods_left(meta["run_id"])
    assert "Memory per pod (level density)" in (run / "report.html").read_text()


def test_density_run_interrupted_keeps_memory_and_removes_every_pod(provisioned, tmp_path):
    results = tmp_path / "results"
    rc, err, run = run_until(
        ["run", "--scenario", str(density_scenario(tmp_path, "[2, 40]", 30)), "--results", str(results)],
        results,
        "memory.jsonl",
        lambda text: '"pods_running": 2' in text,
        lambda proc: proc.send_signal(signal.SIGINT),
        "2 running pods",
    )
    assert rc == 1, err[-3000:]
    meta, _ = load_run(run)
    assert meta["status"] == "interrupted"
    assert len(load_memory(run)) > 0
    no_pods_left(meta["run_id"])
    events = read_jsonl(run / "events.jsonl")
    assert any("density: removed the" in e.get("message", "") for e in events)
