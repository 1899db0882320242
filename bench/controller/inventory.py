"""Nodes from the Ansible inventory: one file names the nodes, their stacks and their SSH settings.

The inventory is read with Ansible's own parser (`ansible-inventory --list`), so INI and
YAML inventories, group variables and host patterns work as they do for provisioning. Per
host, the runner uses:

  ansible_connection            local → the agent runs here as a child process; else SSH
  ansible_host, ansible_port    where sshd listens (default: the host name, 22)
  ansible_user                  SSH user (default root); not root → the agent runs under `sudo -n`
  ansible_ssh_private_key_file  key file (the SSH agent and ~/.ssh keys are tried as well)
  hopbench_known_hosts          known_hosts file to verify the host key against (~/.ssh/known_hosts)
  hopbench_accept_new_host_key  true: a host key not yet known is accepted and saved (never a
                                changed one); default false, an unknown key is refused
  hopbench_python               Python with the agent's dependencies on the node
                                (default /opt/hopbench/venv/bin/python, made by the agentenv role)
  hopbench_agent_dir            where the agent archive is uploaded (/var/lib/hopbench/agent)
  hopbench_agent_lock           the agent's lock file (default /run/hopbench/agent.lock)
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import InputError

DEFAULT_PYTHON = "/opt/hopbench/venv/bin/python"
DEFAULT_AGENT_DIR = "/var/lib/hopbench/agent"


class InventoryError(InputError):
    pass


@dataclass(frozen=True)
class Node:
    name: str
    connection: str = "ssh"
    host: str = ""
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    python: str = DEFAULT_PYTHON
    agent_dir: str = DEFAULT_AGENT_DIR
    lock_path: str | None = None
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)


def _bool(path: str, host: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise InventoryError(f"{path}: host {host}: field '{key}': expected true or false, got {value!r}")


def parse(path: str, data: dict[str, Any], limit: list[str] | None = None) -> list[Node]:
    """Nodes from `ansible-inventory --list` output; `limit` keeps the named hosts only."""
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    groups: dict[str, list[str]] = {}
    for group, body in data.items():
        if group == "_meta" or not isinstance(body, dict):
            continue
        for host in body.get("hosts", []):
            groups.setdefault(host, []).append(group)
    hosts = sorted(set(hostvars) | set(groups))
    if limit:
        unknown = [h for h in limit if h not in hosts]
        if unknown:
            raise InventoryError(f"{path}: no host named {', '.join(unknown)} (hosts: {', '.join(hosts) or 'none'})")
        hosts = [h for h in hosts if h in limit]
    nodes = []
    for host in hosts:
        v = hostvars.get(host, {})
        port = v.get("ansible_port", 22)
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise InventoryError(
                f"{path}: host {host}: field 'ansible_port': expected a port number, got {port!r}"
            ) from None
        nodes.append(
            Node(
                name=host,
                connection=str(v.get("ansible_connection", "ssh")),
                host=str(v.get("ansible_host", host)),
                port=port,
                user=str(v.get("ansible_user", "root")),
                key_file=v.get("ansible_ssh_private_key_file"),
                known_hosts=v.get("hopbench_known_hosts"),
                accept_new_host_key=_bool(
                    path, host, "hopbench_accept_new_host_key", v.get("hopbench_accept_new_host_key", False)
                ),
                python=str(v.get("hopbench_python", DEFAULT_PYTHON)),
                agent_dir=str(v.get("hopbench_agent_dir", DEFAULT_AGENT_DIR)),
                lock_path=v.get("hopbench_agent_lock"),
                groups=tuple(sorted(groups.get(host, []))),
                vars=v,
            )
        )
    if not nodes:
        raise InventoryError(f"{path}: no hosts")
    return nodes


def load(path: str | Path, limit: list[str] | None = None) -> list[Node]:
    """Read an inventory file with Ansible's parser; InventoryError names the file and the problem."""
    exe = Path(sys.executable).with_name("ansible-inventory")
    if not Path(path).exists():
        raise InventoryError(f"{path}: no such inventory file")
    proc = subprocess.run(
        [str(exe), "-i", str(path), "--list"], capture_output=True, text=True, check=False, timeout=120
    )
    if proc.returncode != 0:
        raise InventoryError(f"{path}: ansible-inventory failed: {proc.stderr.strip()[-1000:]}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise InventoryError(f"{path}: ansible-inventory printed no JSON ({exc})") from None
    return parse(str(path), data, limit)
