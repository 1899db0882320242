"""Stacks provisioned on a node, as the Ansible roles describe them in /etc/hopbench/stacks.

Each stack role writes one JSON description (socket, daemons and their pid files,
runtime handlers, images, CNI network). The agent reads them to know what it may measure
and checks each daemon is alive and answering before a target is called available.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STACKS_DIR = "/etc/hopbench/stacks"


@dataclass(frozen=True)
class Daemon:
    name: str
    exec: str
    pidfile: str
    version_cmd: tuple[str, ...] = ()

    def pid(self) -> int | None:
        """The daemon's PID from its pid file, if that process runs the daemon's binary."""
        try:
            pid = int(Path(self.pidfile).read_text().split()[0])
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, ValueError, IndexError):
            return None
        return pid if os.path.realpath(exe) == os.path.realpath(self.exec) else None


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
    name: str
    cri_endpoint: str
    daemons: tuple[Daemon, ...]
    handlers: dict[str, Handler]
    pause_image: str
    workload_image: str
    description_path: str
    extra: dict[str, Any] = field(default_factory=dict)
    unavailable: str = ""  # why provisioning could not install the stack, if it could not


class StackDescriptionError(ValueError):
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
        Daemon(d["name"], d["exec"], d["pidfile"], tuple(d.get("version_cmd", ())))
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
    return Stack(
        name=_need(data, "stack", path, str),
        cri_endpoint=_need(data, "cri_endpoint", path, str),
        daemons=daemons,
        handlers=handlers,
        pause_image=_need(data, "pause_image", path, str),
        workload_image=_need(data, "workload_image", path, str),
        description_path=str(path),
        extra={k: v for k, v in data.items() if k not in known},
        unavailable=str(data.get("unavailable") or ""),
    )


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
