"""What runs and lies around on a node between runs: the inventory a leak shows up in.

After a run ends (or is killed, or a daemon dies under it and the next run sweeps) the node
should hold no more than before: no shim, conmon or pod process, mount, veth, network namespace,
IPAM lease, pod cgroup, pod file, dangling symlink, daemon file descriptor or state-directory byte
beyond what a run leaves by design (images, the daemons' databases). `take` counts each; `grown`
says what grew. The soak (benchmarks/soak.py) and the fault tests read it; nothing here changes the node.

Every count is read from /proc, /sys and the stacks' own directories (the stack descriptions in
/etc/hopbench/stacks name them), the way the agent finds processes (bench.node.memory): by the
executable's name and the pod's cgroup, never by guessing from process order.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stacks
from bench.node import kubelet, memory

CGROUP_ROOT = Path("/sys/fs/cgroup")
MONITORS = ("containerd-shim", "conmon")  # a per-pod or per-container process of a stack
IPAM_OWN_FILES = ("lock", "last_reserved_ip")  # host-local's bookkeeping, not leases


def exe_name(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def processes() -> dict[str, int]:
    """Shims (containerd-shim-*), conmons, and the processes under them (pause, workloads, runsc's)."""
    kids = _children()
    shims = conmons = under = 0
    for pid in sorted({p for ps in kids.values() for p in ps}):
        name = exe_name(pid)
        if not name.startswith(MONITORS) or not memory.in_own_pid_namespace(pid):
            continue  # not a monitor, or a nested node's (bench.node.memory.in_own_pid_namespace)
        if name.startswith("conmon"):
            conmons += 1
        else:
            shims += 1
        stack = list(kids.get(pid, []))
        while stack:
            child = stack.pop()
            under += 1
            stack.extend(kids.get(child, []))
    return {"shims": shims, "conmon": conmons, "pod processes": under}


@dataclass(frozen=True)
class Orphan:
    """A shim or conmon of one of the node's stacks that its daemon no longer knows."""

    pid: int
    name: str  # containerd-shim-runc-v2, conmon
    stack: str
    object_id: str  # the sandbox or container it was started for
    why: str
    age_s: float
    tree: tuple[int, ...]  # the processes under it (pause, workload), deepest last


def _age_s(pid: int) -> float:
    """Seconds since the process started (/proc/PID/stat field 22, in clock ticks since boot)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _bundle_gone(pid: int) -> bool:
    """A monitor runs in its container's bundle folder (containerd starts a shim there, CRI-O a
    conmon): when the daemon has removed that folder, the kernel says the cwd is deleted."""
    try:
        return os.readlink(f"/proc/{pid}/cwd").endswith(" (deleted)")
    except OSError:
        return False


def orphan_monitors(
    described: Iterable[stacks.Stack],
    known: dict[str, set[str]],
    older_than_s: float,
    engine_known: dict[str, set[str]] | None = None,
) -> list[Orphan]:
    """Shims and conmons of `described` that no daemon knows any more: their bundle folder is gone,
    or (for a stack in `known`: its CRI's sandbox and container ids) the CRI does not list what
    they were started for, or (for a stack in `engine_known`: every container id dockerd has) a
    shim in dockerd's containerd namespace serves a container dockerd has no record of.
    A daemon killed between starting a shim and reading the address the shim writes forgets the
    shim after its restart and removes its bundle, but the shim runs on (containerd 2.4: "failed
    to read bootstrap.json ... address: no such file or directory"). dockerd killed while it starts
    a container keeps it as created; its containerd reconnects to the shim after the restart, and
    removing the container (the next sweep's RemovePodSandbox) drops dockerd's record while the
    task and its process run on.
    Monitors younger than `older_than_s` are left: one being started right now is not listed yet.
    The caller removes them; nothing here changes the node."""
    engine_known = engine_known or {}
    found = list(described)
    kids = _children()
    orphans = []
    for proc in memory.Classifier(found).classify():
        if proc.role != "shim" or not proc.name.startswith(MONITORS):
            continue
        try:
            age = _age_s(proc.pid)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if age < older_than_s:
            continue
        why = ""
        if _bundle_gone(proc.pid):
            why = "its bundle folder was removed by its daemon"
        elif (
            proc.object_id
            and proc.object_id not in known.get(proc.stack, {proc.object_id})
            # the CRI lists only its own containerd namespace's containers
            and (not proc.name.startswith("containerd-shim") or _shim_namespace(proc.pid) == "k8s.io")
        ):
            why = f"{proc.stack} does not know {proc.object_id[:12]} through the CRI"
        elif (
            proc.object_id
            and proc.stack in engine_known
            and proc.name.startswith("containerd-shim")
            and _shim_namespace(proc.pid) == "moby"
            and proc.object_id not in engine_known[proc.stack]
        ):
            why = f"dockerd of {proc.stack} has no container {proc.object_id[:12]}"
        if not why:
            continue
        tree: list[int] = []
        stack = list(kids.get(proc.pid, []))
        while stack:
            child = stack.pop()
            tree.append(child)
            stack.extend(kids.get(child, []))
        orphans.append(Orphan(proc.pid, proc.name, proc.stack, proc.object_id, why, age, tuple(tree)))
    return orphans


def _shim_namespace(pid: int) -> str:
    """The containerd namespace on a shim's command line (-namespace k8s.io for the CRI's)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return ""
    for i, arg in enumerate(cmdline[:-1]):
        if arg in ("-namespace", "--namespace"):
            return cmdline[i + 1]
    return ""


def mounts(mountinfo: str = "/proc/self/mountinfo") -> int:
    with open(mountinfo) as fh:
        return sum(1 for _ in fh)


def veths(net: str = "/sys/class/net") -> int:
    return sum(1 for name in os.listdir(net) if name.startswith("veth"))


# Network namespaces hopbench makes for machines, not pods: lab nodes (hb-lab0-lab1) and the
# tests' SSH nodes (hb-ssh-0). A controller that also runs the embedded node has them beside pods.
OWN_NETNS_PREFIX = "hb-"


def netns(described: Iterable[stacks.Stack]) -> int:
    """Named network namespaces of pods: /run/netns (containerd, CRI-O) and each stack's own netns
    dir under its state directories (dockerd's exec root); hopbench's own machines' are not counted."""
    dirs = {os.path.realpath("/run/netns")}
    for stack in described:
        for state in stack.extra.get("state_dirs", []):
            dirs.add(os.path.realpath(os.path.join(state, "netns")))
    return sum(
        sum(1 for name in os.listdir(d) if not name.startswith(OWN_NETNS_PREFIX)) for d in dirs if os.path.isdir(d)
    )


def ipam_dirs(stack: stacks.Stack) -> list[Path]:
    """host-local's lease folders of the stack's CNI networks: <dataDir>/<network>."""
    conf_dir = Path(stack.extra.get("cni", {}).get("conf_dir", ""))
    found = []
    for conf in sorted(conf_dir.glob("*.conflist")) if conf_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(conf.read_text())
            for plugin in doc.get("plugins", []):
                ipam = plugin.get("ipam") or {}
                if ipam.get("type") == "host-local":
                    found.append(Path(ipam.get("dataDir", "/var/lib/cni/networks")) / doc["name"])
    return found


def lease_files(stack: stacks.Stack) -> list[Path]:
    """The stack's host-local leases: one file per address, named by it, holding the sandbox's id."""
    return [
        p
        for folder in ipam_dirs(stack)
        if folder.is_dir()
        for p in sorted(folder.iterdir())
        if not p.name.startswith(IPAM_OWN_FILES)
    ]


def lease_owner(path: Path) -> str:
    """The sandbox (container) id a lease was given to: the file's first line ('' if unreadable)."""
    try:
        return path.read_text().split(maxsplit=1)[0] if path.stat().st_size else ""
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def leases(described: Iterable[stacks.Stack]) -> int:
    return sum(len(lease_files(stack)) for stack in described)


def pod_cgroups(root: Path = CGROUP_ROOT) -> int:
    """pod<uid> cgroups under kubelet's BestEffort parent, in every hierarchy."""
    rel = kubelet.CGROUP_ROOT.lstrip("/")
    count = 0
    for hierarchy in root.iterdir() if root.is_dir() else []:
        parent = hierarchy / rel
        if parent.is_dir():
            count += sum(1 for p in parent.iterdir() if p.is_dir() and p.name.startswith("pod"))
    return count


def pod_files() -> int:
    """Pod log and state folders (what kubelet prepares per pod, bench.node.kubelet.Pod)."""
    return sum(
        len(os.listdir(d)) for d in (kubelet.DEFAULT_LOG_ROOT, kubelet.DEFAULT_POD_STATE_ROOT) if os.path.isdir(d)
    )


def daemon_fds(described: Iterable[stacks.Stack]) -> dict[str, int]:
    out = {}
    for stack in described:
        for daemon in stack.daemons:
            pid = daemon.pid()
            if pid is not None:
                with contextlib.suppress(OSError):
                    out[f"{stack.name} {daemon.name}"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def tree_bytes(top: str) -> int:
    """Bytes of the files under `top` (lstat sizes, symlinks not followed, other mounts not entered)."""
    total = 0
    if not os.path.isdir(top):
        return 0
    dev = os.lstat(top).st_dev
    for here, dirs, files in os.walk(top):
        keep = []
        for d in dirs:
            with contextlib.suppress(OSError):
                if os.lstat(os.path.join(here, d)).st_dev == dev:
                    keep.append(d)
        dirs[:] = keep
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(here, f)).st_size
    return total


def dangling_links(top: str) -> int:
    """Symlinks under `top` whose target is gone (other mounts not entered). CRI-O's conmon links
    each container's attach socket folder into the attach directory; conmon before 2.1.7 never
    removed the link, so a leaking node gains one per container it ever ran."""
    count = 0
    if not os.path.isdir(top):
        return 0
    dev = os.lstat(top).st_dev
    for here, dirs, files in os.walk(top):
        keep = []
        for name in dirs + files:
            path = os.path.join(here, name)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    count += not os.path.exists(path)
                elif stat.S_ISDIR(st.st_mode) and st.st_dev == dev:
                    keep.append(name)
        dirs[:] = keep  # real folders on this mount: links are counted, never followed
    return count


def stale_links(described: Iterable[stacks.Stack]) -> int:
    """Dangling symlinks under every stack's state directories."""
    return sum(dangling_links(d) for stack in described for d in stack.extra.get("state_dirs", []))


def state_bytes(described: Iterable[stacks.Stack]) -> dict[str, int]:
    return {
        stack.name: sum(tree_bytes(d) for d in stack.extra.get("state_dirs", []))
        for stack in described
        if stack.extra.get("state_dirs")
    }


def take(stacks_dir: str = stacks.DEFAULT_STACKS_DIR) -> dict[str, Any]:
    """The node's inventory now: counts, daemon fds by daemon, state bytes by stack."""
    described = [s for s in stacks.discover(stacks_dir) if not s.unavailable]
    return {
        **processes(),
        "mounts": mounts(),
        "veths": veths(),
        "network namespaces": netns(described),
        "IPAM leases": leases(described),
        "pod cgroups": pod_cgroups(),
        "pod folders": pod_files(),
        "dangling links": stale_links(described),
        "daemon fds": daemon_fds(described),
        "state bytes": state_bytes(described),
    }


COUNTS = (
    "shims",
    "conmon",
    "pod processes",
    "mounts",
    "veths",
    "network namespaces",
    "IPAM leases",
    "pod cgroups",
    "pod folders",
    "dangling links",
)


def grown(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What a node holds after that it did not before: each count that rose, as 'what: a -> b'.
    Daemon fds and state bytes are not here: they move with a daemon's own caches and databases
    (the soak reports their trend instead)."""
    return [f"{key}: {before[key]} -> {after[key]}" for key in COUNTS if after.get(key, 0) > before.get(key, 0)]


def main() -> None:
    print(json.dumps(take(), indent=1))


if __name__ == "__main__":
    main()
