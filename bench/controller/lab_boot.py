"""Boot one lab node: a pristine Debian root with systemd as PID 1, sharing only the kernel.

Run by `hopbench lab up` as root on the controller, never imported. Two stages:

  enter  (on the host)  moves itself into the node's own cgroups (one folder per hierarchy,
                        made by the lab under its own subtree), then execs
                        nsenter --net=<the node's netns> unshare --pid --fork --mount --uts
                        --ipc --cgroup --propagation private  <this file> boot ...
  boot   (PID 1 of the node's PID namespace) mounts the node's root (an overlay of the cached
                        image and the node's own upper folder), its state folder, proc, a
                        read-only sysfs, its own cgroup hierarchies (rooted at the node's cgroup
                        namespace, writable, as on a real node), a small /dev, tmpfs /run and
                        /tmp; pivots into the root and execs systemd.

systemd-nspawn is not used: it mounts the cgroup v1 controllers read-only, and container
runtimes inside the node need them writable (kind's node containers need the same).
No argument is ever passed through a shell.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
from typing import Any

# /dev of the node: these character devices of the host, bound one by one (no devtmpfs, which
# would show the node every device of the host).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty", "fuse", "net/tun")
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
MNT_DETACH = 2


def run(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"lab_boot: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


def enter(spec: dict[str, Any]) -> None:
    for procs in spec["cgroup_procs"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    os.execv(  # noqa: S606 - an argv, no shell
        "/usr/bin/nsenter",
        [
            "nsenter",
            f"--net=/run/netns/{spec['netns']}",
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--cgroup",
            "--propagation",
            "private",
            sys.executable,
            os.path.abspath(__file__),
            "boot",
            json.dumps(spec),
        ],
    )


def cgroup_hierarchies() -> list[tuple[str, str, str]]:
    """(fstype, folder name under /sys/fs/cgroup, options) of each cgroup mount of the host."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mountpoint = left.split()[4]
            fstype, _source, opts = right.split()[:3]
            if fstype not in ("cgroup", "cgroup2") or not mountpoint.startswith("/sys/fs/cgroup/"):
                continue
            keep = [o for o in opts.split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev", "noexec")]
            found.append((fstype, mountpoint.removeprefix("/sys/fs/cgroup/"), ",".join(keep)))
    return found


def overlay(lower: str, upper: str, work: str, target: str) -> None:
    """`lower` read-only under `upper`, which takes every write, mounted at `target`."""
    for folder in (target, upper, work):
        os.makedirs(folder, exist_ok=True)
    run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", target)


def boot(spec: dict[str, Any]) -> None:
    root = spec["root"]
    hierarchies = cgroup_hierarchies()  # read before anything is mounted over /sys
    overlay(spec["image"], spec["upper"], spec["work"], root)
    for source, target in spec["binds"]:
        os.makedirs(root + target, exist_ok=True)
        run("mount", "--bind", source, root + target)
    for lower, target, upper, work in spec.get("overlays", []):
        overlay(lower, upper, work, root + target)
    run("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", root + "/proc")
    run("mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", root + "/sys")
    cg = root + "/sys/fs/cgroup"
    run("mount", "-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=755", "tmpfs", cg)
    for fstype, name, opts in hierarchies:
        os.makedirs(f"{cg}/{name}", exist_ok=True)
        argv = ["mount", "-t", fstype, "-o", f"nosuid,nodev,noexec{',' + opts if opts else ''}", fstype, f"{cg}/{name}"]
        run(*argv)
    dev = root + "/dev"
    run("mount", "-t", "tmpfs", "-o", "nosuid,mode=755,size=65536k", "tmpfs", dev)
    for name in DEVICES:
        if not os.path.exists(f"/dev/{name}"):
            continue
        os.makedirs(os.path.dirname(f"{dev}/{name}"), exist_ok=True)
        open(f"{dev}/{name}", "a").close()
        run("mount", "--bind", f"/dev/{name}", f"{dev}/{name}")
    for sub in ("pts", "shm", "mqueue"):
        os.makedirs(f"{dev}/{sub}", exist_ok=True)
    run("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts", f"{dev}/pts")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    run("mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=1777", "tmpfs", f"{dev}/shm")
    run("mount", "-t", "mqueue", "mqueue", f"{dev}/mqueue")
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{link}")
    # The console: the log file the lab gave as stdout (journald and systemd print there).
    open(f"{dev}/console", "a").close()
    run("mount", "--bind", spec["console"], f"{dev}/console")
    # kubelet will not start without /dev/kmsg (its OOM watcher opens it). The host's is not
    # bound: a read-only mount does not stop writes to a device, and whatever a node writes
    # there would land in the host's kernel log. As kind's node entrypoint does, it is the
    # node's console instead: the node's kubelet sees no kernel OOM events (nothing here uses them).
    os.symlink("console", f"{dev}/kmsg")
    run("mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=755", "tmpfs", root + "/run")
    run("mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=1777", "tmpfs", root + "/tmp")  # noqa: S108 - the node's own /tmp
    with open("/proc/sys/kernel/hostname", "w") as f:  # our own UTS namespace
        f.write(spec["hostname"])
    os.chdir(root)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(PIVOT_ROOT[platform.machine()], b".", b".") != 0:
        raise SystemExit(f"lab_boot: pivot_root: {os.strerror(ctypes.get_errno())}")
    if libc.umount2(b".", MNT_DETACH) != 0:
        raise SystemExit(f"lab_boot: umount of the old root: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")
    env = {"container": "hopbench-lab", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    os.execve("/lib/systemd/systemd", ["/lib/systemd/systemd"], env)  # noqa: S606 - an argv, no shell


if __name__ == "__main__":
    stage, payload = sys.argv[1], json.loads(sys.argv[2])
    {"enter": enter, "boot": boot}[stage](payload)
