"""Level kube: a real kubelet v1.36 per stack (standalone, static pods), built and installed by kube.yml.

Provisioning runs the playbook for real (the build is cached by version: minutes the first
time on 2 cores, seconds after). crio/runc is left out: under kubelet 1.36 on this hybrid-cgroup
node runc refuses the hugetlb limits kubelet asks for through CRI-O ("cannot set hugetlb limit:
container could not join or create cgroup": hugetlb is bound to the cgroup v2 hierarchy here);
the level reports that as CreateContainerError at once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.controller.results import load_run, read_jsonl
from bench.ops import KUBE_LIFECYCLE_OPS

from .conftest import no_pods_left, playbook, run_hopbench

pytestmark = pytest.mark.integration
KUBE_JSON = Path("/etc/hopbench/kube.json")


@pytest.fixture(scope="module")
def kubelet_installed(provisioned):
    playbook("kube.yml")
    desc = json.loads(KUBE_JSON.read_text())
    out = subprocess.run([desc["kubelet"], "--version"], capture_output=True, text=True, check=True).stdout
    assert desc["version"] in out and desc["version"].startswith("1.36.")
    return desc


def test_kube_yml_installs_the_kubelet_and_changes_nothing_the_second_time(kubelet_installed):
    again = playbook("kube.yml")
    assert all(h["changed"] == 0 for h in again.values()), again


def test_pods_through_a_kubelet_per_stack_reach_ready_and_go_away(kubelet_installed, tmp_path):
    scen = tmp_path / "kube.yaml"
    scen.write_text(
        "schema: 1\nname: itkube\ntargets: [containerd/runc, docker/runc]\nlevels: [kube]\n"
        "iterations: 3\nwarmup: 1\nconcurrency: [1, 2]\ntimeout_s: 60\nmax_failures: 2\n"
    )
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(scen), "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    assert meta["status"] == "complete"
    assert set(samples["level"]) == {"kube"}
    assert {s.split("@")[0] for s in samples["stack"]} == {"containerd", "docker"}
    assert samples["ok"].all() and (samples["duration_ns"] >= 0).all()
    for _, life in samples.groupby(["stack", "concurrency", "iteration"]):
        assert list(life.sort_values("start_ns")["op"]) == list(KUBE_LIFECYCLE_OPS)
    checks = read_jsonl(run / "checks.jsonl")
    assert len(checks) == 2 * 2 * 4 and all(c["ok"] for c in checks), checks
    events = read_jsonl(run / "events.jsonl")
    assert any("failCgroupV1 false" in e.get("message", "") for e in events)
    # The kubelet's own view, before and after, and its config.
    names = {p.name for p in (run / "kube").iterdir()}
    for ident in {s.replace("@", "-") for s in samples["stack"]}:
        assert {f"{ident}-config.json", f"{ident}-metrics-before.txt", f"{ident}-metrics-after.txt"} <= names
        after = (run / "kube" / f"{ident}-metrics-after.txt").read_text()
        assert 'kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"}' in after
    # Nothing left: pods, kubelets, mounts, cgroups.
    no_pods_left(meta["run_id"], ("containerd", "docker"))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "--hostname-override hb-kube-" not in ps
    assert "/kube-" not in Path("/proc/self/mountinfo").read_text()
    assert not list(Path("/sys/fs/cgroup").glob("*/hopbench-kube-*"))
