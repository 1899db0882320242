"""Test hosts for the SSH path: network namespaces with their own address, each with a real sshd.

Each test node is a network namespace joined to this machine by a veth pair (a /30 of
10.231.0.0/16, refused if it overlaps a route here), running Debian's sshd on its address
with its own host key, authorized key and pid file in a temporary folder. Nodes share this
machine's filesystem and processes, so they reach the same provisioned stacks: each gets
its own agent lock file. Everything started is stopped by its PID, and the namespaces and
links are deleted at the end.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUBNET = ipaddress.ip_network("10.231.0.0/16")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def ensure_sshd() -> None:
    """Debian's openssh-server, installed without starting the distribution's sshd."""
    if Path("/usr/sbin/sshd").exists():
        return
    guard = Path("/usr/sbin/policy-rc.d")
    made_guard = not guard.exists()
    if made_guard:  # stop the package's scripts from starting a system-wide sshd
        guard.write_text("#!/bin/sh\nexit 101\n")
        guard.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-q", "openssh-server"], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"apt-get install openssh-server failed: {proc.stderr.strip()[-2000:]}")
    finally:
        if made_guard:
            guard.unlink()


def subnet_is_free() -> None:
    routes = sh("ip", "-4", "route", "show").stdout
    for line in routes.splitlines():
        dest = line.split()[0]
        if dest == "default":
            continue
        if ipaddress.ip_network(dest, strict=False).overlaps(SUBNET):
            raise RuntimeError(f"the test subnet {SUBNET} overlaps the route {line!r} of this machine")


@dataclass
class SSHNode:
    name: str
    netns: str
    host_veth: str
    address: str
    pidfile: Path
    host_key_pub: str
    log: Path

    def sshd_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None


def wait_port(address: str, port: int = 22, deadline_s: float = 15) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd on {address}:{port} did not answer within {deadline_s} s")


def start_node(workdir: Path, index: int, authorized_keys: Path) -> SSHNode:
    tag = f"{os.getpid() % 10000}-{index}"
    netns, host_veth, ns_veth = f"hb-ssh-{tag}", f"hbs{tag}", f"hbn{tag}"
    net = list(SUBNET.subnets(new_prefix=30))[index + 1]
    host_ip, node_ip = str(net[1]), str(net[2])
    sh("ip", "netns", "add", netns)
    sh("ip", "link", "add", host_veth, "type", "veth", "peer", "name", ns_veth)
    sh("ip", "link", "set", ns_veth, "netns", netns)
    sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_veth)
    sh("ip", "link", "set", host_veth, "up")
    inside = ["ip", "netns", "exec", netns]
    sh(*inside, "ip", "addr", "add", f"{node_ip}/30", "dev", ns_veth)
    sh(*inside, "ip", "link", "set", ns_veth, "up")
    sh(*inside, "ip", "link", "set", "lo", "up")
    key = workdir / f"{netns}_host_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    pidfile, log = workdir / f"{netns}.pid", workdir / f"{netns}.log"
    config = workdir / f"{netns}.sshd_config"
    config.write_text(
        f"ListenAddress {node_ip}\nPort 22\nHostKey {key}\nPidFile {pidfile}\n"
        f"AuthorizedKeysFile {authorized_keys}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        # The session ends a few seconds after the client goes silent: the agent then cleans up.
        "ClientAliveInterval 2\nClientAliveCountMax 3\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel VERBOSE\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    # nsenter, not `ip netns exec`: only the network namespace changes. `ip netns exec` also
    # gives a mount namespace with a fresh /sys, without the cgroup mounts the runtimes need.
    sh("nsenter", f"--net=/run/netns/{netns}", "/usr/sbin/sshd", "-f", str(config), "-E", str(log))
    wait_port(node_ip)
    return SSHNode(f"hbnode{index + 1}", netns, host_veth, node_ip, pidfile, key.with_suffix(".pub").read_text(), log)


def stop_node(node: SSHNode) -> None:
    pid = node.sshd_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and node.sshd_pid() is not None:
            time.sleep(0.1)
    sh("ip", "netns", "del", node.netns, check=False)  # takes the veth pair with it


def client_key(workdir: Path) -> tuple[Path, Path]:
    key = workdir / "client_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    authorized = workdir / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    return key, authorized


def inventory(workdir: Path, nodes: list[SSHNode], key: Path, known_hosts: Path, python: str | None) -> Path:
    """A YAML inventory of the nodes, in both stack groups, with their SSH settings."""
    hosts = "".join(
        f"        {n.name}:\n"
        f"          ansible_host: {n.address}\n"
        f"          hopbench_agent_lock: /run/hopbench/agent-{n.name}.lock\n"
        for n in nodes
    )
    path = workdir / f"inventory-{'-'.join(n.name for n in nodes)}.yml"
    path.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_user: root\n"
        f"    ansible_ssh_private_key_file: {key}\n"
        f"    ansible_ssh_common_args: -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes\n"
        "    ansible_python_interpreter: /usr/bin/python3\n"
        f"    hopbench_known_hosts: {known_hosts}\n"
        + (f"    hopbench_python: {python}\n" if python else "")
        + "  children:\n"
        "    containerd:\n"
        "      hosts:\n" + hosts + "    docker:\n"
        "      hosts:\n" + hosts
    )
    return path
