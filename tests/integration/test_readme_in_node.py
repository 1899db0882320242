"""README command 1 in a pristine lab node, and the nightly timer firing there.

A clean clone of the committed repository and a copy of `../shared` go into a fresh lab node
(Debian's minbase with systemd, sshd and python3, nothing else; no route out). There, over SSH,
exactly the README's command runs: `scripts/setup && .venv/bin/hopbench provision &&
.venv/bin/hopbench run`. It must end with the path of a report, and the run must say it was
measured on a systemd node with the systemd cgroup driver. This is the test that would have
caught the conmon defect (and found that the agent looked for pid files systemd units never
write). Then the nightly role installs its timer on that node, set a minute ahead; the timer
fires a real `hopbench nightly`, and its run is fetched to the controller, where its report builds.

To fit CI's time the node reads the controller's caches (`hopbench lab up --controller-caches`):
/var/cache/hopbench (Go toolchain, module cache, built binaries keyed by version and build
settings, checked downloads) as the read-only lower layer of the node's own, and pip installs
only the wheels the controller downloaded there. Debian packages come through the lab's
apt-cacher-ng from Debian's archive. The caches hold build outputs and downloads, never an
installed program: every program a daemon runs is still put in place by a role's task on the
node, every package still installed by the node's own apt, and nothing in the caches is on any
PATH, so a missing install step still fails here as on a user's machine.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.controller import lab as lab_module

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
COMMAND = "scripts/setup && .venv/bin/hopbench provision && .venv/bin/hopbench run"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lab nodes need root (namespaces, mounts, cgroups)"),
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"no {SHARED} beside the repository (the offline mirror)"),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    """A pristine lab node where README command 1 ran; yields its ssh argv prefix and the output."""
    state = tmp_path_factory.mktemp("readme-lab")
    env = {**os.environ, "HOPBENCH_LAB_DIR": str(state), "HOPBENCH_LAB_BRIDGE": "hb-labr0", "HOPBENCH_LAB_PREFIX": "r"}
    hopbench = str(Path(sys.executable).with_name("hopbench"))

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([hopbench, *args], env=env, capture_output=True, text=True, timeout=1800, cwd=REPO)
        if check and proc.returncode != 0:
            pytest.fail(f"hopbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr}")
        return proc

    work = tmp_path_factory.mktemp("readme-src")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(work / "hopbench")], check=True, timeout=300)
    subprocess.run(["cp", "-a", str(SHARED), str(work / "shared")], check=True, timeout=300)
    lab_module.setup_wheelhouse(work / "hopbench")
    try:
        cli("lab", "up", "--nodes", "1", "--controller-caches")
        address = json.loads((state / "lab.json").read_text())["nodes"]["r1"]["address"]
        ssh = [
            "ssh", "-i", str(state / "id_ed25519"),
            "-o", f"UserKnownHostsFile={state / 'inventory' / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address}", "--",
        ]  # fmt: skip
        with subprocess.Popen(["tar", "-C", str(work), "-c", "hopbench", "shared"], stdout=subprocess.PIPE) as tar:
            untar = subprocess.run(
                [*ssh, "tar -C /root -x"], stdin=tar.stdout, capture_output=True, text=True, timeout=300
            )
        assert tar.returncode == 0 and untar.returncode == 0, untar.stderr
        # The README's command, as a user types it in the clone.
        proc = subprocess.run(
            [*ssh, f"cd /root/hopbench && {COMMAND}"], capture_output=True, text=True, timeout=3000, check=False
        )
        yield {"ssh": ssh, "proc": proc, "cli": cli, "inventory": state / "inventory", "tmp": work}
    finally:
        cli("lab", "down", check=False)


def remote(node: dict[str, Any], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*node["ssh"], shlex.join(argv)], capture_output=True, text=True, timeout=timeout)


def test_readme_command_1_in_a_pristine_node(node):
    proc = node["proc"]
    tail = proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-6000:]
    assert proc.returncode == 0, f"README command 1 failed in a pristine node ({proc.returncode}):\n{tail}"
    report = proc.stdout.strip().splitlines()[-1]
    assert report.endswith("report.html"), tail
    meta = json.loads(remote(node, "cat", str(Path("/root/hopbench", report).parent / "meta.json")).stdout)
    facts = meta["node_facts"]
    assert facts["init"] == "systemd", facts
    drivers = {name: c["cgroup_driver"] for name, c in facts["stacks"].items()}
    assert drivers and set(drivers.values()) == {"systemd"}, drivers
    assert meta["status"] == "complete", meta.get("errors")
    # No Go reached the node's PATH on the way.
    assert remote(node, "sh", "-c", "command -v go").returncode != 0


def test_the_nightly_timer_fires_a_run_on_the_node_and_its_results_reach_the_controller(node):
    if node["proc"].returncode != 0:
        pytest.skip("README command 1 failed in the node (see the test above): no checkout to run nightly from")
    scenario = (
        "schema: 1\nname: labnightly\ntargets: [containerd/runc]\nlevels: [cri]\niterations: 6\nwarmup: 1\n"
        "concurrency: [1]\nregression: {threshold_pct: 10, history: 3}\n"
    )
    assert remote(node, "sh", "-c", f"printf %s {shlex.quote(scenario)} > /root/labnightly.yaml").returncode == 0
    # First with the role's own calendar (02:30 every night): the timer is active and waits for it.
    # That run also measures how long provisioning takes, so the second, which moves the timer to
    # a near minute, cannot miss it while ansible is still running (a timer whose time passed
    # before it started never fires; that raced on a slow CI machine).
    common = (
        "provision", "--playbook", "nightly.yml", "-i", str(node["inventory"]),
        "-e", "nightly_hosts=r1", "-e", "nightly_repo_dir=/root/hopbench",
        "-e", "nightly_scenario=/root/labnightly.yaml", "-e", "nightly_randomized_delay=0",
    )  # fmt: skip
    began = time.monotonic()
    node["cli"](*common)
    took = time.monotonic() - began
    assert remote(node, "systemctl", "is-active", "hopbench-nightly.timer").stdout.strip() == "active"
    calendar_of = remote(node, "systemctl", "show", "hopbench-nightly.timer", "--property=TimersCalendar").stdout
    assert "02:30:00" in calendar_of, calendar_of
    # Then a near minute, in UTC (the node's clock is the controller's; its zone is UTC): the
    # role must restart the timer for a changed calendar to take effect.
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2 * took + 60)
    calendar = at.strftime("%Y-%m-%d %H:%M:00 UTC")
    node["cli"](*common, "-e", json.dumps({"nightly_on_calendar": calendar}))
    timer = remote(node, "systemctl", "show", "hopbench-nightly.timer", "--property=ActiveState,TimersCalendar")
    assert "ActiveState=active" in timer.stdout and at.strftime("%H:%M:00") in timer.stdout, timer.stdout
    deadline = time.monotonic() + 2 * took + 60 + 600
    props: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = remote(
            node, "systemctl", "show", "hopbench-nightly.service",
            "--property=ActiveState,Result,ExecMainStatus,ExecMainExitTimestampMonotonic",
        ).stdout  # fmt: skip
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if props.get("ExecMainExitTimestampMonotonic", "0") != "0" and props.get("ActiveState") != "activating":
            break
        time.sleep(5)
    else:
        timers = remote(node, "systemctl", "list-timers", "--all", "--no-pager").stdout
        pytest.fail(f"the nightly service did not run by {calendar} + 10 min: {props}\n{timers}")
    journal = remote(node, "journalctl", "-u", "hopbench-nightly.service", "--no-pager", "-n", "40").stdout
    assert props.get("Result") == "success" and props.get("ExecMainStatus") == "0", f"{props}\n{journal}"
    # The night's run, fetched to the controller over SSH; its report builds there.
    runs = remote(node, "ls", "/root/hopbench/results").stdout.split()
    night = next(r for r in runs if "labnightly" in r)
    dest = node["tmp"] / "fetched"
    dest.mkdir()
    pack = shlex.join(["tar", "-C", "/root/hopbench/results", "-c", night])
    with subprocess.Popen([*node["ssh"], pack], stdout=subprocess.PIPE) as fetch:
        subprocess.run(["tar", "-C", str(dest), "-x"], stdin=fetch.stdout, check=True, timeout=300)
    assert fetch.returncode == 0
    assert (dest / night / "nightly.json").exists()
    node["cli"]("report", str(dest / night))
    assert "## Against the previous nights" in (dest / night / "report.md").read_text()
