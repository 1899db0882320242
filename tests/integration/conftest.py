"""Integration fixtures: provision this machine with the real playbook, stop what we started.

These tests talk to real daemons over their real sockets. They need root (provisioning
installs Debian packages and starts daemons); without it they skip and say so.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import stacks

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"


RECAP = re.compile(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$", re.M)


def playbook(name: str = "site.yml", *extra: str) -> dict[str, dict]:
    """Run a playbook; return the PLAY RECAP counts per host. Fails the test on error."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    exe = Path(sys.executable).with_name("ansible-playbook")
    proc = subprocess.run([str(exe), name, *extra], cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"ansible-playbook {name} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        )
    recap = proc.stdout.rsplit("PLAY RECAP", 1)[-1]
    stats = {
        host: {k: int(v) for k, v in (pair.split("=") for pair in counts.split())}
        for host, counts in RECAP.findall(recap)
    }
    # Which tasks changed, for a readable failure: each "changed:" line after its TASK header.
    task = ""
    changed = []
    for line in proc.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed:"):
            changed.append(f"{task}: {line}")
    for host_stats in stats.values():
        host_stats["changed_tasks"] = changed  # type: ignore[assignment]
    return stats


def hopbench_exe() -> str:
    """The `hopbench` command of this environment."""
    return str(Path(sys.executable).with_name("hopbench"))


def run_hopbench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The `hopbench` command of this environment, from the repository root, output captured."""
    return subprocess.run(
        [hopbench_exe(), *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=timeout
    )


def own_lab(
    state: Path, bridge: str, prefix: str
) -> tuple[dict[str, str], Callable[..., subprocess.CompletedProcess[str]]]:
    """A lab of the tests' own beside any lab of the session (its state folder, bridge and node
    names): its environment, and `hopbench lab ARGS` in it (fails the test unless check=False)."""
    env = {**os.environ, "HOPBENCH_LAB_DIR": str(state), "HOPBENCH_LAB_BRIDGE": bridge, "HOPBENCH_LAB_PREFIX": prefix}

    def cli(*args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([hopbench_exe(), "lab", *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"hopbench lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return env, cli


def lab_ssh(
    state: Path, address: str, *command: str, known_hosts: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A command on a node of a lab made by own_lab, over SSH with its pinned host keys."""
    argv = [
        "ssh", "-i", str(state / "id_ed25519"),
        "-o", f"UserKnownHostsFile={known_hosts or state / 'inventory' / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        f"root@{address}", "--", shlex.join(command),  # sshd hands one string to the node's shell
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def run_scenario(tmp_path: Path, name: str, body: str, command: str = "run") -> tuple[Path, dict, Any]:
    """Run a scenario through `hopbench COMMAND` (run, crosscheck); its run folder, meta and samples, complete."""
    from bench.controller.results import load_run

    scen = tmp_path / f"{name}.yaml"
    scen.write_text(f"schema: 1\nname: {name}\n{body}")
    results = tmp_path / "results"
    proc = run_hopbench(command, "--scenario", str(scen), "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    assert meta["status"] == "complete"
    return run, meta, samples


def running_daemons() -> dict[str, int]:
    found = {}
    for stack in stacks.discover():
        for daemon in stack.daemons:
            pid = daemon.pid()
            if pid is not None:
                found[daemon.name] = pid
    return found


@pytest.fixture(scope="session")
def provisioned():
    """Provision the local node once per session; stop at the end the daemons this session started."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root: provisioning installs packages and starts daemons")
    before = running_daemons()
    first = playbook()
    yield first
    for name, pid in running_daemons().items():
        if before.get(name) == pid:
            continue  # it ran before the tests: leave it
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


def kind_target(target: str) -> str:
    """containerd@2.4.2/runc -> containerd/runc."""
    stack, handler = target.split("/")
    return f"{stacks.kind_of(stack)}/{handler}"


def default_targets(listed: list[dict]) -> dict[str, dict]:
    """`hopbench targets --json` entries of each stack's default instance, keyed STACK/HANDLER
    (containerd/runc), the way a scenario names them."""
    return {f"{t['kind']}/{t['handler']}": t for t in listed if t.get("default")}


def no_pods_left(run_id: str, stack_names: tuple[str, ...] = ("containerd", "docker", "crio")) -> None:
    """Assert that no pod sandbox of `run_id` is left on any provisioned instance of the named stacks."""
    from bench.node import kubelet
    from bench.node.cri import CriClient

    for stack in stacks.discover():
        if stack.unavailable:
            continue
        if stack.kind in stack_names or stack.name in stack_names:
            client = CriClient(stack.cri_endpoint)
            try:
                assert client.sandboxes({kubelet.RUN_LABEL: run_id}) == [], stack.name
            finally:
                client.close()


def run_until(
    args: list[str],
    results: Path,
    journal: str,
    ready: Callable[[str], bool],
    act: Callable[[subprocess.Popen[str]], None],
    what: str,
    deadline_s: float = 120,
) -> tuple[int, str, Path]:
    """Start `hopbench ARGS`, wait until results/*/JOURNAL's text satisfies `ready`, then `act`
    (interrupt it, cut its connection…) and wait for it to end: (exit status, stderr, run folder)."""
    proc = subprocess.Popen(
        [hopbench_exe(), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        end = time.monotonic() + deadline_s
        found: Path | None = None
        while time.monotonic() < end and found is None:
            for path in results.glob(f"*/{journal}") if results.exists() else []:
                if ready(path.read_text()):
                    found = path
            time.sleep(0.2)
        assert found is not None, f"{what} did not happen within {deadline_s:.0f} s"
        act(proc)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, found.parent


def registry_pid() -> int | None:
    try:
        pid = int(Path("/run/hopbench/registry.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


@pytest.fixture(scope="module")
def registry(provisioned):
    """The registry host, provisioned by registry.yml; stopped at the end if this module started it."""
    before = registry_pid()
    recap = playbook("registry.yml")
    assert all(h["failed"] == 0 for h in recap.values())
    desc = json.loads(Path("/etc/hopbench/registry.json").read_text())
    yield desc
    pid = registry_pid()
    if pid is not None and pid != before:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
