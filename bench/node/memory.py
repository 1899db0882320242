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

Each process sample has RSS, PSS and USS (psutil.memory_full_info, which reads smaps_rollup;
PSS is None with the reason where it cannot be read) and CPU time (user + system).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from bench import stacks

POD_CGROUP = re.compile(r"/kubepods(?:/[a-z-]+)?/pod([0-9a-fA-F-]{36})(?:/([^/\s]+))?")
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
CGROUP_ID_PREFIXES = ("crio-", "cri-containerd-", "docker-")


def pod_of_cgroup(text: str) -> tuple[str, str]:
    """(pod uid, container id) from the text of /proc/PID/cgroup; ('', '') outside any pod."""
    for line in text.splitlines():
        m = POD_CGROUP.search(line)
        if m:
            cid = (m.group(2) or "").removesuffix(".scope")
            for prefix in CGROUP_ID_PREFIXES:
                cid = cid.removeprefix(prefix)
            return m.group(1), cid
    return "", ""


def shim_info(name: str, cmdline: list[str]) -> tuple[str, str]:
    """(address or runtime root, object id) of a monitor process from its command line."""
    if name.startswith("containerd-shim"):
        return _flag(cmdline, "-address", "--address"), _flag(cmdline, "-id", "--id")
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
        found = self.daemons()
        daemon_pids = {p.pid for p in found}
        shims: list[tuple[int, str, str, str]] = []
        pod_procs: list[tuple[int, str, str, str]] = []
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            pid = proc.info["pid"]
            if pid in daemon_pids or pid == os.getpid():
                continue
            name = proc.info["name"] or ""
            cmdline = proc.info["cmdline"] or []
            if name.startswith(SHIM_NAMES):
                where, oid = shim_info(name, cmdline)
                shims.append((pid, name, where, oid))
                continue
            try:
                with open(f"/proc/{pid}/cgroup") as fh:
                    uid, cid = pod_of_cgroup(fh.read())
            except OSError:
                continue
            if uid:
                pod_procs.append((pid, name, uid, cid))
        container_pod = {cid: uid for _, _, uid, cid in pod_procs if cid}
        names = {s.name for s in self.stacks}
        for pid, name, where, oid in shims:
            stack = self.address_stack.get(where, "")
            if stack in names:  # a shim of another containerd (or of none left) is not ours to count
                found.append(Proc(pid, "shim", stack, name, container_pod.get(oid, ""), oid))
        # A pod's stack is its shim's stack (pod processes themselves do not say).
        pod_stack = {p.pod: p.stack for p in found if p.role == "shim" and p.pod}
        for pid, name, uid, cid in pod_procs:
            role = "pause" if name == "pause" else "workload"
            found.append(Proc(pid, role, pod_stack.get(uid, ""), name, uid, cid))
        return found


def measure(p: Proc) -> dict[str, Any] | None:
    """One process's memory and CPU; None when it has gone."""
    try:
        ps = psutil.Process(p.pid)
        if ps.status() == psutil.STATUS_ZOMBIE:  # exited, not reaped (no reaping init here): holds nothing
            return None
        cpu = ps.cpu_times()
        pss_note = ""
        try:
            full = ps.memory_full_info()
            rss, pss, uss = full.rss, getattr(full, "pss", None), full.uss
            if pss is None:
                pss_note = "psutil gives no PSS on this platform"
        except psutil.AccessDenied:
            rss, pss, uss = ps.memory_info().rss, None, None
            pss_note = "smaps not readable (AccessDenied)"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
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
        "cpu_s": cpu.user + cpu.system,
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
        for p in self.classifier.classify():
            m = measure(p)
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
