"""What a node has that the stacks need (`hopbench doctor`, agent mode "doctor"): facts only.

Each fact comes from the kernel's own files or one harmless call: no daemon is started, no
runtime is run, the node lock is not taken (a run in progress is not disturbed). The controller
(bench.controller.doctor) turns the facts into what each gap means for a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import stacks
from bench.node import nodeinfo

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41
CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0")
# Where the stacks keep their state and images: the free space that matters.
STATE_ROOT = "/var/lib"


def kvm(path: str = "/dev/kvm") -> dict[str, Any]:
    """Whether a VM with one vCPU can be made (what Kata's hypervisor needs), and why not."""
    if not os.path.exists(path):
        return {"usable": False, "why": f"no {path}"}
    fds: list[int] = []
    try:
        fds.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        api = fcntl.ioctl(fds[0], KVM_GET_API_VERSION)
        fds.append(fcntl.ioctl(fds[0], KVM_CREATE_VM, 0))
        fds.append(fcntl.ioctl(fds[1], KVM_CREATE_VCPU, 0))
    except OSError as exc:
        return {"usable": False, "why": f"{path}: {exc.strerror or exc} (step {len(fds) + 1} of open, VM, vCPU)"}
    finally:
        for fd in reversed(fds):
            with contextlib.suppress(OSError):
                os.close(fd)
    return {"usable": True, "api_version": api}


def filesystems() -> list[str]:
    with open("/proc/filesystems") as fh:
        return [line.split()[-1] for line in fh if line.strip()]


def clocksource() -> dict[str, Any]:
    def read(name: str) -> str:
        try:
            return (CLOCKSOURCE / name).read_text().strip()
        except OSError:
            return ""

    return {"current": read("current_clocksource"), "available": read("available_clocksource").split()}


def disk(path: str = STATE_ROOT) -> dict[str, Any]:
    usage = shutil.disk_usage(path)
    return {"path": path, "free_bytes": usage.free, "total_bytes": usage.total}


def described_stacks(stacks_dir: str) -> list[dict[str, Any]]:
    """The stacks provisioning described on this node (files only: nothing is probed)."""
    try:
        found = stacks.discover(stacks_dir)
    except Exception as exc:  # noqa: BLE001 - a broken description is a fact to show, not a crash
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    return [{"stack": s.name, "handlers": sorted(s.handlers), "endpoint": s.cri_endpoint} for s in found]


def facts(stacks_dir: str = stacks.DEFAULT_STACKS_DIR) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def described() -> list[dict[str, Any]]:
        return described_stacks(stacks_dir)

    collectors: dict[str, Callable[[], Any]] = {
        "kernel": nodeinfo.kernel,
        "os": nodeinfo.os_release,
        "cgroups": nodeinfo.cgroups,
        "init": nodeinfo.init_system,
        "capabilities": nodeinfo.capabilities,
        "kvm": kvm,
        "filesystems": filesystems,
        "disk": disk,
        "memory": nodeinfo.memory,
        "cpu": nodeinfo.cpu,
        "clocksource": clocksource,
        "stacks": described,
        "registry": nodeinfo.registry,
        "pull_settings": lambda: {name: c.get("pull", {}) for name, c in nodeinfo.stack_conditions().items()},
    }
    for name, fn in collectors.items():
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one fact failing must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
