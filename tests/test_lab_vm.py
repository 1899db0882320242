"""The VM node's pure parts (bench/controller/lab_vm.py): the accelerator, the guest's files and
QEMU's command line. Booting one is tests/integration/test_lab_vm.py's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.controller import lab_vm


def test_the_accelerator_is_kvm_only_where_a_standard_guest_boots():
    assert lab_vm.accelerator({"usable": True, "modules": ["kvm_intel"]}) == "kvm"
    assert (
        lab_vm.accelerator({"usable": False, "why": "kvm_pvm: only PVM guests; a standard kernel does not boot"})
        == "tcg"
    )


def test_qemu_gets_a_tap_and_no_user_network(tmp_path):
    argv = lab_vm.qemu_argv(
        "labvm1", "tcg", Path("/k"), Path("/i"), tmp_path / "disk.img", "hb-lab0t1", lab_vm.mac_of(1), tmp_path
    )
    joined = " ".join(argv)
    assert argv[0] == lab_vm.QEMU and "-accel tcg,thread=multi" in joined and "-cpu max" in joined
    assert "tap,id=n0,ifname=hb-lab0t1,script=no,downscript=no" in argv
    assert "user" not in joined.split("-netdev", 1)[1].split()[0]  # no slirp: it would route the guest out
    assert "-nic" not in argv and "-display" in argv and argv[argv.index("-display") + 1] == "none"
    assert "root=/dev/vda" in argv[argv.index("-append") + 1]
    kvm = lab_vm.qemu_argv("labvm1", "kvm", Path("/k"), Path("/i"), tmp_path / "d", "t", "m", tmp_path)
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"


def test_the_guest_sets_its_own_address_by_mac_with_no_default_route(tmp_path):
    lab_vm.guest_files(tmp_path, "52:54:00:6c:ab:01", "10.232.0.200/24")
    assert (tmp_path / "etc/hopbench-lab/net.env").read_text() == "MAC=52:54:00:6c:ab:01\nADDRESS=10.232.0.200/24\n"
    script = (tmp_path / "usr/local/sbin/hopbench-lab-net").read_text()
    assert "ip route" not in script and "via" not in script
    assert subprocess.run(["sh", "-n", str(tmp_path / "usr/local/sbin/hopbench-lab-net")], check=False).returncode == 0
    link = tmp_path / "etc/systemd/system/multi-user.target.wants" / lab_vm.NET_UNIT
    assert link.is_symlink() and str(link.readlink()) == f"/etc/systemd/system/{lab_vm.NET_UNIT}"
    assert (tmp_path / "etc/fstab").read_text().startswith("/dev/vda / ext4")
    lab_vm.guest_files(tmp_path, "52:54:00:6c:ab:01", "10.232.0.200/24")  # again: the same files


def test_the_kernel_is_the_images_newest_with_its_initramfs(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    with pytest.raises(lab_vm.VMError, match="no vmlinuz"):
        lab_vm.kernel_files(tmp_path)
    for v in ("6.12.10+deb13-amd64", "6.12.9+deb13-amd64"):
        (boot / f"vmlinuz-{v}").write_text("")
    with pytest.raises(lab_vm.VMError, match="initramfs"):
        lab_vm.kernel_files(tmp_path)
    for v in ("6.12.10+deb13-amd64", "6.12.9+deb13-amd64"):
        (boot / f"initrd.img-{v}").write_text("")
    kernel, initrd = lab_vm.kernel_files(tmp_path)
    assert kernel.name == "vmlinuz-6.12.10+deb13-amd64"  # by version, not by spelling
    assert initrd.name == "initrd.img-" + kernel.name.removeprefix("vmlinuz-")


def test_a_pid_is_our_vm_only_while_qemu_with_its_name_runs_it():
    assert not lab_vm.alive(None, "labvm1")
    assert not lab_vm.alive(1, "labvm1")  # init, not QEMU


def test_a_vm_that_stopped_while_booting_says_what_qemu_left(tmp_path, monkeypatch):
    from bench.controller import lab

    monkeypatch.setenv("HOPBENCH_LAB_DIR", str(tmp_path))
    node = lab.LabNode("labvm1", 200, "10.232.0.200", "", "hb-labt1", None, [], kind="vm", mac="m")
    d = lab.node_dir("labvm1")
    d.mkdir(parents=True)
    (d / "qemu.log").write_text("")
    (d / "qemu-debug.log").write_text("CPU Reset (CPU 0)\nTriple fault\n")
    why = lab.stopped_why(node)
    assert f"{d / 'qemu.log'}: empty" in why
    assert "Triple fault" in why
    assert f"{d / 'console.log'}: missing" in why and "is gone" not in why
    d.joinpath("qemu.log").unlink()
    d.joinpath("qemu-debug.log").unlink()
    d.rmdir()
    assert f"its folder {d} is gone" in lab.stopped_why(node)
