"""Levels kube and kubelet: a real control plane (etcd, kube-apiserver, kube-scheduler on
loopback) and a real kubelet v1.36 per stack, built, started and configured by kube.yml.

Provisioning runs the playbook for real (builds are cached by version: minutes the first time
on 2 cores, seconds after). crio/runc is left out: under kubelet 1.36 on this hybrid-cgroup
node runc refuses the hugetlb limits kubelet asks for through CRI-O ("cannot set hugetlb limit:
container could not join or create cgroup": hugetlb is bound to the cgroup v2 hierarchy here);
the levels report that as CreateContainerError at once.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest
from cri_api.v1 import api_pb2 as cri

from bench import stacks
from bench.controller.results import load_memory, read_jsonl
from bench.node.apiserver import ApiClient, ControlPlane
from bench.node.cri import CriClient
from bench.node.metrics import parse_prometheus
from bench.ops import DOCKERSHIM_LIFECYCLE_OPS, KUBE_LIFECYCLE_OPS, KUBELET_LIFECYCLE_OPS

from .conftest import no_pods_left, playbook, run_hopbench, run_scenario

pytestmark = pytest.mark.integration
KUBE_JSON = Path("/etc/hopbench/kube.json")
CONTROL_PLANE_JSON = Path("/etc/hopbench/control-plane.json")
STACKS = ("containerd", "docker")


@pytest.fixture(scope="module")
def kube_installed(provisioned):
    playbook("kube.yml")
    desc = json.loads(KUBE_JSON.read_text())
    out = subprocess.run([desc["kubelet"], "--version"], capture_output=True, text=True, check=True).stdout
    assert desc["version"] in out and desc["version"].startswith("1.36.")
    return desc, ControlPlane.load(CONTROL_PLANE_JSON)


def test_kube_yml_installs_kubelet_and_control_plane_and_changes_nothing_the_second_time(kube_installed):
    again = playbook("kube.yml")
    assert all(h["changed"] == 0 for h in again.values()), again
    _, cp = kube_installed
    for name, argv in cp.version_cmds.items():
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        assert (cp.etcd_version if name == "etcd" else cp.version) in out, (name, out)


def test_the_control_plane_listens_on_loopback_only_and_wants_a_client_certificate(kube_installed):
    _, cp = kube_installed
    desc = json.loads(CONTROL_PLANE_JSON.read_text())
    for daemon in desc["daemons"]:
        pid = int(Path(daemon["pidfile"]).read_text().split()[0])
        proc = psutil.Process(pid)
        assert proc.exe() == daemon["exec"]
        listening = [c.laddr for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip in ("127.0.0.1", "::1") for addr in listening), (daemon["exec"], listening)
    # Without a client certificate the API server answers 401 (anonymous requests are off).
    host, port = cp.host_port
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=ssl.create_default_context(cafile=cp.ca))
    conn.request("GET", "/api/v1/namespaces")
    assert conn.getresponse().status == 401
    conn.close()
    api = ApiClient(cp)
    names = {n["metadata"]["name"] for n in api.request("GET", "/api/v1/namespaces")["items"]}
    assert {"default", "kube-system"} <= names
    api.close()


def assert_nothing_left(meta, samples):
    no_pods_left(meta["run_id"], STACKS)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "--hostname-override hb-kube-" not in ps
    assert "/kube-" not in Path("/proc/self/mountinfo").read_text()
    assert not list(Path("/sys/fs/cgroup").glob("*/hopbench-kube-*"))


def test_pods_through_the_api_server_and_a_kubelet_per_stack_run_their_workload_and_go_away(kube_installed, tmp_path):
    _, cp = kube_installed
    run, meta, samples = run_scenario(
        tmp_path,
        "itkube",
        "targets: [containerd/runc, docker/runc]\nlevels: [cri, kube]\n"
        "iterations: 3\nwarmup: 1\nconcurrency: [1, 2]\ntimeout_s: 60\nmax_failures: 2\n",
    )
    kube = samples[samples["level"] == "kube"]
    assert {s.split("@")[0] for s in kube["stack"]} == set(STACKS)
    assert kube["ok"].all() and (kube["duration_ns"] >= 0).all()
    for _, life in kube.groupby(["stack", "concurrency", "iteration"]):
        assert list(life.sort_values("start_ns")["op"]) == list(KUBE_LIFECYCLE_OPS)
    # Every pod ran its workload: the ready line is in its container log (checked per lifecycle).
    checks = [c for c in read_jsonl(run / "checks.jsonl") if c["level"] == "kube"]
    assert len(checks) == 2 * 2 * 4 and all(c["ok"] and c["check"] == "workload-ran" for c in checks), checks
    events = read_jsonl(run / "events.jsonl")
    for stack in {s.replace("@", "-") for s in kube["stack"]}:
        assert any(f"node hb-kube-{stack} Ready on API server" in e.get("message", "") for e in events)
    assert {"kube-apiserver", "kube-scheduler", "etcd"} <= set(meta.get("tools", {}))
    # The kubelet's own view, before and after; its memory; the report's sections.
    names = {p.name for p in (run / "kube").iterdir()}
    for ident in {s.replace("@", "-") for s in kube["stack"]}:
        assert {f"kube-{ident}-config.json", f"kube-{ident}-metrics-before.txt"} <= names
        after = (run / "kube" / f"kube-{ident}-metrics-after.txt").read_text()
        assert 'kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"}' in after
        assert "kubelet_pod_start_sli_duration_seconds_count" in after
    memory = load_memory(run)
    kubelets = memory[(memory["phase"] == "kube") & (memory["role"] == "kubelet")]
    assert set(kubelets["stack"]) == set(kube["stack"]) and (kubelets["rss"] > 10 * 2**20).all()
    html = (run / "report.html").read_text()
    for title in ("Pod startup through the API server", "The kubelet&#39;s own view", "Kubelet memory"):
        assert title in html, title
    assert "control plane + kubelet" in html  # the kube -> cri hop
    assert_perfdata_of(run, kube)
    # The API server has no pods and no nodes of the run left.
    api = ApiClient(cp)
    pods = api.request("GET", f"/api/v1/namespaces/hopbench/pods?labelSelector=io.hopbench/run={meta['run_id']}")
    assert pods["items"] == []
    nodes = {n["metadata"]["name"] for n in api.request("GET", "/api/v1/nodes")["items"]}
    assert not {n for n in nodes if n.startswith("hb-kube-")}
    api.close()
    assert_nothing_left(meta, samples)


def assert_perfdata_of(run, kube):
    """`hopbench export --format perfdata` on this real level-kube run: clusterloader2's PerfData per
    target and concurrency, pod_startup = PodScheduled + SandboxReady + PodReady per pod."""
    proc = run_hopbench("export", str(run), "--format", "perfdata", "--out", str(run / "perf"))
    assert proc.returncode == 0, proc.stderr
    files = sorted((run / "perf").glob("PodStartupLatency_PodStartupLatency_*.json"))
    assert len(files) == kube.groupby(["stack", "concurrency"]).ngroups
    measured = kube[~kube["warmup"]]
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["version"] == "1.0" and doc["labels"]["run_id"] == run.name
        items = {i["labels"]["Metric"]: i for i in doc["dataItems"]}
        assert set(items) == {"pod_startup", "create_to_schedule", "schedule_to_watch"}
        assert all(i["unit"] == "ms" and set(i["data"]) == {"Perc50", "Perc90", "Perc99"} for i in items.values())
        stack = doc["labels"]["target"].split("/")[0]
        mine = measured[(measured["stack"] == stack) & (measured["concurrency"] == int(doc["labels"]["concurrency"]))]
        per_pod = mine[mine["op"].isin(KUBE_LIFECYCLE_OPS[:3])].groupby(["iteration", "worker"])["duration_ns"].sum()
        assert int(doc["labels"]["pods"]) == len(per_pod)
        p50 = float(np.percentile(per_pod / 1e6, 50))
        assert items["pod_startup"]["data"]["Perc50"] == pytest.approx(p50, abs=1e-3)


def test_static_pods_through_a_standalone_kubelet_per_stack_reach_ready_and_go_away(kube_installed, tmp_path):
    run, meta, samples = run_scenario(
        tmp_path,
        "itkubelet",
        "targets: [containerd/runc, docker/runc]\nlevels: [kubelet]\n"
        "iterations: 3\nwarmup: 1\nconcurrency: [1, 2]\ntimeout_s: 60\nmax_failures: 2\n",
    )
    assert set(samples["level"]) == {"kubelet"}
    assert {s.split("@")[0] for s in samples["stack"]} == set(STACKS)
    assert samples["ok"].all() and (samples["duration_ns"] >= 0).all()
    for _, life in samples.groupby(["stack", "concurrency", "iteration"]):
        assert list(life.sort_values("start_ns")["op"]) == list(KUBELET_LIFECYCLE_OPS)
    checks = read_jsonl(run / "checks.jsonl")
    assert len(checks) == 2 * 2 * 4 and all(c["ok"] for c in checks), checks
    events = read_jsonl(run / "events.jsonl")
    assert any("failCgroupV1 false" in e.get("message", "") for e in events)
    for target in {f"{s}/runc" for s in samples["stack"]}:
        assert meta["settings"][target]["kubelet.failCgroupV1"]["value"] is False
    for ident in {s.replace("@", "-") for s in samples["stack"]}:
        after = (run / "kube" / f"kubelet-{ident}-metrics-after.txt").read_text()
        assert 'kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"}' in after
    assert_nothing_left(meta, samples)


def test_dockershim_and_kubelet_with_cri_dockerd_run_the_same_pod_on_the_same_dockerd(kube_installed, tmp_path):
    desc, _ = kube_installed
    out = subprocess.run([desc["dockershim"]["kubelet"], "--version"], capture_output=True, text=True, check=True)
    assert "v1.23." in out.stdout
    run, meta, samples = run_scenario(
        tmp_path,
        "itdockershim",
        "targets: [docker/runc, containerd/runc]\nlevels: [dockershim, kubelet]\n"
        "iterations: 3\nwarmup: 1\nconcurrency: [1]\ntimeout_s: 60\nmax_failures: 2\n",
    )
    shim = samples[samples["level"] == "dockershim"]
    # Only a docker stack has a dockerd for dockershim; containerd says why it is left out.
    assert {s.split("@")[0] for s in shim["stack"]} == {"docker"} and shim["ok"].all()
    for _, life in shim.groupby(["stack", "iteration"]):
        assert list(life.sort_values("start_ns")["op"]) == list(DOCKERSHIM_LIFECYCLE_OPS)
    events = read_jsonl(run / "events.jsonl")
    assert any(
        e.get("level") == "dockershim"
        and e["target"].startswith("containerd@")
        and "only a docker stack" in e["message"]
        for e in events
    )
    checks = [c for c in read_jsonl(run / "checks.jsonl") if c["level"] == "dockershim"]
    assert len(checks) == 4 and all(c["ok"] for c in checks), checks
    assert "What moving dockershim out of kubelet costs per pod" in (run / "report.md").read_text()
    assert_nothing_left(meta, samples)
    assert not list(Path("/var/log/pods").glob("*_hb-*-hb-kube-*"))


def test_a_pod_whose_image_is_pulled_inside_its_start_through_the_api_server(kube_installed, registry, tmp_path):
    """scenario pull.in_pod_start: the pod's image is the ladder's, removed from the store before
    each pod (untimed), pulled by the kubelet (imagePullPolicy Always): every pod reaches Ready,
    the kubelet counted one image pull per pod, its pull settings are recorded, and no image of
    the run is left."""
    run, meta, samples = run_scenario(
        tmp_path,
        "itkubepull",
        "targets: [containerd/runc, docker/runc]\nlevels: [kube]\ncontrol: false\n"
        "iterations: 3\nwarmup: 1\nconcurrency: [1]\ntimeout_s: 120\nmax_failures: 2\n"
        "pull: {rungs: [{size_mb: 8, layers: 2}], in_pod_start: true}\n",
    )
    kube = samples[samples["level"] == "kube"]
    assert kube["ok"].all(), kube[~kube["ok"]][["stack", "op", "error"]].to_string()
    checks = [c for c in read_jsonl(run / "checks.jsonl") if c["level"] == "kube"]
    assert checks and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    for ident in {s.replace("@", "-") for s in kube["stack"]}:
        before = parse_prometheus((run / "kube" / f"kube-{ident}-metrics-before.txt").read_text())
        after = parse_prometheus((run / "kube" / f"kube-{ident}-metrics-after.txt").read_text())
        pulled = sum(v for (n, _), v in after.items() if n == "kubelet_image_pull_duration_seconds_count") - sum(
            v for (n, _), v in before.items() if n == "kubelet_image_pull_duration_seconds_count"
        )
        assert pulled >= 4, (ident, pulled)  # a pull per pod, the warm-up's included
    for stack in set(kube["stack"]):
        assert meta["settings"][f"{stack}/runc"]["kube.serializeImagePulls"]["value"] is True
    html = (run / "report.html").read_text()
    assert "image_pull_duration mean (ms)" in html
    for stack in {s for s in kube["stack"]}:
        desc = next(x for x in stacks.discover() if x.name == stack)
        client = CriClient(desc.cri_endpoint, timeout_s=30)
        try:
            listed = client.images.ListImages(cri.ListImagesRequest(), timeout=30).images
        finally:
            client.close()
        assert not [t for im in listed for t in im.repo_tags if "/hopbench/ladder-" in t], stack
    assert_nothing_left(meta, samples)
