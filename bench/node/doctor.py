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


# The KVM vendor modules that run a standard guest (hardware virtualisation), and PVM's, which
# runs only guests whose kernel is built for it (shadow paging inside another VM).
STANDARD_KVM = ("kvm_intel", "kvm_amd")
PVM = "kvm_pvm"
MODULES = Path("/sys/module")


def kvm(path: str = "/dev/kvm", modules: Path = MODULES) -> dict[str, Any]:
    """Whether a standard guest kernel (what Kata's hypervisor and a VM node boot) can run under
    KVM, and why not. Making a VM and a vCPU is not enough: under kvm_pvm both succeed, and a
    standard kernel then hangs at its first instructions (this machine: Debian's kernel under
    QEMU -accel kvm stopped after SeaBIOS's "Booting from ROM"). So the vendor module decides:
    kvm_intel or kvm_amd loaded, and a VM with a vCPU made."""
    loaded = [m for m in (*STANDARD_KVM, PVM) if (modules / m).is_dir()]
    out: dict[str, Any] = {"modules": loaded}
    if not os.path.exists(path):
        return {**out, "usable": False, "why": f"no {path}"}
    fds: list[int] = []
    try:
        fds.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        out["api_version"] = fcntl.ioctl(fds[0], KVM_GET_API_VERSION)
        fds.append(fcntl.ioctl(fds[0], KVM_CREATE_VM, 0))
        fds.append(fcntl.ioctl(fds[1], KVM_CREATE_VCPU, 0))
    except OSError as exc:
        return {**out, "usable": False, "why": f"{path}: {exc.strerror or exc} (step {len(fds) + 1} of open, VM, vCPU)"}
    finally:
        for fd in reversed(fds):
            with contextlib.suppress(OSError):
                os.close(fd)
    if not any(m in loaded for m in STANDARD_KVM):
        why = (
            "kvm_pvm: only PVM guests; a standard kernel does not boot"
            if PVM in loaded
            else "no kvm_intel or kvm_amd module: a VM can be made, but nothing says a standard kernel boots in it"
        )
        return {**out, "usable": False, "vm_and_vcpu": True, "why": why}
    return {**out, "usable": True, "vm_and_vcpu": True}


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
        "virtualization": nodeinfo.virtualization,
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
