"""README command 1 in a pristine lab node: the test that would have caught the conmon defect.

A clean clone of the committed repository and a copy of `../shared` go into a fresh lab node
(Debian's minbase with systemd, sshd and python3, nothing else; no route out). There, over SSH,
exactly the README's command runs: `scripts/setup && .venv/bin/hopbench provision &&
.venv/bin/hopbench run`. It must end with the path of a report, and the run must say it was
measured on a systemd node with the systemd cgroup driver.

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

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.controller import lab as lab_module

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
COMMAND = "scripts/setup && .venv/bin/hopbench provision && .venv/bin/hopbench run"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lab nodes need root (namespaces, mounts, cgroups)"),
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"no {SHARED} beside the repository (the offline mirror)"),
]


def test_readme_command_1_in_a_pristine_node(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("readme-lab")
    env = {**os.environ, "HOPBENCH_LAB_DIR": str(state), "HOPBENCH_LAB_BRIDGE": "hb-labr0", "HOPBENCH_LAB_PREFIX": "r"}
    hopbench = str(Path(sys.executable).with_name("hopbench"))

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([hopbench, "lab", *args], env=env, capture_output=True, text=True, timeout=1800)
        if check and proc.returncode != 0:
            pytest.fail(f"hopbench lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    work = tmp_path_factory.mktemp("readme-src")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(work / "hopbench")], check=True, timeout=300)
    subprocess.run(["cp", "-a", str(SHARED), str(work / "shared")], check=True, timeout=300)
    lab_module.setup_wheelhouse(work / "hopbench")
    try:
        cli("up", "--nodes", "1", "--controller-caches")
        node = json.loads((state / "lab.json").read_text())["nodes"]["r1"]
        ssh = [
            "ssh", "-i", str(state / "id_ed25519"),
            "-o", f"UserKnownHostsFile={state / 'inventory' / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{node['address']}", "--",
        ]  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", str(work), "-c", "hopbench", "shared"], stdout=subprocess.PIPE)
        untar = subprocess.run([*ssh, "tar -C /root -x"], stdin=tar.stdout, capture_output=True, text=True, timeout=300)
        tar.wait(timeout=60)
        assert untar.returncode == 0, untar.stderr
        # The README's command, as a user types it in the clone.
        proc = subprocess.run(
            [*ssh, f"cd /root/hopbench && {COMMAND}"], capture_output=True, text=True, timeout=3000, check=False
        )
        tail = proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-6000:]
        assert proc.returncode == 0, f"README command 1 failed in a pristine node ({proc.returncode}):\n{tail}"
        report = proc.stdout.strip().splitlines()[-1]
        assert report.endswith("report.html"), tail
        meta_path = str(Path("/root/hopbench", report).parent / "meta.json")
        meta = json.loads(subprocess.run([*ssh, shlex.join(["cat", meta_path])], capture_output=True, text=True).stdout)
        facts = meta["node_facts"]
        assert facts["init"] == "systemd", facts
        drivers = {name: c["cgroup_driver"] for name, c in facts["stacks"].items()}
        assert drivers and set(drivers.values()) == {"systemd"}, drivers
        # No Go reached the node's PATH on the way.
        assert subprocess.run([*ssh, "command -v go"], capture_output=True).returncode != 0
    finally:
        cli("down", check=False)
