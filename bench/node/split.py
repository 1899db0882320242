"""The in-situ split: where one CRI op's time goes, read from the runtime's own calls.

Every stack runs the OCI runtime and the CNI plugins through hopbench's wrapper
(ansible/roles/ociwrapper/files/hopbench-oci.c). While the trace file exists, each wrapped
call appends one line: kind (oci or cni), when the wrapper started, when it started the
real program, when that program was reaped (CLOCK_MONOTONIC, the clock the agent times
CRI calls with), the exit status and the arguments (for CNI: CNI_COMMAND and
CNI_CONTAINERID).

A call belongs to a CRI op when it names one of the lifecycle's objects (sandbox or
container id; CNI calls name the sandbox) and its interval overlaps the op's interval.
The op's duration is then cut, without gaps or overlaps, into

  before   from the op's start to the first call: the CRI server (and for docker the
           engine and containerd) before the runtime is reached
  network  inside CNI calls (the pod network set-up of RunPodSandbox, teardown of StopPodSandbox)
  runtime  inside OCI runtime calls (from the wrapper's start to the runtime's exit)
  between  between calls: shim, daemon and kernel work between two runtime calls
  after    from the last call's end to the op's return

so the parts of one sample add up to that sample exactly. Whether the medians of the parts
add up to the median op is a separate question (report.py checks it and prints the gap).
Standard library only: this runs in the node agent.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass

from bench.errors import InputError
from bench.ops import PARTS

# runc/crun global flags that take a value (the command is the first other argument), and
# command flags that take one (the object id is the first positional after the command).
_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless", "--cgroup-manager"}
_COMMAND_WITH_VALUE = {
    "--bundle",
    "-b",
    "--console-socket",
    "--pid-file",
    "--preserve-fds",
    "--process",
    "-p",
    "--cwd",
    "--env",
    "-e",
    "--user",
    "-u",
    "--image-path",
    "--work-path",
}


@dataclass(frozen=True)
class Call:
    kind: str  # "oci" or "cni"
    entry_ns: int
    fork_ns: int
    exit_ns: int
    status: int
    command: str
    object_id: str

    @property
    def duration_ns(self) -> int:
        return self.exit_ns - self.entry_ns


class TraceFormatError(InputError):
    pass


def oci_command(args: list[str]) -> tuple[str, str]:
    """(command, object id) of a runc-style argument list; '' where there is none."""
    i, command = 0, ""
    while i < len(args):
        a = args[i]
        if not a.startswith("-"):
            command = a
            break
        i += 2 if a in _GLOBAL_WITH_VALUE else 1
    if not command:
        return "", ""
    i += 1
    while i < len(args):
        a = args[i]
        if not a.startswith("-"):
            return command, a
        i += 2 if a in _COMMAND_WITH_VALUE else 1
    return command, ""


def parse_line(line: str) -> Call:
    fields = line.rstrip("\n").split("\t")
    if len(fields) < 5 or fields[0] not in ("oci", "cni"):
        raise TraceFormatError(f"not a trace line: {line[:120]!r}")
    try:
        entry, fork, exit_, status = (int(f) for f in fields[1:5])
    except ValueError:
        raise TraceFormatError(f"trace line with a non-integer time or status: {line[:120]!r}") from None
    rest = fields[5:]
    if fields[0] == "cni":
        command, object_id = (rest + ["", ""])[:2]
    else:
        command, object_id = oci_command(rest)
    return Call(fields[0], entry, fork, exit_, status, command, object_id)


@dataclass(frozen=True)
class OpWindow:
    op: str
    start_ns: int
    end_ns: int


def attribute(ops: list[OpWindow], calls: list[Call]) -> dict[int, list[Call]]:
    """Calls of one lifecycle by the index of the op they overlap most; calls outside every op are left out."""
    out: dict[int, list[Call]] = {}
    for call in calls:
        best, best_overlap = -1, 0
        for i, w in enumerate(ops):
            overlap = min(w.end_ns, call.exit_ns) - max(w.start_ns, call.entry_ns)
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        if best >= 0:
            out.setdefault(best, []).append(call)
    return out


def parts(window: OpWindow, calls: list[Call]) -> dict[str, int]:
    """The op's duration cut into PARTS (ns); the values always sum to the op's duration."""
    result = dict.fromkeys(PARTS, 0)
    total = window.end_ns - window.start_ns
    spans = sorted(
        (max(c.entry_ns, window.start_ns), min(c.exit_ns, window.end_ns), c.kind)
        for c in calls
        if c.exit_ns > window.start_ns and c.entry_ns < window.end_ns
    )
    if not spans:
        result["before"] = total
        return result
    cursor = window.start_ns
    first = True
    for start, end, kind in spans:
        if start > cursor:
            result["before" if first else "between"] += start - cursor
            cursor = start
        if end > cursor:  # the part not already covered by an earlier (enclosing) call
            result["network" if kind == "cni" else "runtime"] += end - cursor
            cursor = end
        first = False
    result["after"] = window.end_ns - cursor
    return result


class TraceReader:
    """Follows the trace file while the agent records; hands each lifecycle its own calls.

    arm() creates the file (the wrappers start tracing), disarm() removes it. Lines for
    objects nobody asks for (a daemon's own calls) are dropped after `keep_s`.
    """

    def __init__(self, path: str, keep_s: float = 120.0) -> None:
        self.path = path
        self.keep_ns = int(keep_s * 1e9)
        self.lock = threading.Lock()
        self.offset = 0
        self.partial = ""
        self.by_id: dict[str, list[Call]] = {}
        self.bad_lines = 0

    def arm(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        with open(self.path, "w"):
            pass
        self.offset, self.partial = 0, ""

    def disarm(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _read(self) -> None:
        try:
            with open(self.path) as fh:
                fh.seek(self.offset)
                data = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return
        lines = (self.partial + data).split("\n")
        self.partial = lines.pop()
        now = time.monotonic_ns()
        for line in lines:
            if not line:
                continue
            try:
                call = parse_line(line)
            except TraceFormatError:
                self.bad_lines += 1
                continue
            self.by_id.setdefault(call.object_id, []).append(call)
        for key in [k for k, v in self.by_id.items() if v and now - v[-1].exit_ns > self.keep_ns]:
            del self.by_id[key]

    def take(self, ids: set[str]) -> list[Call]:
        """The calls naming any of `ids` read so far, removed from the reader."""
        with self.lock:
            self._read()
            calls = [c for i in ids if i for c in self.by_id.pop(i, [])]
        return sorted(calls, key=lambda c: c.entry_ns)
