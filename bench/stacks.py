"""Stacks provisioned on a node, as the Ansible roles describe them in /etc/hopbench/stacks.

Each stack role writes one JSON description per stack instance (socket, daemons and their pid
files, runtime handlers, images, CNI network, version). The agent reads them to know what it may
measure and checks each daemon is alive and answering before a target is called available.

A node may run several instances of one stack at different versions, side by side (own
config, state, socket, bridge). An instance is named `<stack>@<version>` (`containerd@2.4.2`):
that name is the `stack` of its targets and samples, so versions stay apart in every table;
`kind` is the stack it is an instance of. One instance per stack is its default: the one a
scenario means by plain `containerd/runc`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import InputError

DEFAULT_STACKS_DIR = "/etc/hopbench/stacks"


@dataclass(frozen=True)
class Daemon:
    name: str
    exec: str
    pidfile: str
    version_cmd: tuple[str, ...] = ()
    log: str = ""  # the daemon's log file ("" when the description does not say)

    @property
    def unit(self) -> str:
        """The systemd unit the daemon role makes of it on a systemd node: hopbench-<name of its
        pid file>.service (roles/daemon: daemon_pidfile is <run dir>/<daemon_name>.pid)."""
        return f"hopbench-{Path(self.pidfile).stem}.service"

    def pid(self) -> int | None:
        """The daemon's PID, if that process runs the daemon's binary: from its pid file (a node
        without systemd), else its unit's MainPID (a systemd node, where units write none)."""
        for pid in (_pid_file(self.pidfile), _main_pid(self.unit)):
            if pid is not None and _runs(pid, self.exec):
                return pid
        return None


def _pid_file(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _runs(pid: int, program: str) -> bool:
    try:
        return os.path.realpath(os.readlink(f"/proc/{pid}/exe")) == os.path.realpath(program)
    except OSError:
        return False


_MAIN_PIDS: dict[str, int] = {}


def _main_pid(unit: str) -> int | None:
    """MainPID of a systemd unit, asked once and again only when that process is gone."""
    known = _MAIN_PIDS.get(unit)
    if known is not None and os.path.exists(f"/proc/{known}"):
        return known
    if not os.path.isdir("/run/systemd/system"):  # systemd is not this node's init
        return None
    try:
        out = subprocess.run(
            ["systemctl", "show", "--property=MainPID", "--value", unit],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if not out.isdigit() or out == "0":
        return None
    _MAIN_PIDS[unit] = int(out)
    return int(out)


@dataclass(frozen=True)
class Handler:
    name: str
    runtime_handler: str
    binary: str
    version_cmd: tuple[str, ...] = ()
    available: bool = True
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    name: str  # the instance: <kind>@<version>, or <kind> when the description has no version
    cri_endpoint: str
    daemons: tuple[Daemon, ...]
    handlers: dict[str, Handler]
    pause_image: str
    workload_image: str
    description_path: str
    extra: dict[str, Any] = field(default_factory=dict)
    unavailable: str = ""  # why provisioning could not install the stack, if it could not
    kind: str = ""  # containerd, crio or docker
    version: str = ""  # the instance's version label, e.g. 2.4.2
    default: bool = True  # the instance a plain STACK/HANDLER target means
    # Version commands of the stack's components other than its daemons (CRI-O's conmon).
    components: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def cgroup_driver(self) -> str:
        """The instance's cgroup driver (`cgroupfs` or `systemd`), as its role configured it."""
        return str(self.extra.get("cgroup_driver") or "cgroupfs")


class StackDescriptionError(InputError):
    pass


def _need(data: dict[str, Any], key: str, path: Path, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise StackDescriptionError(f"{path}: field '{key}': expected {kind.__name__}, got {value!r}")
    return value


def load_stack(path: Path) -> Stack:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StackDescriptionError(f"{path}: expected a JSON stack description: {exc}") from exc
    daemons = tuple(
        Daemon(d["name"], d["exec"], d["pidfile"], tuple(d.get("version_cmd", ())), str(d.get("log", "")))
        for d in _need(data, "daemons", path, list)
    )
    handler_keys = {"runtime_handler", "binary", "version_cmd", "available", "reason"}
    handlers = {
        name: Handler(
            name,
            h.get("runtime_handler", name),
            h.get("binary", ""),
            tuple(h.get("version_cmd", ())),
            bool(h.get("available", True)),
            str(h.get("reason", "")),
            {k: v for k, v in h.items() if k not in handler_keys},
        )
        for name, h in _need(data, "handlers", path, dict).items()
    }
    known = {"stack", "cri_endpoint", "daemons", "handlers", "pause_image", "workload_image", "unavailable"}
    known |= {"version", "default", "components"}
    components = data.get("components") or {}
    if not isinstance(components, dict) or not all(
        isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv) for argv in components.values()
    ):
        raise StackDescriptionError(
            f"{path}: field 'components': expected a mapping of name to a version command (a list of strings), "
            f"got {components!r}"
        )
    kind = _need(data, "stack", path, str)
    version = str(data.get("version") or "")
    default = data.get("default", True)
    if isinstance(default, str):  # Ansible's to_nice_json of a templated boolean
        default = default.strip().lower() == "true"
    return Stack(
        name=instance_name(kind, version),
        kind=kind,
        version=version,
        default=bool(default),
        cri_endpoint=_need(data, "cri_endpoint", path, str),
        daemons=daemons,
        handlers=handlers,
        pause_image=_need(data, "pause_image", path, str),
        workload_image=_need(data, "workload_image", path, str),
        description_path=str(path),
        extra={k: v for k, v in data.items() if k not in known},
        unavailable=str(data.get("unavailable") or ""),
        components={str(name): tuple(argv) for name, argv in components.items()},
    )


def instance_name(kind: str, version: str) -> str:
    """`containerd@2.4.2`; the bare kind for an instance without a version (older descriptions)."""
    return f"{kind}@{version}" if version else kind


def kube_node_name(stack: str) -> str:
    """The node name of a stack instance's kubelet (its --hostname-override, and the host.name of
    its spans): a DNS subdomain, so a twin's '+' (containerd@2.4.2+cgroupfs) becomes '-'."""
    return re.sub(r"[^a-z0-9.-]", "-", f"hb-kube-{stack.replace('@', '-')}".lower())


def kind_of(stack: str) -> str:
    """The stack an instance name belongs to: `containerd@2.4.2` -> `containerd`."""
    return stack.split("@", 1)[0]


def version_of(stack: str) -> str:
    """The version an instance name carries: `containerd@2.4.2` -> `2.4.2` ('' without one)."""
    return stack.partition("@")[2]


def variant_of(stack: str) -> str:
    """What sets an instance apart from its version's default one, after a '+' in its version:
    `containerd@2.4.2+cgroupfs` -> `cgroupfs` (its cgroup driver, bench.controller.driver); ''."""
    return version_of(stack).partition("+")[2]


def version_key(version: str) -> tuple[int, ...]:
    """Order version labels numerically (`1.6.20` < `2.4.2`; `29.8.1-dev` counts as 29.8.1; a
    variant after '+' is not part of the version)."""
    parts: list[int] = []
    for piece in version.partition("+")[0].replace("-", ".").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def discover(stacks_dir: str = DEFAULT_STACKS_DIR) -> list[Stack]:
    """Every stack described on this node, sorted by name."""
    directory = Path(stacks_dir)
    if not directory.is_dir():
        return []
    return [load_stack(p) for p in sorted(directory.glob("*.json"))]


@functools.lru_cache(maxsize=64)
def command_version(argv: tuple[str, ...]) -> str:
    """First line of a component's version command, or why there is none (asked once per process:
    every pair of a stack names the same daemons and runtimes)."""
    if not argv:
        return "unknown"
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else f"unknown (exit {out.returncode})"
