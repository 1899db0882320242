"""`hopbench doctor`: what each gap means (pure logic on given facts), and this machine described
as it is (the real agent in mode doctor, checked against the kernel's own files read here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import cli
from bench.controller.doctor import findings

GOOD = {
    "kernel": {"release": "6.8.0"},
    "os": {"PRETTY_NAME": "Debian GNU/Linux 13"},
    "cgroups": {"mode": "unified"},
    "init": "systemd",
    "capabilities": {"effective": "1ffffffffff", "cap_sys_resource": True},
    "kvm": {"usable": True, "api_version": 12},
    "filesystems": ["ext4", "overlay"],
    "disk": {"path": "/var/lib", "free_bytes": 100 * 2**30},
    "memory": {"available_bytes": 16 * 2**30, "total_bytes": 32 * 2**30},
    "clocksource": {"current": "tsc", "available": ["tsc", "hpet"]},
    "cpu": {"logical": 8, "model": "x"},
    "stacks": [{"stack": "containerd@2.4.2", "handlers": ["runc"]}],
    "registry": {"address": "172.30.130.2:5000", "version": "v3.1.2"},
    "pull_settings": {"containerd@2.4.2": {"transfer.max_concurrent_downloads": 3}},
}


def by_check(facts):
    return {f.check.split(" (")[0]: f for f in findings(facts)}


def test_kvm_is_usable_only_with_a_vendor_module_not_with_pvm_alone(tmp_path):
    from bench.node import doctor as node_doctor

    if not Path("/dev/kvm").exists():
        pytest.skip("no /dev/kvm here: the VM and vCPU steps cannot run")
    for loaded, usable, why in (
        (["kvm_pvm"], False, "kvm_pvm: only PVM guests"),
        ([], False, "no kvm_intel or kvm_amd module"),
        (["kvm_intel", "kvm_pvm"], True, ""),
    ):
        modules = tmp_path / "-".join(loaded or ["none"])
        for m in loaded:
            (modules / m).mkdir(parents=True)
        modules.mkdir(exist_ok=True)
        found = node_doctor.kvm(modules=modules)
        if "vm_and_vcpu" not in found:
            pytest.skip(f"this machine cannot make a VM and a vCPU: {found['why']}")
        assert found["usable"] is usable and why in found.get("why", ""), found


def test_a_node_with_everything_has_no_gap():
    assert all(f.ok for f in findings(GOOD)), [f for f in findings(GOOD) if not f.ok]


def test_the_registry_host_and_what_changes_a_pull_are_named():
    found = by_check(GOOD)
    assert found["registry host"].have == "v3.1.2 at 172.30.130.2:5000"
    assert "transfer.max_concurrent_downloads 3" in found["what changes a pull"].have
    missing = by_check({**GOOD, "registry": {}})["registry host"]
    assert not missing.ok and "--playbook registry.yml" in missing.consequence


def test_each_gap_says_what_it_does_to_a_run():
    bad = {
        **GOOD,
        "cgroups": {"mode": "hybrid"},
        "init": "tini",
        "capabilities": {"effective": "1fffeffffff", "cap_sys_resource": False},
        "kvm": {"usable": False, "why": "no /dev/kvm"},
        "filesystems": ["ext4"],
        "disk": {"path": "/var/lib", "free_bytes": 2**30},
        "memory": {"available_bytes": 2**30, "total_bytes": 2 * 2**30},
        "clocksource": {"current": "hpet", "available": ["hpet"]},
        "stacks": [],
        "registry": {},
    }
    f = by_check(bad)
    # What changes a pull is a record, never a gap.
    assert not any(x.ok for k, x in f.items() if k not in ("kernel", "CPUs", "what changes a pull"))
    assert "crun" in f["cgroup mode"].consequence
    assert "cgroupfs driver" in f["systemd"].consequence and "tini" in f["systemd"].have
    assert "no Kata" in f["KVM"].consequence and "no /dev/kvm" in f["KVM"].have
    assert "runs emulated" in f["KVM"].consequence
    assert "oom clamp wrapper will be in the timed path" in f["CAP_SYS_RESOURCE"].consequence
    assert "native/vfs" in f["overlayfs"].consequence
    assert "fill the disk" in f["free disk"].consequence
    assert "density sweeps stop early" in f["memory available"].consequence
    assert "microseconds" in f["clock source"].consequence
    assert "hopbench provision" in f["stacks described"].consequence


def test_missing_or_broken_facts_are_gaps_not_crashes():
    f = by_check({"stacks": [{"error": "StackDescriptionError: bad"}], "kvm": {"error": "PermissionError"}})
    assert not f["stacks described"].ok and "StackDescriptionError" in f["stacks described"].consequence
    assert not f["KVM"].ok and not f["cgroup mode"].ok


def cgroup_mode_here() -> str:
    """From the mount table, read here: cgroup2 alone is unified, beside v1 controllers hybrid."""
    kinds = {line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}
    if "cgroup2" in kinds:
        return "hybrid" if "cgroup" in kinds else "unified"
    return "legacy" if "cgroup" in kinds else "none"


def test_doctor_describes_this_machine(capsys):
    assert cli.main(["doctor", "--json"]) == 0
    (node,) = json.loads(capsys.readouterr().out).values()
    facts, found = node["facts"], {f["check"].split(" (")[0]: f for f in node["findings"]}
    assert facts["kernel"]["release"] == os.uname().release
    assert facts["cgroups"]["mode"] == cgroup_mode_here()
    assert found["cgroup mode"]["ok"] == (cgroup_mode_here() == "unified")
    init = Path("/proc/1/comm").read_text().strip()
    assert found["systemd"]["ok"] == (init == "systemd")
    assert init == "systemd" or init in found["systemd"]["have"]
    status = Path("/proc/self/status").read_text().splitlines()
    cap_eff = next(line.split()[1] for line in status if line.startswith("CapEff"))
    assert found["CAP_SYS_RESOURCE"]["ok"] == bool(int(cap_eff, 16) >> 24 & 1)
    assert found["overlayfs"]["ok"] == ("overlay" in Path("/proc/filesystems").read_text().split())
    current = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource").read_text().strip()
    assert found["clock source"]["have"].startswith(current)
    if not Path("/dev/kvm").exists():
        assert not found["KVM"]["ok"]
    # KVM counts only where a standard guest kernel runs: a vendor module, not PVM's alone.
    vendor = any(Path(f"/sys/module/{m}").is_dir() for m in ("kvm_intel", "kvm_amd"))
    if not vendor:
        assert not found["KVM"]["ok"], found["KVM"]
    if Path("/sys/module/kvm_pvm").is_dir() and not vendor:
        assert "kvm_pvm: only PVM guests; a standard kernel does not boot" in found["KVM"]["have"]
    st = os.statvfs("/var/lib")
    assert abs(facts["disk"]["free_bytes"] - st.f_bavail * st.f_frsize) < 2**30
    assert facts["cpu"]["logical"] == os.cpu_count()


def test_an_emulated_cpu_is_a_gap_and_its_kvm_is_no_evidence_for_kata():
    facts = {**GOOD, "virtualization": {"vm": "qemu", "container": "none", "emulated": True}}
    got = by_check(facts)
    assert not got["CPU"].ok and "emulated" in got["CPU"].have and "not for comparison" in got["CPU"].consequence
    assert not got["KVM"].ok and "emulated CPU" in got["KVM"].have
    real = by_check({**GOOD, "virtualization": {"vm": "kvm", "container": "none", "emulated": False}})
    assert real["CPU"].ok and real["KVM"].ok
