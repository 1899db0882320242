"""A lab node that is a virtual machine: QEMU with Debian's own kernel (`hopbench lab up --vm`).

A namespace node (bench/controller/lab.py) shares this machine's kernel, so it cannot give what
a lab node's kernel gives: cgroup v2 alone (this machine's is a v1 hybrid), and root with every
capability (CAP_SYS_RESOURCE, which gVisor's shim and CRI-O's sandbox need here). A VM node
boots Debian's kernel from the same pristine image as the other nodes (plus that kernel, udev
and kmod), trixie by default: cgroup v2 only, systemd 257.

- **Accelerator.** KVM where a standard guest kernel boots under it (bench.node.doctor.kvm:
  kvm_intel or kvm_amd), TCG otherwise, as on this machine, whose KVM is kvm_pvm. A node that
  runs emulated says so itself (`systemd-detect-virt` prints `qemu`, not `kvm`): the agent's
  node facts carry it into meta.json, and its figures are labelled "emulated: functional, not
  for comparison" (bench.controller.runfacts).
- **Disk.** A raw ext4 image made from the image with the node's own identity on top (host
  key, machine id, apt proxy, address), by `mkfs.ext4 -d`, no loop device or mount of it on the
  host. Fresh at `lab up`, kept across `lab reboot`, removed at `lab down`.
- **Network.** A tap device on the lab bridge, nothing else: no QEMU user networking (it would
  give the guest a route out). The guest sets its address on the interface with the node's MAC
  (a unit of the image's own iproute2), with no default route.
- **Power.** The power button is QMP's `system_powerdown` (ACPI: the guest's systemd-logind
  powers off); `--cut` takes the tap down, then kills QEMU at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.errors import HopbenchError

QEMU = "/usr/bin/qemu-system-x86_64"
# What `lab up --vm` installs on the controller (no daemon of its own).
HOST_PACKAGES = {"qemu-system-x86": QEMU, "e2fsprogs": "/usr/sbin/mkfs.ext4"}
# Added to the lab image: Debian's kernel (its initramfs has the virtio modules), and what loads
# the modules of the devices QEMU gives (virtio-net among them) at boot.
PACKAGES = ("linux-image-amd64", "udev", "kmod")
DEFAULT_RELEASE = "trixie"
MEMORY_MIB = 6144
CPUS = 2
DISK_SIZE = "32G"  # sparse: what the image and the stacks' state use
NET_UNIT = "hopbench-lab-net.service"


class VMError(HopbenchError):
    pass


def run(*argv: str, timeout: float = 600) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise VMError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def accelerator(kvm: dict[str, object]) -> str:
    """`kvm` where a standard guest boots under KVM (bench.node.doctor.kvm's verdict), else `tcg`."""
    return "kvm" if kvm.get("usable") else "tcg"


def kernel_files(image: Path) -> tuple[Path, Path]:
    """The image's newest kernel and its initramfs (Debian's, from linux-image-amd64)."""
    kernels = sorted((image / "boot").glob("vmlinuz-*"), key=lambda k: [int(n) for n in re.findall(r"\d+", k.name)])
    if not kernels:
        raise VMError(f"{image}/boot has no vmlinuz-*: the VM image has no kernel")
    kernel = kernels[-1]
    initrd = kernel.with_name("initrd.img-" + kernel.name.removeprefix("vmlinuz-"))
    if not initrd.exists():
        raise VMError(f"{initrd} is missing: the kernel's initramfs was not made")
    return kernel, initrd


def mac_of(index: int) -> str:
    """A locally administered MAC per VM node (QEMU's own prefix)."""
    return f"52:54:00:6c:ab:{index:02x}"


def guest_files(upper: Path, mac: str, address: str) -> None:
    """What the guest needs beyond the namespace node's identity (lab.prepare_node): its root in
    fstab, and its address on the interface with `mac` (no default route: no way out)."""
    etc = upper / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (etc / "hopbench-lab").mkdir(parents=True, exist_ok=True)
    (etc / "hopbench-lab" / "net.env").write_text(f"MAC={mac}\nADDRESS={address}\n")
    script = upper / "usr" / "local" / "sbin" / "hopbench-lab-net"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        "# The lab node's address on the interface QEMU gave it (by MAC); no default route.\n"
        "set -eu\n. /etc/hopbench-lab/net.env\ndev=\n"
        'for d in /sys/class/net/*; do [ "$(cat "$d/address")" = "$MAC" ] && dev=${d##*/}; done\n'
        '[ -n "$dev" ] || { echo "no interface with MAC $MAC" >&2; exit 1; }\n'
        'ip link set lo up\nip link set "$dev" up\nip addr replace "$ADDRESS" dev "$dev"\n'
    )
    script.chmod(0o755)
    units = etc / "systemd" / "system"
    (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
    (units / NET_UNIT).write_text(
        "[Unit]\nDescription=hopbench lab node address\n"
        "After=systemd-udev-settle.service systemd-udevd.service\nWants=systemd-udev-settle.service\n"
        "Before=network.target ssh.service\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/sbin/hopbench-lab-net\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    link = units / "multi-user.target.wants" / NET_UNIT
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{NET_UNIT}")


def make_disk(image: Path, upper: Path, work: Path, mnt: Path, disk: Path, size: str = DISK_SIZE) -> None:
    """A raw ext4 disk holding the image with the node's upper layer over it (an overlay mounted
    read-only for the copy, then unmounted)."""
    for d in (work, mnt):
        d.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={image},upperdir={upper},workdir={work}", str(mnt))
    tmp = disk.with_name(disk.name + ".tmp")  # a disk half made is never booted: renamed when whole
    try:
        tmp.unlink(missing_ok=True)
        run("truncate", "-s", size, str(tmp))
        run("mkfs.ext4", "-q", "-F", "-L", "hopbench-root", "-d", str(mnt), str(tmp), timeout=1800)
        tmp.rename(disk)
    finally:
        tmp.unlink(missing_ok=True)
        run("umount", str(mnt))


def make_tap(tap: str, bridge: str) -> None:
    if subprocess.run(["ip", "link", "show", tap], capture_output=True, check=False).returncode != 0:
        run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
    run("ip", "link", "set", tap, "master", bridge, "up")


def remove_tap(tap: str) -> None:
    subprocess.run(["ip", "link", "del", tap], capture_output=True, check=False)


def qemu_argv(
    name: str, accel: str, kernel: Path, initrd: Path, disk: Path, tap: str, mac: str, folder: Path
) -> list[str]:
    """The guest: Debian's kernel and initramfs booted directly, root on a virtio disk, one
    virtio NIC on the tap, the serial console into a file, QMP on a unix socket, no display."""
    accel_opt = "kvm" if accel == "kvm" else "tcg,thread=multi"
    return [
        QEMU,
        "-name", name,
        "-machine", "q35",
        "-accel", accel_opt,
        # QEMU 7.2's TCG with "max,svm=off,vmx=off" corrupted the guest kernel's path strings here
        # (mountinfo said "xxx" for /sys, ldconfig aborted, udevd failed): the guest keeps max's
        # features, and doctor says a KVM inside an emulated CPU is no evidence for Kata.
        "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(CPUS),
        "-m", str(MEMORY_MIB),
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        # Emulated, a busy host can take minutes over a mount: systemd's 90 s default would fail it.
        "-append", "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0"
        + ("" if accel == "kvm" else " systemd.default_timeout_start_sec=900"),
        "-drive", f"file={disk},format=raw,if=virtio,cache=writeback",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
        "-device", "virtio-rng-pci",
        "-display", "none",
        "-monitor", "none",
        "-serial", f"file:{folder / 'console.log'}",
        "-qmp", f"unix:{folder / 'qmp.sock'},server=on,wait=off",
        "-no-reboot",
        # A guest that resets before its console opens (a triple fault early in boot) makes QEMU
        # exit without a word elsewhere (-no-reboot): its resets and guest errors are kept here.
        "-d", "guest_errors,cpu_reset",
        "-D", str(folder / "qemu-debug.log"),
    ]  # fmt: skip


def start(argv: list[str], folder: Path) -> int:
    with open(folder / "qemu.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )
    return proc.pid


def alive(pid: int | None, name: str) -> bool:
    """QEMU with this node's name runs as `pid` (a PID handed on to another program is not ours)."""
    if not pid:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0] == QEMU.encode() and name.encode() in argv


def qmp(sock: Path, command: str, timeout_s: float = 5) -> None:
    """One QMP command (after the capabilities handshake)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(sock))
        reader = s.makefile("rb")
        reader.readline()  # the greeting
        for cmd in ("qmp_capabilities", command):
            s.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
            while True:
                answer = json.loads(reader.readline() or b"{}")
                if "return" in answer or "error" in answer or not answer:
                    break
            if "error" in answer:
                raise VMError(f"QMP {cmd}: {answer['error']}")


def stop(pid: int | None, name: str, folder: Path, tap: str, timeout_s: float = 120, cut: bool = False) -> None:
    """Power the guest off: the ACPI power button (QMP system_powerdown), killed if it has not
    within timeout_s; `cut`: its tap down first (nothing it would still say leaves), then killed."""
    if cut:
        subprocess.run(["ip", "link", "set", tap, "down"], capture_output=True, check=False)
    if alive(pid, name) and not cut:
        with contextlib.suppress(OSError, VMError, ValueError):
            qmp(folder / "qmp.sock", "system_powerdown")
            end = time.monotonic() + timeout_s
            while time.monotonic() < end and alive(pid, name):
                time.sleep(0.5)
    if pid and alive(pid, name):
        os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while time.monotonic() < end and alive(pid, name):
            time.sleep(0.1)
    if pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
