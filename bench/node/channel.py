"""The agent's side of the channel to the controller: events out, orders and pings in.

Events go out as JSON lines through one writer thread (`Emitter`), so no lifecycle or clean-up
ever waits on a slow or dead channel. Orders come in on stdin ("stop"; "ping" from a remote
controller); the heartbeat says the agent lives, the watchdog stops the run when the controller
has gone quiet (a link that died without a FIN, which sshd never notices).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from typing import IO

from bench.messages import Event, Heartbeat


class Emitter:
    """Thread-safe JSON-lines writer of events; remembers when the reader has gone away.

    Events are queued and written by one writer thread, so no caller ever waits on the channel:
    when the link to the controller stalls (a dead SSH link without FIN, a full pipe), the
    lifecycles and the clean-up go on; `cut` then drops what comes (the watchdog's call)."""

    def __init__(self, out: IO[str], max_queued: int = 200_000) -> None:
        self.out = out
        self.queue: queue.Queue[str] = queue.Queue(max_queued)
        self.closed = threading.Event()
        threading.Thread(target=self._write, name="event-writer", daemon=True).start()

    def __call__(self, event: Event) -> None:
        line = event.encode()
        while not self.closed.is_set():
            try:
                self.queue.put(line, timeout=0.5)  # full: the reader is slow; wait, never drop
                return
            except queue.Full:
                continue

    def _write(self) -> None:
        while True:
            line = self.queue.get()
            try:
                if not self.closed.is_set():
                    self.out.write(line + "\n")
                    if self.queue.empty():
                        self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed.set()
            finally:
                self.queue.task_done()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued event is written (or the reader is gone): True when written."""
        end = time.monotonic() + timeout_s
        while self.queue.unfinished_tasks and not self.closed.is_set():
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return not self.closed.is_set()

    def cut(self) -> None:
        """The reader is gone for good: drop every event from now on."""
        self.closed.set()


def watch_stdin(
    stdin: IO[str],
    stop: threading.Event,
    received: list[int],
    stop_on_eof: bool,
    heard: list[float] | None = None,
) -> None:
    """After the job, stdin carries orders: a line "stop" stops the run (how a remote controller
    interrupts), any other line ("ping") only says the controller is there (`heard` keeps the
    time of the last line); with `stop_on_eof` (SSH), the end of stdin stops the run too: the
    connection is gone."""

    def watch() -> None:
        for line in stdin:
            if heard is not None:
                heard[0] = time.monotonic()
            if line.strip() == "stop":
                received.append(signal.SIGTERM)
                stop.set()
                return
        if stop_on_eof:
            received.append(signal.SIGHUP)
            stop.set()

    threading.Thread(target=watch, name="stdin-orders", daemon=True).start()


def watchdog(emit: Emitter, stop: threading.Event, heard: list[float], silent_s: float, lost: list[str]) -> None:
    """Stop the run when the controller has said nothing for `silent_s` (its pings stopped: the
    link died without a FIN, and sshd keeps the session). Output is cut (nobody reads it, and a
    stalled channel must not hold the clean-up); the run then ends as on a signal: lifecycles in
    flight finish, every pod is removed."""

    def watch() -> None:
        while not stop.is_set():
            quiet = time.monotonic() - heard[0]
            if quiet > silent_s:
                lost.append(f"no word from the controller for {quiet:.0f} s (watchdog {silent_s:.0f} s)")
                emit.cut()
                stop.set()
                return
            stop.wait(min(1.0, silent_s / 4))

    threading.Thread(target=watch, name="watchdog", daemon=True).start()


def heartbeat(emit: Emitter, every_s: float) -> None:
    """A line every `every_s` while the agent lives, so a remote controller can tell quiet from gone."""

    def beat() -> None:
        while not emit.closed.is_set():
            time.sleep(every_s)
            emit(Heartbeat())

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
