"""`hopbench doctor`: per node, what the stacks need, what the node has, and what each gap means.

The node reports facts (bench.node.doctor, agent mode "doctor": no lock taken, nothing started,
so it may run beside a run); this module says, one line per check, what a gap does to a run:
which targets cannot exist, what lands in the timed path, what makes figures differ from a
production node's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from bench.controller.transport import Transport, TransportError
from bench.messages import Error, Job, Meta

GIB = 2**30
MIN_FREE_DISK = 20 * GIB  # the Go builds, images and stack state of a full provisioning, with room
MIN_AVAILABLE_MEMORY = 4 * GIB
# Clock sources whose reads go through the kernel's slow path (µs each instead of ~20-100 ns).
SLOW_CLOCKS = ("hpet", "acpi_pm", "jiffies", "pit")


@dataclass(frozen=True)
class Finding:
    check: str
    have: str
    ok: bool
    consequence: str


def gather(transport: Transport) -> dict[str, Any]:
    """The node's facts, from its agent in mode doctor."""
    job = Job(run_id=f"doctor-{secrets.token_hex(4)}", node=transport.node, mode="doctor")
    facts: dict[str, Any] = {}
    errors = []
    for ev in transport.run_agent(job):
        if isinstance(ev, Meta):
            facts = dict(ev.node)
        elif isinstance(ev, Error):
            errors.append(ev.message)
    if errors or not facts:
        raise TransportError("; ".join(errors) or f"node {transport.node}: the agent reported no facts")
    return facts


def _gib(n: Any) -> str:
    return f"{float(n) / GIB:.1f} GiB" if isinstance(n, int | float) else "?"


def _check(check: str, ok: bool, have: str, good: str, gap: str) -> Finding:
    """A yes/no check: what the node has, and the consequence that goes with ok or with the gap."""
    return Finding(check, have, ok, good if ok else gap)


def findings(facts: dict[str, Any]) -> list[Finding]:
    """One finding per check, with its consequence for a run when the node falls short."""
    out: list[Finding] = []
    kernel = facts.get("kernel", {})
    os_name = facts.get("os", {}).get("PRETTY_NAME", "?") if isinstance(facts.get("os"), dict) else "?"
    out.append(Finding("kernel", f"{kernel.get('release', '?')} ({os_name})", True, "recorded with every run"))

    mode = facts.get("cgroups", {}).get("mode", "?")
    cgroup_gap = {
        "unified": "",
        "hybrid": "cgroup v1 controllers (hybrid): crun refuses the mode, so every crun target is unavailable; "
        "kubelet's hugetlb limits fail under CRI-O; figures are not a cgroup v2 node's",
        "legacy": "cgroup v1 only: crun targets unavailable; kubelet >= 1.31 keeps v1 in maintenance; figures are "
        "not a cgroup v2 node's",
    }.get(mode, "no cgroup hierarchy found: no stack can start a container")
    out.append(Finding("cgroup mode", str(mode), not cgroup_gap, cgroup_gap or "v2: what current Kubernetes expects"))

    init = str(facts.get("init", "?"))
    systemd = init == "systemd"
    out.append(
        _check(
            "systemd",
            systemd,
            "yes" if systemd else f"no (PID 1 is {init})",
            "stacks use the systemd cgroup driver as kubeadm nodes do",
            "stacks run with the cgroupfs driver under hopbench's own supervisor, not the systemd driver kubeadm "
            "nodes use: the cgroup paths and the driver's own cost differ",
        )
    )

    virt = facts.get("virtualization") or {}
    if isinstance(virt, dict) and virt.get("vm"):
        emulated = bool(virt.get("emulated"))
        out.append(
            _check(
                "CPU",
                not emulated,
                f"{'emulated' if emulated else 'real'} (hypervisor {virt['vm']}, container {virt.get('container')})",
                "times are the hardware's (under a hypervisor, as on most lab nodes)",
                "QEMU without KVM emulates the CPU: the node's figures are labelled"
                " 'emulated: functional, not for comparison'",
            )
        )

    kvm = facts.get("kvm", {})
    usable = bool(kvm.get("usable"))
    if usable and isinstance(virt, dict) and virt.get("emulated"):
        # An emulated CPU offers svm or vmx, and a KVM on it makes VMs: no evidence that Kata runs.
        kvm = {**kvm, "usable": False, "why": "KVM inside an emulated CPU (QEMU TCG): not what Kata needs"}
        usable = False
    out.append(
        _check(
            "KVM",
            usable,
            f"usable ({', '.join(kvm.get('modules') or ['kvm'])}; made a VM and a vCPU)"
            if usable
            else f"no ({kvm.get('why', kvm.get('error', '?'))})",
            "a standard guest kernel runs under KVM: what Kata's hypervisor and a VM node need",
            "no Kata (its hypervisor boots a standard guest kernel); a VM node runs emulated (QEMU TCG):"
            " functional, not for comparison",
        )
    )

    caps = facts.get("capabilities", {})
    resource = bool(caps.get("cap_sys_resource"))
    out.append(
        _check(
            "CAP_SYS_RESOURCE",
            resource,
            "yes" if resource else f"no (effective caps {caps.get('effective', '?')})",
            "runtimes set oom_score_adj as on a production node",
            "runtimes cannot lower oom_score_adj: the oom clamp wrapper will be in the timed path of every OCI "
            "runtime call",
        )
    )

    fs = facts.get("filesystems", [])
    overlay = isinstance(fs, list) and "overlay" in fs
    out.append(
        _check(
            "overlayfs",
            overlay,
            "yes" if overlay else "no",
            "the overlayfs snapshotter and storage driver, as on production nodes",
            "no overlayfs: the stacks fall back to copying snapshotters (native/vfs); container creation is far "
            "slower and not comparable",
        )
    )

    disk = facts.get("disk", {})
    free = disk.get("free_bytes", 0)
    out.append(
        _check(
            f"free disk ({disk.get('path', '?')})",
            isinstance(free, int) and free >= MIN_FREE_DISK,
            _gib(free),
            "room for the builds, images and stack state",
            f"below {_gib(MIN_FREE_DISK)}: provisioning (Go builds, images) or a density run may fill the disk",
        )
    )

    mem = facts.get("memory", {})
    avail = mem.get("available_bytes", 0)
    out.append(
        _check(
            "memory available",
            isinstance(avail, int) and avail >= MIN_AVAILABLE_MEMORY,
            f"{_gib(avail)} of {_gib(mem.get('total_bytes'))}",
            "room for the daemons and a density sweep",
            f"below {_gib(MIN_AVAILABLE_MEMORY)}: density sweeps stop early; the page cache evicted between "
            "lifecycles slows image reads",
        )
    )

    clock = facts.get("clocksource", {})
    current = str(clock.get("current", "?"))
    slow = current in SLOW_CLOCKS
    out.append(
        Finding(
            "clock source",
            f"{current} (available: {' '.join(clock.get('available', [])) or '?'})",
            not slow and current != "?",
            f"{current}: each clock read costs microseconds; the timing floor rises (see the report's Clock line)"
            if slow
            else "clock reads in user space (vDSO): the timing floor is tens of nanoseconds",
        )
    )

    cpu = facts.get("cpu", {})
    out.append(
        Finding(
            "CPUs",
            f"{cpu.get('logical', '?')} ({cpu.get('model', '?')})",
            isinstance(cpu.get("logical"), int) and cpu["logical"] >= 2,
            "concurrency above the CPU count measures queueing on the node as much as the stack",
        )
    )

    described = facts.get("stacks", [])
    names = [s["stack"] for s in described if isinstance(s, dict) and "stack" in s]
    broken = [s["error"] for s in described if isinstance(s, dict) and "error" in s]
    out.append(
        Finding(
            "stacks described",
            ", ".join(names) if names else "none",
            bool(names) and not broken,
            "; ".join(broken)
            if broken
            else "`hopbench targets` probes each one"
            if names
            else "nothing provisioned: run `hopbench provision`",
        )
    )
    registry = facts.get("registry") or {}
    out.append(
        Finding(
            "registry host (level image)",
            f"{registry.get('version')} at {registry.get('address')}" if registry.get("address") else "none",
            bool(registry.get("address")),
            "image pulls are measured against it"
            if registry.get("address")
            else "level image needs one: `hopbench provision --playbook registry.yml`",
        )
    )
    pulls = facts.get("pull_settings") or {}
    if isinstance(pulls, dict) and pulls and "error" not in pulls:
        said = "; ".join(
            f"{stack}: " + ", ".join(f"{k} {v}" for k, v in settings.items())
            for stack, settings in sorted(pulls.items())
            if isinstance(settings, dict) and settings
        )
        out.append(
            Finding(
                "what changes a pull",
                said or "nothing recorded",
                True,
                "recorded with every run (meta.json node_facts.stacks.<stack>.pull)",
            )
        )
    return out
