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
  hopbench_idle_timeout_s       seconds without a word from the other end before the link counts
                                as lost, both ways: the controller gives up on a silent agent, and
                                the agent (its watchdog) stops and cleans up when the controller's
                                pings stop (default 30, from 3 to 3600)

Every setting is checked here, before any node is touched: a bad one is an InventoryError
naming the file, the host, the field, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
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
    idle_timeout_s: float = 30.0  # no word from the other end this long: the link is lost (both ways)
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)


def _bool(path: str, host: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise InventoryError(f"{path}: host {host}: field '{key}': expected true or false, got {value!r}")


IDLE_TIMEOUT_RANGE = (3.0, 3600.0)


def _seconds(path: str, host: str, key: str, value: object, lo: float, hi: float) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (lo <= seconds <= hi):  # NaN fails both comparisons
        raise InventoryError(
            f"{path}: host {host}: field '{key}': expected seconds from {lo:g} to {hi:g}, got {value!r}"
        )
    return seconds


CONNECTIONS = ("local", "ssh", "paramiko", "smart")  # hopbench runs an agent locally or over SSH


def _text(path: str, host: str, key: str, value: object, absolute: bool = False) -> str:
    """A plain string setting: no control characters; with `absolute`, an absolute path."""
    if (
        not isinstance(value, str | int)
        or isinstance(value, bool)
        or not str(value)
        or any(ord(c) < 32 or ord(c) == 127 for c in str(value))
        or (absolute and not str(value).startswith("/"))
    ):
        expected = "an absolute path" if absolute else "a non-empty string without control characters"
        raise InventoryError(f"{path}: host {host}: field '{key}': expected {expected}, got {value!r}")
    return str(value)


def _node(path: str, host: str, v: dict[str, Any], groups: tuple[str, ...]) -> Node:
    """One host's settings, each checked: the file, host and field named in every error."""
    port = v.get("ansible_port", 22)
    try:
        port = int(port)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a YAML .inf
        port = -1
    if isinstance(v.get("ansible_port"), bool | float) or not 1 <= port <= 65535:
        raise InventoryError(
            f"{path}: host {host}: field 'ansible_port': expected a port number from 1 to 65535, "
            f"got {v.get('ansible_port')!r}"
        )
    connection = _text(path, host, "ansible_connection", v.get("ansible_connection", "ssh"))
    if connection not in CONNECTIONS:
        raise InventoryError(
            f"{path}: host {host}: field 'ansible_connection': expected local or ssh, got {connection!r}"
        )

    def optional(key: str) -> str | None:
        return None if v.get(key) is None else _text(path, host, key, v[key], absolute=True)

    return Node(
        name=host,
        connection="local" if connection == "local" else "ssh",
        host=_text(path, host, "ansible_host", v.get("ansible_host", host)),
        port=port,
        user=_text(path, host, "ansible_user", v.get("ansible_user", "root")),
        key_file=optional("ansible_ssh_private_key_file"),
        known_hosts=optional("hopbench_known_hosts"),
        accept_new_host_key=_bool(
            path, host, "hopbench_accept_new_host_key", v.get("hopbench_accept_new_host_key", False)
        ),
        python=_text(path, host, "hopbench_python", v.get("hopbench_python", DEFAULT_PYTHON), absolute=True),
        agent_dir=_text(
            path, host, "hopbench_agent_dir", v.get("hopbench_agent_dir", DEFAULT_AGENT_DIR), absolute=True
        ),
        lock_path=optional("hopbench_agent_lock"),
        idle_timeout_s=_seconds(
            path, host, "hopbench_idle_timeout_s", v.get("hopbench_idle_timeout_s", 30), *IDLE_TIMEOUT_RANGE
        ),
        groups=groups,
        vars=v,
    )


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
        if not isinstance(v, dict):
            raise InventoryError(f"{path}: host {host}: expected a mapping of variables, got {type(v).__name__}")
        nodes.append(_node(path, host, v, tuple(sorted(groups.get(host, [])))))
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
