"""Remote nodes over SSH: two network-namespace hosts with real sshd, provisioning, runs, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench import stacks
from bench.controller import inventory
from bench.controller.results import load_run, read_jsonl
from bench.controller.transport import TransportError
from bench.controller.transport.ssh import SSHTransport

from . import sshnodes
from .conftest import REPO, no_pods_left, playbook, run_until, running_daemons

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nodes(provisioned, tmp_path_factory):
    sshnodes.ensure_sshd()
    sshnodes.subnet_is_free()
    work = tmp_path_factory.mktemp("sshnodes")
    key, authorized = sshnodes.client_key(work)
    started: list[sshnodes.SSHNode] = []
    try:
        for i in range(2):
            started.append(sshnodes.start_node(work, i, authorized))
        known = work / "known_hosts"
        known.write_text("".join(f"{n.address} {n.host_key_pub}" for n in started))
        yield {"work": work, "key": key, "known_hosts": known, "nodes": started}
    finally:
        for n in started:
            sshnodes.stop_node(n)


def inventory_of(nodes, which, known_hosts=None) -> Path:
    chosen = [n for n in nodes["nodes"] if n.name in which]
    return sshnodes.inventory(nodes["work"], chosen, nodes["key"], known_hosts or nodes["known_hosts"], None)


def scenario(tmp_path: Path, iterations: int) -> Path:
    scen = tmp_path / "ssh.yaml"
    scen.write_text(
        f"schema: 1\nname: itssh\ntargets: [containerd/runc, docker/runc]\nlevels: [cri]\n"
        f"iterations: {iterations}\nwarmup: 0\nconcurrency: [1]\n"
    )
    return scen


def hopbench(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("hopbench")), *args]


def test_inventory_is_read_with_ansibles_parser(nodes):
    path = inventory_of(nodes, {"hbnode1", "hbnode2"})
    found = inventory.load(path)
    assert [n.name for n in found] == ["hbnode1", "hbnode2"]
    n1 = found[0]
    assert n1.host == nodes["nodes"][0].address and n1.port == 22 and n1.user == "root"
    assert n1.groups == ("containerd", "docker") and n1.lock_path == "/run/hopbench/agent-hbnode1.lock"
    assert n1.python == inventory.DEFAULT_PYTHON and not n1.accept_new_host_key
    assert [n.name for n in inventory.load(path, ["hbnode2"])] == ["hbnode2"]
    with pytest.raises(inventory.InventoryError, match="no host named hbnode9"):
        inventory.load(path, ["hbnode9"])


def test_provisioning_over_ssh_runs_the_same_roles_and_changes_nothing_here(nodes):
    before = running_daemons()
    path = inventory_of(nodes, {"hbnode1"})
    recap = playbook("site.yml", "-i", str(path))
    assert set(recap) == {"hbnode1"}
    assert recap["hbnode1"]["failed"] == 0 and recap["hbnode1"]["unreachable"] == 0
    # The node is this machine, already provisioned: same roles, nothing to change, no restart.
    assert recap["hbnode1"]["changed"] == 0, recap["hbnode1"]["changed_tasks"]
    assert running_daemons() == before


def test_unknown_and_changed_host_keys_are_refused(nodes, tmp_path):
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    (node,) = inventory.load(inventory_of(nodes, {"hbnode1"}, empty))
    with pytest.raises(TransportError, match="unknown host key for 10.231.0.6") as err:
        SSHTransport(node).connect()
    assert "hopbench_accept_new_host_key" in str(err.value)
    other = nodes["nodes"][1].host_key_pub  # a real key, but of the other node
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"{nodes['nodes'][0].address} {other}")
    (node,) = inventory.load(inventory_of(nodes, {"hbnode1"}, wrong))
    with pytest.raises(TransportError, match="has CHANGED"):
        SSHTransport(node).connect()
    # From the command line: the same refusal, a failed run, nothing measured.
    results = tmp_path / "results"
    proc = subprocess.run(
        hopbench(
            "run",
            "-s",
            str(scenario(tmp_path, 1)),
            "-i",
            str(inventory_of(nodes, {"hbnode1"}, empty)),
            "--results",
            str(results),
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "unknown host key" in proc.stderr
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    assert meta["status"] == "incomplete" and samples.empty


def test_new_host_keys_are_accepted_only_when_allowed_for_the_node(nodes, tmp_path):
    known = tmp_path / "known_hosts_new"
    path = inventory_of(nodes, {"hbnode2"}, known)
    text = path.read_text().replace("  children:\n", "    hopbench_accept_new_host_key: true\n  children:\n", 1)
    path.write_text(text)
    (node,) = inventory.load(path)
    SSHTransport(node).connect().close()
    assert nodes["nodes"][1].host_key_pub.split()[1] in known.read_text()


def test_a_scenario_runs_on_both_nodes_at_once_and_the_agent_is_uploaded_once(nodes, tmp_path):
    results = tmp_path / "results"
    path = inventory_of(nodes, {"hbnode1", "hbnode2"})
    proc = subprocess.run(
        hopbench("run", "-s", str(scenario(tmp_path, 3)), "-i", str(path), "--results", str(results)),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    assert meta["status"] == "complete"
    assert set(meta["nodes"]) == {"hbnode1", "hbnode2"}
    assert all(n["status"] == "complete" for n in meta["nodes"].values())
    cri = samples[samples["level"] == "cri"]
    counts = cri.assign(kind=cri["stack"].map(stacks.kind_of)).groupby(["node", "kind"]).size().to_dict()
    assert counts == {(n, s): 3 * 7 for n in ("hbnode1", "hbnode2") for s in ("containerd", "docker")}
    # Each node times its own control beside its targets (level control: two loops, runc's four ops).
    control = samples[samples["level"] == "control"].groupby("node").size().to_dict()
    assert control == {"hbnode1": 3 * 6, "hbnode2": 3 * 6}
    assert samples["ok"].all()
    # The two runs overlapped in time: the nodes ran at once, not one after the other.
    spans = samples.groupby("node")["start_ns"].agg(["min", "max"])
    assert spans.loc["hbnode1", "min"] < spans.loc["hbnode2", "max"]
    assert spans.loc["hbnode2", "min"] < spans.loc["hbnode1", "max"]
    archives = list(Path(inventory.DEFAULT_AGENT_DIR).glob("*.zip"))
    assert archives, "no agent archive on the node"
    no_pods_left(meta["run_id"])


def agent_session(node: sshnodes.SSHNode, deadline_s: float = 60) -> psutil.Process:
    """The sshd session process (a child of the node's sshd) that runs an agent."""
    master = node.sshd_pid()
    assert master is not None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for session in psutil.Process(master).children(recursive=True):
            for child in session.children():
                if "bench.node" in " ".join(child.cmdline()):
                    return session
        time.sleep(0.2)
    raise AssertionError("no agent under the node's sshd")


def test_a_cut_connection_keeps_the_samples_and_the_node_removes_its_pods(nodes, tmp_path):
    results = tmp_path / "results"
    path = inventory_of(nodes, {"hbnode2"})

    def cut(_proc: subprocess.Popen[str]) -> None:
        session = agent_session(nodes["nodes"][1])
        os.kill(session.pid, signal.SIGKILL)  # the connection drops as if the link had died

    rc, err, run = run_until(
        ["run", "-s", str(scenario(tmp_path, 300)), "-i", str(path), "--results", str(results)],
        results,
        "samples.jsonl",
        lambda text: len(text.splitlines()) >= 15,
        cut,
        "15 samples over SSH",
        deadline_s=180,
    )
    assert rc == 1, err[-3000:]
    meta, samples = load_run(run)
    assert meta["status"] == "incomplete"
    node = meta["nodes"]["hbnode2"]
    assert node["status"] == "incomplete" and "connection lost" in " ".join(node["errors"])
    assert len(samples) >= 15 and len(samples) < 300 * 7
    # The controller reconnected and asked: the node's agent removed every pod by itself.
    # Every instance provisioned on the node is asked, not only the two the scenario used.
    left = node["left_after_loss"]
    assert {stacks.kind_of(k) for k in left} >= {"containerd", "docker"} and set(left.values()) == {0}
    no_pods_left(meta["run_id"])
    end = time.monotonic() + 30
    while time.monotonic() < end and any(
        "bench.node" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
    ):
        time.sleep(0.2)
    assert not any("bench.node" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
    events = read_jsonl(run / "events.jsonl")
    assert any(e.get("node") == "hbnode2" and "connection lost" in e.get("message", "") for e in events)


def test_an_agent_whose_link_dies_silently_stops_and_cleans_up_by_itself(nodes, tmp_path):
    """The link goes down without a FIN: sshd keeps the session (and the agent's stdin) open for
    as long as TCP retries, so only the agent's watchdog on the controller's pings can stop it."""
    node = nodes["nodes"][0]
    idle_s = 8
    path = inventory_of(nodes, {node.name})
    path.write_text(
        path.read_text().replace("  children:\n", f"    hopbench_idle_timeout_s: {idle_s}\n  children:\n", 1)
    )
    results = tmp_path / "results"
    took: dict[str, float] = {}

    def silence(_proc: subprocess.Popen[str]) -> None:
        session = agent_session(node)
        (agent,) = [c for c in session.children() if "bench.node" in " ".join(c.cmdline())]
        sshnodes.sh("ip", "link", "set", "dev", node.host_veth, "down")
        started = time.monotonic()
        try:
            gone, _ = psutil.wait_procs([agent], timeout=idle_s + 60)
            took["agent"] = time.monotonic() - started
            assert gone, f"the agent (PID {agent.pid}) still runs {idle_s + 60} s after its link died"
            assert session.is_running()  # sshd never noticed: the agent stopped by itself
        finally:
            sshnodes.sh("ip", "link", "set", "dev", node.host_veth, "up")

    rc, err, run = run_until(
        ["run", "-s", str(scenario(tmp_path, 300)), "-i", str(path), "--results", str(results)],
        results,
        "samples.jsonl",
        lambda text: len(text.splitlines()) >= 15,
        silence,
        "15 samples over SSH",
        deadline_s=180,
    )
    print(f"agent stopped {took['agent']:.1f} s after its link died (watchdog {idle_s} s)")
    assert rc == 1, err[-3000:]
    meta, samples = load_run(run)
    assert meta["status"] == "incomplete" and len(samples) >= 15
    assert "connection lost" in " ".join(meta["nodes"][node.name]["errors"])
    no_pods_left(meta["run_id"])
