"""The memory sampler: what each stack's processes hold, by role and by pod (runs in the node agent).

Roles:
  daemon    the stack's daemons, from their pid files (containerd; dockerd, cri-dockerd and
            dockerd's own containerd; crio)
  shim      per-pod or per-container monitors: containerd-shim-* (its -address names the
            containerd, hence the stack; its -id the sandbox or container), conmon (crio),
            runsc's sandbox and gofer
  pause     the pod's infra process
  workload  the pod's container processes

A pod process belongs to the pod whose cgroup it is in: kubelet's cgroup parent
/kubepods/besteffort/pod<uid> is in every pod request (bench.node.kubelet), and the runtime puts
each container in <parent>/<container id>. A shim belongs to the pod whose cgroups hold the
container its -id names (containerd keys one shim per sandbox, dockerd one per container).
Nothing is guessed from process order.

Each process sample has RSS, PSS and USS (one read of /proc/PID/smaps_rollup: Rss, Pss and
Private_*; PSS is None with the reason where it cannot be read) and CPU time (user + system,
from /proc/PID/stat).

The sampler stays out of the way at lab scale (300+ processes at 1 Hz): a process is classified
once, when first seen (its name, command line and cgroup), and remembered by pid with its start
time (a measured process whose start time changed is classified again); a process found to be
none of the stacks' is looked at again only while younger than SETTLE_S (runc moves a
container's first process into its cgroup and execs it after it appears). A sweep then reads,
per process of the stacks, /proc/PID/stat (CPU time, and the name: pause or workload changes
at exec) and smaps_rollup; other processes cost only their entry in /proc.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench import stacks

# A pod's cgroup under either driver: /kubepods/besteffort/pod<uid>/<id> (cgroupfs), or
# .../kubepods-besteffort-pod<uid with _ for ->.slice/<prefix>-<id>.scope (systemd).
POD_CGROUP = re.compile(
    r"/kubepods(?:/[a-z-]+)?/pod([0-9a-fA-F-]{36})(?:/([^/\s]+))?"
    r"|/kubepods[a-z-]*-pod([0-9a-fA-F_]{36})\.slice(?:/([^/\s]+))?"
)
SHIM_NAMES = ("containerd-shim", "conmon", "runsc-sandbox", "runsc-gofer")


@dataclass(frozen=True)
class Proc:
    pid: int
    role: str  # daemon, shim, pause, workload
    stack: str
    name: str
    pod: str = ""  # pod uid
    object_id: str = ""  # container or sandbox id the process serves


def _flag(cmdline: list[str], *names: str) -> str:
    for i, arg in enumerate(cmdline):
        for name in names:
            if arg == name and i + 1 < len(cmdline):
                return cmdline[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return ""


# What runtimes put before a container id in its cgroup's name (CRI-O with cgroupfs: crio-<id>;
# with the systemd driver: crio-<id>.scope, cri-containerd-<id>.scope, docker-<id>.scope).
CGROUP_ID_PREFIXES = ("crio-conmon-", "crio-", "cri-containerd-", "docker-")


def pod_of_cgroup(text: str) -> tuple[str, str]:
    """(pod uid, container id) from the text of /proc/PID/cgroup; ('', '') outside any pod."""
    for line in text.splitlines():
        m = POD_CGROUP.search(line)
        if m:
            uid = m.group(1) or m.group(3).replace("_", "-")
            cid = (m.group(2) or m.group(4) or "").removesuffix(".scope")
            for prefix in CGROUP_ID_PREFIXES:
                cid = cid.removeprefix(prefix)
            return uid, cid
    return "", ""


def shim_info(name: str, cmdline: list[str], cwd: str = "") -> tuple[str, str]:
    """(address or runtime root, object id) of a monitor process from its command line. A
    containerd shim CRI-O started (its runsc handler) names no containerd (`-address ""`): it is
    known by its folder, its container's bundle in CRI-O's state ("cwd:<folder>")."""
    if name.startswith("containerd-shim"):
        address = _flag(cmdline, "-address", "--address")
        return address or ("cwd:" + cwd if cwd else ""), _flag(cmdline, "-id", "--id")
    if name == "conmon":
        # CRI-O gives each conmon its exit directory: that says which CRI-O instance owns it.
        return "conmon:" + _flag(cmdline, "--exit-dir"), _flag(cmdline, "-c", "--cid")
    # runsc: the id is the last argument of `runsc ... boot|gofer ... ID`
    return "runsc", cmdline[-1] if cmdline else ""


class Classifier:
    """Finds the processes of the given stacks and says what each is."""

    def __init__(self, found: Iterable[stacks.Stack]) -> None:
        self.stacks = [s for s in found if not s.unavailable]
        # containerd sockets → stack, for shims.
        self.address_stack: dict[str, str] = {}
        for s in self.stacks:
            for endpoint in (s.cri_endpoint, (s.extra.get("containerd_level") or {}).get("endpoint", "")):
                if endpoint.startswith("unix://"):
                    self.address_stack[endpoint[len("unix://") :]] = s.name
            if s.extra.get("conmon_exit_dir"):
                self.address_stack["conmon:" + str(s.extra["conmon_exit_dir"])] = s.name
        # state folders → stack, for shims known by their folder (CRI-O's runsc shims).
        self.state_dirs = [
            (str(d).rstrip("/") + "/", s.name) for s in self.stacks for d in s.extra.get("state_dirs") or []
        ]
        self.seen: dict[int, Known] = {}

    def stack_of(self, where: str) -> str:
        """The stack a shim's address, conmon's exit folder or shim's folder belongs to ('' if none)."""
        if where.startswith("cwd:"):
            folder = where[len("cwd:") :]
            return next((name for top, name in self.state_dirs if folder.startswith(top)), "")
        return self.address_stack.get(where, "")

    def daemons(self) -> list[Proc]:
        out = []
        for s in self.stacks:
            found = list(s.daemons)
            child = s.extra.get("containerd_level") or {}
            if child.get("pidfile") and child.get("exec"):  # dockerd's own containerd
                found.append(stacks.Daemon("containerd", str(child["exec"]), str(child["pidfile"])))
            for d in found:
                pid = d.pid()
                if pid is not None:
                    out.append(Proc(pid, "daemon", s.name, d.name))
        return out

    def classify(self) -> list[Proc]:
        """Every process of the stacks now: daemons from their pid files, the rest from /proc."""
        found = self.daemons()
        daemon_pids = {p.pid for p in found}
        self._scan(daemon_pids)
        shims = [(pid, k) for pid, k in self.seen.items() if k.kind == "shim"]
        pod_procs = [(pid, k) for pid, k in self.seen.items() if k.kind == "pod"]
        container_pod = {k.cid: k.uid for _, k in pod_procs if k.cid}
        names = {s.name for s in self.stacks}
        for pid, k in shims:
            stack = self.stack_of(k.where)
            if stack in names:  # a shim of another containerd (or of none left) is not ours to count
                found.append(Proc(pid, "shim", stack, k.name, container_pod.get(k.cid, ""), k.cid))
        # A pod's stack is its shim's stack (pod processes themselves do not say).
        pod_stack = {p.pod: p.stack for p in found if p.role == "shim" and p.pod}
        for pid, k in pod_procs:
            # pause or workload: the name changes at exec, so measure() reads it again at each sweep
            found.append(Proc(pid, pod_role(k.name), pod_stack.get(k.uid, ""), k.name, k.uid, k.cid))
        return found

    def _scan(self, skip: set[int]) -> None:
        """Bring `seen` up to date: new processes classified, gone pids dropped.

        A pid seen at the last sweep is the same process now: pids are handed out in turn up to
        pid_max, so one comes back only after every other has been used (tens of thousands of
        process starts within one interval). measure() checks the start time of ours anyway."""
        now_ticks = _uptime_ticks()
        pids = {int(d) for d in os.listdir("/proc") if d.isdigit()} - skip - {os.getpid()}
        for pid in list(self.seen):
            if pid not in pids:
                del self.seen[pid]
        for pid in pids:
            known = self.seen.get(pid)
            if known is not None and (known.kind or known.settled):
                continue  # ours for good, or settled as not ours
            stat = _stat(pid)
            if stat is None:
                self.seen.pop(pid, None)
                continue
            self.seen[pid] = self._classify_one(pid, stat, now_ticks)

    def forget(self, pid: int) -> None:
        """A pid whose start time changed (measure found another process): classify it again."""
        self.seen.pop(pid, None)

    def _classify_one(self, pid: int, stat: Stat, now_ticks: int) -> Known:
        settled = now_ticks - stat.start > SETTLE_S * CLK_TCK
        name = full_name(pid, stat.name)
        if name.startswith(SHIM_NAMES):
            if not in_own_pid_namespace(pid):
                return Known(stat.start, True, "", name)  # a nested node's (lab node, kind): not ours
            raw = _read(f"/proc/{pid}/cmdline")
            cmdline = raw.removesuffix("\0").split("\0") if raw else []  # empty values kept: -address ""
            where, oid = shim_info(name, cmdline, _cwd(pid))
            return Known(stat.start, settled, "shim", name, where=where, cid=oid)
        uid, cid = pod_of_cgroup(_read(f"/proc/{pid}/cgroup"))
        return Known(stat.start, settled, "pod" if uid else "", name, uid=uid, cid=cid)


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


# A process found to be none of the stacks' is classified again at every sweep while younger than
# this (a container's first process appears in its runtime's cgroup and under the runtime's name
# before it moves and execs).
SETTLE_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Known:
    """What one process (pid, start time) was found to be: shim, pod process, or neither ('')."""

    start: int
    settled: bool
    kind: str
    name: str
    where: str = ""
    uid: str = ""
    cid: str = ""


@dataclass(frozen=True)
class Stat:
    name: str  # comm
    state: str
    cpu_s: float
    start: int  # clock ticks after boot


def _read(path: str) -> str:
    """A small /proc file in one read (os.open/os.read: a third of the cost of a Python file object)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _stat(pid: int) -> Stat | None:
    """State, CPU seconds and start time from /proc/PID/stat (None when the process is gone)."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    close = text.rfind(")")  # "pid (comm) state ...": the comm may hold spaces and parentheses
    fields = text[close + 2 :].split()
    # fields[0] is field 3 (state); utime, stime are fields 14, 15; starttime field 22
    return Stat(
        text[text.find("(") + 1 : close], fields[0], (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[19])
    )


def pod_role(name: str) -> str:
    """A pod process is the pod's infra (pause) or its workload."""
    return "pause" if name == "pause" else "workload"


# The kernel keeps a process's name (comm) to its first 15 bytes.
COMM_LEN = 15


def pid_depth(status: str) -> int:
    """How many PID namespaces deep a process is, seen from ours: the entries of NSpid."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 1
    return 1


OWN_PID_DEPTH = pid_depth(_read("/proc/self/status"))


def in_own_pid_namespace(pid: int) -> bool:
    """Whether a process lives in the agent's own PID namespace. A node's shims and conmons do; a
    nested node's (a lab node or a kind node on this machine, with the same daemons at the same
    socket paths inside it) live one namespace down, and must be neither counted nor swept."""
    return pid_depth(_read(f"/proc/{pid}/status")) == OWN_PID_DEPTH


def full_name(pid: int, comm: str) -> str:
    """The process's name, whole: comm, or where comm was cut short, its program's file name
    (from the command line, when that starts the same), as ps and psutil give it."""
    if len(comm) < COMM_LEN:
        return comm
    argv0 = _read(f"/proc/{pid}/cmdline").split("\0", 1)[0]
    base = os.path.basename(argv0)
    return base if base.startswith(comm) else comm


def _uptime_ticks() -> int:
    return int(float(_read("/proc/uptime").split()[0]) * CLK_TCK)


def smaps_rollup(pid: int) -> tuple[int, int, int] | None:
    """(rss, pss, uss) in bytes from one read of /proc/PID/smaps_rollup; None when unreadable."""
    text = _read(f"/proc/{pid}/smaps_rollup")
    if not text:
        return None
    rss = pss = uss = 0
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key == "Rss":
            rss = int(rest.split()[0]) * 1024
        elif key == "Pss":
            pss = int(rest.split()[0]) * 1024
        elif key in ("Private_Clean", "Private_Dirty"):
            uss += int(rest.split()[0]) * 1024
    return rss, pss, uss


def measure(p: Proc, start: int | None = None) -> dict[str, Any] | None:
    """One process's memory and CPU; None when it has gone (or is a zombie: exited, holds nothing),
    or when its start time is not `start` (the pid is another process's now)."""
    stat = _stat(p.pid)
    if stat is None or stat.state == "Z" or (start is not None and stat.start != start):
        return None
    if p.role in ("pause", "workload"):  # the name is the one after exec, as the role
        name = p.name if p.name.startswith(stat.name) else full_name(p.pid, stat.name)
        p = Proc(p.pid, pod_role(name), p.stack, name, p.pod, p.object_id)
    pss_note = ""
    mem = smaps_rollup(p.pid)
    if mem is not None:
        rss, pss, uss = mem
    else:  # smaps_rollup can fail for a live process: RSS from statm, PSS said missing
        statm = _read(f"/proc/{p.pid}/statm").split()
        if not statm:
            return None
        rss, pss, uss = int(statm[1]) * PAGE, None, None
        pss_note = "smaps_rollup not readable"
    return {
        "pid": p.pid,
        "role": p.role,
        "stack": p.stack,
        "name": p.name,
        "pod": p.pod,
        "object_id": p.object_id,
        "rss": rss,
        "pss": pss,
        "uss": uss,
        "pss_note": pss_note,
        "cpu_s": stat.cpu_s,
    }


class Sampler:
    """Samples every interval on its own thread; `emit(rows)` gets one sweep at a time.

    Its own cost is kept: wall and CPU time of each sweep (the thread's CPU clock) and the
    intervals it really kept; stats() gives them for the run's metadata.
    """

    def __init__(self, classifier: Classifier, interval_s: float, emit: Callable[[list[dict[str, Any]]], None]) -> None:
        self.classifier, self.interval, self.emit = classifier, interval_s, emit
        self.labels: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.sweeps = 0
        self.wall_ns = 0
        self.cpu_ns = 0
        self.starts: list[int] = []

    def set_labels(self, **labels: Any) -> None:
        """Fields every later row carries (target, step, pods running)."""
        with self.lock:
            self.labels = dict(labels)

    def sweep(self) -> list[dict[str, Any]]:
        t0, c0 = time.monotonic_ns(), time.thread_time_ns()
        with self.lock:
            labels = dict(self.labels)
        rows = []
        seen = self.classifier.seen
        for p in self.classifier.classify():
            known = seen.get(p.pid)
            m = measure(p, known.start if known is not None else None)
            if m is None and known is not None:
                self.classifier.forget(p.pid)
            if m is not None:
                rows.append({**labels, "t_ns": t0, "sweep": self.sweeps, **m})
        self.wall_ns += time.monotonic_ns() - t0
        self.cpu_ns += time.thread_time_ns() - c0
        self.starts.append(t0)
        self.sweeps += 1
        return rows

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            self.emit(self.sweep())
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind: start again from now, the interval shows it
                next_at, delay = time.monotonic(), 0
            self.stop_event.wait(delay)

    def start(self) -> None:
        self.stop_event.clear()
        self.thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def stats(self) -> dict[str, Any]:
        gaps = [(b - a) / 1e6 for a, b in zip(self.starts, self.starts[1:], strict=False)]
        span_ns = (self.starts[-1] - self.starts[0]) if len(self.starts) > 1 else 0
        gaps_sorted = sorted(gaps)
        return {
            "interval_s": self.interval,
            "sweeps": self.sweeps,
            "sweep_wall_ms_mean": self.wall_ns / 1e6 / self.sweeps if self.sweeps else None,
            "sweep_cpu_ms_mean": self.cpu_ns / 1e6 / self.sweeps if self.sweeps else None,
            "cpu_share_of_one_core": self.cpu_ns / span_ns if span_ns else None,
            "interval_kept_ms_p50": gaps_sorted[len(gaps) // 2] if gaps else None,
            "interval_kept_ms_max": gaps_sorted[-1] if gaps else None,
        }
