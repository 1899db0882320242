"""Lab nodes (`hopbench lab`): pristine Debian machines with systemd as PID 1, reached over SSH.

The tests make a lab of their own beside any lab of the session (HOPBENCH_LAB_DIR, its own
bridge and node names), boot two nodes from the cached image, and check what a platform
engineer would check on a new lab machine: systemd is PID 1 and running, the node has only
Debian's minimal packages, its cgroups are its own and writable, its host key is pinned (a
different key is refused), it reaches the controller's package proxy and nothing outside the
lab, it powers off and boots again with the same disk, and `lab down` leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.controller import lab as lab_module
from bench.controller.results import load_run
from bench.node.critest import OPS
from benchmarks.fleet import NodeSamples

from .conftest import lab_ssh, own_lab

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).parent / "playbooks"
FLEET_ITERATIONS = 400

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lab nodes need root (namespaces, mounts, cgroups)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("lab")
    env, cli = own_lab(state, "hb-labt0", "t")
    try:
        cli("up", "--nodes", "3")
    except BaseException:
        cli("down", check=False)
        raise
    lab_state = json.loads((state / "lab.json").read_text())

    def ssh(node: str, *command: str, known_hosts: Path | None = None) -> subprocess.CompletedProcess[str]:
        return lab_ssh(state, lab_state["nodes"][node]["address"], *command, known_hosts=known_hosts)

    yield {"cli": cli, "ssh": ssh, "state": lab_state, "dir": state, "env": env}
    cli("down", check=False)


def test_a_node_is_a_pristine_systemd_machine(lab):
    out = lab["ssh"]("t1", "readlink", "/proc/1/exe").stdout.strip()
    assert out == "/usr/lib/systemd/systemd", out
    assert lab["ssh"]("t1", "systemctl", "is-system-running").stdout.strip() == "running"
    # Only the image's packages: no Go, no conmon, no container runtime found by luck.
    for program in ("go", "conmon", "runc", "containerd", "gcc"):
        assert lab["ssh"]("t1", "sh", "-c", f"command -v {program}").returncode != 0, program
    packages = lab["ssh"]("t1", "dpkg-query", "-W", "-f", "${Package}\n").stdout.split()
    assert "openssh-server" in packages and len(packages) < 200, len(packages)
    # Services that reach out on their own are masked.
    state = lab["ssh"]("t1", "systemctl", "is-enabled", "systemd-timesyncd.service", "apt-daily.timer").stdout.split()
    assert state == ["masked", "masked"], state
    # Each node has its own machine id and host name.
    ids = {lab["ssh"](n, "cat", "/etc/machine-id").stdout.strip() for n in ("t1", "t2")}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids), ids
    assert lab["ssh"]("t2", "hostname").stdout.strip() == "t2"
    # A /dev/kmsg (kubelet will not start without it) that is the node's console, not the
    # host's kernel log: what a node writes there stays in the node's log.
    assert lab["ssh"]("t1", "readlink", "/dev/kmsg").stdout.strip() == "console"
    assert lab["ssh"]("t1", "sh", "-c", "echo hopbench-lab-kmsg >> /dev/kmsg").returncode == 0
    console = (lab["dir"] / "nodes" / "t1" / "console.log").read_text(errors="replace")
    assert "hopbench-lab-kmsg" in console


def test_the_node_drives_its_own_writable_cgroups(lab):
    """A transient unit gets its memory limit in the node's own hierarchy, as runc and kubelet
    need with the systemd driver; in the host's tree it sits under the lab's own folder."""
    proc = lab["ssh"](
        "t1", "systemd-run", "-P", "--quiet", "--unit=hopbench-probe", "-p", "MemoryMax=100M",
        "cat", "/sys/fs/cgroup/memory/system.slice/hopbench-probe.service/memory.limit_in_bytes",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "104857600"
    memory_folder = next(c for c in lab["state"]["nodes"]["t1"]["cgroups"] if "/memory/" in c)
    assert memory_folder.endswith("/hopbench-lab/hb-labt0/t1") and Path(memory_folder, "system.slice").is_dir()


def test_the_host_key_is_pinned(lab, tmp_path):
    other = tmp_path / "known_hosts"
    address = lab["state"]["nodes"]["t1"]["address"]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other.write_text(f"{address} {(tmp_path / 'k.pub').read_text().split(' ')[0]} "
                     f"{(tmp_path / 'k.pub').read_text().split(' ')[1]}\n")  # fmt: skip
    proc = lab["ssh"]("t1", "true", known_hosts=other)
    assert proc.returncode == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr, proc.stderr
    empty = tmp_path / "empty"
    empty.write_text("")
    proc = lab["ssh"]("t1", "true", known_hosts=empty)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr, proc.stderr


def test_packages_come_from_the_controller_and_nothing_else_is_reachable(lab):
    proxy = lab["ssh"]("t1", "cat", "/etc/apt/apt.conf.d/01hopbench-lab-proxy").stdout
    assert f"http://{lab['state']['controller_ip']}:3142" in proxy
    proc = lab["ssh"]("t1", "apt-get", "update", "-q")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    routes = lab["ssh"]("t1", "ip", "-4", "route", "show").stdout
    assert "default" not in routes, routes
    subnet = ipaddress.ip_network(lab["state"]["subnet"])
    assert routes.split()[0] == str(subnet), routes
    # The other node answers; an address outside the lab (the package mirror) cannot be reached.
    other = lab["state"]["nodes"]["t2"]["address"]
    probe = (
        "import socket,sys\n"
        "def connect(a):\n"
        "    try:\n"
        "        socket.create_connection((a, int(sys.argv[2])), timeout=5).close(); return 'open'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__ + ':' + str(e.errno)\n"
        "print(connect(sys.argv[1]))\n"
    )
    assert lab["ssh"]("t1", "python3", "-c", probe, other, "22").stdout.strip() == "open"
    outside = lab["ssh"]("t1", "python3", "-c", probe, "203.0.113.80", "80").stdout.strip()
    assert outside == "OSError:101", outside  # ENETUNREACH: no route out of the lab


def test_poweroff_keeps_the_disk_and_reboot_boots_it(lab):
    assert lab["ssh"]("t2", "sh", "-c", "echo kept > /root/marker").returncode == 0
    lab["cli"]("poweroff", "t2")
    rows = lab["cli"]("status").stdout
    assert any(line.split()[:1] == ["t2"] and line.split()[-1] == "off" for line in rows.splitlines()), rows
    cgroups = lab["state"]["nodes"]["t2"]["cgroups"]
    assert not any(Path(c).exists() for c in cgroups), "the node's cgroups stay behind after power-off"
    # t1 is not touched by its neighbour's power-off.
    assert lab["ssh"]("t1", "systemctl", "is-system-running").stdout.strip() == "running"
    lab["cli"]("reboot", "t2")
    assert lab["ssh"]("t2", "cat", "/root/marker").stdout.strip() == "kept"
    assert lab["ssh"]("t2", "systemctl", "is-system-running").stdout.strip() == "running"


FLEET = (
    "schema: 1\nname: labfleet\ntargets: [containerd/runc]\nlevels: [nullcri]\niterations: {n}\nwarmup: 0\n"
    "concurrency: [1]\ncontrol: false\n"
)


def test_a_fleet_run_survives_a_node_losing_its_power(lab, tmp_path):
    """Level nullcri over SSH on three nodes provisioned by Ansible; t3 loses its power mid-run (its
    link drops, then every process at once: it says nothing more). t1 and t2 run every lifecycle,
    the controller records why t3 ended, and every sample t3 had sent is kept."""
    inventory = lab["dir"] / "inventory"
    env = {**lab["env"], "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(PLAYBOOKS / "nullcri_node.yml"),
         "-i", str(inventory / "hosts.yml")],
        cwd=REPO / "ansible", env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    scenario = tmp_path / "fleet.yaml"
    scenario.write_text(FLEET.format(n=FLEET_ITERATIONS))
    results = tmp_path / "results"
    hopbench = str(Path(sys.executable).with_name("hopbench"))
    log = tmp_path / "run.log"
    with open(log, "w") as out:  # a file, not a pipe nobody reads while the run goes on
        run = subprocess.Popen(
            [hopbench, "run", "-s", str(scenario), "-i", str(inventory), "--results", str(results)],
            env=lab["env"], stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        t3_samples = NodeSamples(results, "t3")
        sent = 0
        end = time.monotonic() + 300
        while sent < 200 and time.monotonic() < end and run.poll() is None:
            time.sleep(0.5)
            sent = t3_samples()
        assert sent >= 200, f"t3 sent {sent} samples before the run ended or 300 s passed"
        cut = lab["cli"]("poweroff", "t3", "--cut")
        assert cut.returncode == 0
        kept_at_cut = t3_samples()
        run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=120)
    (folder,) = list(results.iterdir())
    meta, samples = load_run(folder)
    nodes = meta["nodes"]
    assert meta["status"] == "incomplete" and run.returncode == 1, (meta["status"], log.read_text()[-3000:])
    per_node = samples.groupby("node", observed=True).size().to_dict()
    for n in ("t1", "t2"):  # their agents said Done, with nothing wrong
        assert nodes[n]["status"] == "complete" and not nodes[n]["errors"], nodes[n]
    assert per_node["t1"] == per_node["t2"] == 2 * FLEET_ITERATIONS * len(OPS)  # every planned sample
    assert samples[samples["node"] != "t3"]["ok"].all()
    assert nodes["t3"]["status"] == "incomplete", nodes["t3"]
    assert any("connection lost" in e for e in nodes["t3"]["errors"]), nodes["t3"]
    assert kept_at_cut <= per_node["t3"] < per_node["t1"]  # what it had sent is kept; it did not finish
    section = (folder / "report.md").read_text().split("What went wrong, and when", 1)[1][:4000]
    assert "t3" in section and "connection lost" in section
    # The node boots again, with a new network namespace (the cut took the old one).
    lab["cli"]("reboot", "t3")
    assert lab["ssh"]("t3", "systemctl", "is-system-running").stdout.strip() == "running"


def test_down_leaves_nothing_behind(lab):
    nodes = lab["state"]["nodes"]
    lab["cli"]("down")
    for node in nodes.values():
        assert not Path(f"/run/netns/{node['netns']}").exists()
        assert not any(Path(c).exists() for c in node["cgroups"]), node["cgroups"]
        assert not Path(lab["dir"], "nodes", node["name"]).exists()
    assert subprocess.run(["ip", "link", "show", "hb-labt0"], capture_output=True).returncode != 0
    assert not (lab["dir"] / "lab.json").exists()
    assert not (lab["dir"] / "inventory").exists()
    assert not lab_module.alive_acng(lab["state"]["acng_pid"])
