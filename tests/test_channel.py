"""The agent's channel: events never make a lifecycle wait on a stalled reader, and the watchdog
stops the run when the controller's pings stop (the silent-link test runs it over real SSH)."""

from __future__ import annotations

import io
import os
import threading
import time

from bench.messages import Error, decode_event
from bench.node.channel import Emitter, watch_stdin, watchdog


def test_events_queue_while_the_reader_stalls_and_all_arrive_once_it_reads():
    r, w = os.pipe()
    out = os.fdopen(w, "w")
    emit = Emitter(out)
    line = Error(message="x" * 1000)
    started = time.monotonic()
    for _ in range(500):  # 500 KB: the pipe (64 KiB) fills and the writer thread blocks on it
        emit(line)
    assert time.monotonic() - started < 2.0  # the callers never waited on the pipe
    assert not emit.drain(0.3)  # still queued: nobody reads
    got = []

    def read() -> None:
        with os.fdopen(r) as fh:
            got.extend(fh.readlines())

    reader = threading.Thread(target=read)
    reader.start()
    assert emit.drain(10)
    out.close()
    reader.join(10)
    assert len(got) == 500 and all(decode_event(x) == line for x in got)


def test_a_reader_gone_closes_the_emitter_and_later_events_are_dropped():
    r, w = os.pipe()
    os.close(r)
    emit = Emitter(os.fdopen(w, "w"))
    emit(Error(message="first"))
    assert emit.closed.wait(5)  # EPIPE on the first write
    emit(Error(message="after"))  # returns at once
    assert not emit.drain(1)


def test_watchdog_stops_the_run_when_pings_stop():
    r, w = os.pipe()
    stop, received, heard, lost = threading.Event(), [], [time.monotonic()], []
    emit = Emitter(io.StringIO())
    stdin = os.fdopen(r)
    watch_stdin(stdin, stop, received, True, heard)
    watchdog(emit, stop, heard, 1.5, lost)
    for _ in range(6):  # pings every 0.5 s keep it quiet for 3 s, twice the watchdog
        os.write(w, b"ping\n")
        assert not stop.wait(0.5)
    assert not lost and not emit.closed.is_set()
    started = time.monotonic()
    assert stop.wait(5)  # silence (the link is dead, stdin never ends): stopped by itself
    assert 1.0 < time.monotonic() - started < 3.5
    assert lost and "no word from the controller" in lost[0]
    assert emit.closed.is_set() and not received  # not a signal, not an order: the watchdog
    os.close(w)
    _wait_for(received)
    stdin.close()


def _wait_for(received: list[int]) -> None:
    """Until the stdin thread has seen the end of its pipe (and so let go of the file)."""
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)


def test_stop_order_and_end_of_stdin():
    r, w = os.pipe()
    stop, received = threading.Event(), []
    with os.fdopen(r) as stdin:
        watch_stdin(stdin, stop, received, False)
        os.write(w, b"ping\nstop\n")
        assert stop.wait(5) and received == [15]
        os.close(w)
    r, w = os.pipe()
    stop, received = threading.Event(), []
    with os.fdopen(r) as stdin:
        watch_stdin(stdin, stop, received, True)
        os.close(w)
        assert stop.wait(5) and received == [1]
