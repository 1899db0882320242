"""The node agent's side of the wire: one job in, one JSON line per event out.

Started by a transport (a child process for the local node, over SSH for lab nodes) as
`python -m bench.node`; reads one `Job` on stdin, writes `bench.messages` events on stdout:
hello, meta, targets, plan, sample, check, lifecycle, warning, error, done. After the job,
stdin carries orders ("stop"); a heartbeat tells a remote controller quiet from gone; one
agent runs on a node at a time (a lock under /run/hopbench). Timing happens on the node's
monotonic clock; the channel back never sits inside a timed interval.

The agent owns clean-up: every pod it creates carries the run's label; on SIGTERM, SIGINT,
a closed stdout (the controller went away) or any error it stops creating pods, removes the
ones it made and sweeps any left with its run label (bench.node.schedule, the levels).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from bench import __version__, messages, stacks
from bench.errors import ComponentError
from bench.messages import Done, Error, Hello, Job, Meta, MetaEnd, Warning
from bench.node import doctor, kubelet, nodeinfo, schedule, targets, traces
from bench.node.channel import Emitter, heartbeat, watch_stdin, watchdog
from bench.node.cri import CriClient
from bench.node.levels import Context
from bench.node.levels.critest import probe_overhead


@contextmanager
def node_lock(path: str, run_id: str = "") -> Iterator[None]:
    """One agent per node: an exclusive lock on `path`, which then holds this agent's PID and run id.

    A second agent is refused with the first one's run id and PID. The file is opened without
    truncating it, so the refused agent cannot wipe what the holder wrote."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read(200).split()
            who = f"run {holder[1]}, agent PID {holder[0]}" if len(holder) >= 2 else "holder unknown"
            raise ComponentError(f"another hopbench agent runs on this node ({who}; lock {path})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} {run_id}\n")
        fh.flush()
        yield


def serve(job: Job, emit: Emitter, stop: threading.Event, received: list[int]) -> None:
    """Run one job: list the node's targets, then (mode run) every level the scenario asks for."""
    if job.mode == "check":
        targets.check_left(job, emit)
        return
    if job.mode == "doctor":  # facts only: no lock, nothing started (bench.node.doctor)
        emit(Meta(node=doctor.facts(job.stacks_dir)))
        return
    with node_lock(job.lock_path, job.run_id):
        emit(Meta(node=nodeinfo.collect()))
        found = stacks.discover(job.stacks_dir)
        available = targets.resolve(job, found, emit)
        if job.mode == "targets":
            return
        with tempfile.TemporaryDirectory(prefix="hopbench-levels-") as work, contextlib.ExitStack() as tracing:
            ctx = Context(job, emit, stop, Path(work), found, available)
            if job.scen.tracing:
                ctx.tracer = tracing.enter_context(
                    traces.tracing(
                        job, available, emit, lambda stack, tracer: CriClient(stack.cri_endpoint, 10, tracer)
                    )
                )
            units = schedule.plan(ctx)
            if units and not ctx.stopped:
                probe_overhead(ctx)
            schedule.run(units, ctx, before_target=targets.sweep_pods)
        if received:
            name = signal.Signals(received[0]).name
            emit(Warning(message=f"agent got {name}: stopped early and cleaned up"))
        emit(MetaEnd(clock=nodeinfo.clock(rounds=0), loadavg=tuple(nodeinfo.load())))


def main(stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    emit = Emitter(stdout)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only flag here: emitting from a handler could wait on the lock the interrupted code holds.
        received.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    emit(Hello(agent_version=__version__, pid=os.getpid()))
    lost: list[str] = []
    try:
        job = messages.Job.decode(stdin.readline())
        kubelet.set_node(job.node)
        heard = [time.monotonic()]
        watch_stdin(stdin, stop, received, job.stop_on_eof, heard)
        if job.watchdog_s:
            watchdog(emit, stop, heard, job.watchdog_s, lost)
        if job.heartbeat_s:
            heartbeat(emit, job.heartbeat_s)
        serve(job, emit, stop, received)
    except Exception as exc:  # noqa: BLE001 - reported to the controller, then a non-zero exit
        emit(Error(message=f"{type(exc).__name__}: {exc}"))
        emit(Done(ok=False, interrupted=stop.is_set()))
        return _end(emit, 1, lost)
    emit(Done(ok=not stop.is_set(), interrupted=stop.is_set()))
    return _end(emit, 0 if not stop.is_set() else 130, lost)


def _end(emit: Emitter, rc: int, lost: list[str]) -> int:
    """Write what is queued, then exit. With the controller lost the channel may never take
    another byte: say why on stderr (if it takes it) and
    leave without waiting on stdout (the interpreter's own flush at exit would block on it)."""
    if lost:
        with contextlib.suppress(OSError):
            os.set_blocking(2, False)  # a full stderr pipe must not hold the exit either
            os.write(2, f"hopbench agent {os.getpid()}: {lost[0]}: stopped and cleaned up\n".encode())
        os._exit(rc)
    emit.drain()
    return rc
