"""The agent's own load while it drives lifecycles: is the client the bottleneck?

At high concurrency every lifecycle is a Python thread of the agent, and they share one
interpreter lock. Two things are measured per concurrency, around every burst of lifecycles
(bench.node.schedule.burst):

- **start lag**: the workers of a burst wait at a barrier; the last to arrive releases them all at
  once, and each records how long after that release it really ran: the time from a worker
  being ready to it being able to send (interpreter lock, CPU run queue).
- **probe lag**: a thread asks to wake every PROBE_PERIOD_S while the burst runs and records how
  late it woke: the same queueing, sampled through the whole burst rather than at its start.
- **agent CPU**: the process's CPU time (all its threads) over the burst's wall time, in cores.

Figures per concurrency go into the run as artifact client-load/<group>.json; the report's
concurrency section sets them beside the throughput.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

PROBE_PERIOD_S = 0.005
# Lags kept per concurrency (a reservoir would do; a cap keeps memory flat on long runs).
KEEP = 20000


class LagProbe:
    """A thread that sleeps PROBE_PERIOD_S at a time and records how late each wake-up was (ns)."""

    def __init__(self, out: list[int]) -> None:
        self.out, self.stop = out, threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lag-probe", daemon=True)

    def _loop(self) -> None:
        period = int(PROBE_PERIOD_S * 1e9)
        due = time.monotonic_ns() + period
        while not self.stop.wait(max(0.0, (due - time.monotonic_ns()) / 1e9)):
            now = time.monotonic_ns()
            if len(self.out) < KEEP:
                self.out.append(now - due)
            due = max(due + period, now + period // 2)

    def __enter__(self) -> LagProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class StartGate:
    """The workers of one burst wait here until all have arrived; the last releases them and each
    records how long after that release it ran (ns). A worker that waits past the timeout goes on
    unmeasured."""

    def __init__(self, width: int, timeout_s: float) -> None:
        self.lags: list[int] = []
        self.released_ns = 0
        self.timeout_s = timeout_s
        self.barrier = threading.Barrier(width, action=self._release)

    def _release(self) -> None:
        self.released_ns = time.monotonic_ns()

    def wait(self) -> None:
        try:
            self.barrier.wait(timeout=self.timeout_s)
        except threading.BrokenBarrierError:
            return
        self.lags.append(time.monotonic_ns() - self.released_ns)


class ClientLoad:
    """Per concurrency: bursts, lifecycles, wall and CPU time, start lags and probe lags."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_c: dict[int, dict[str, Any]] = {}

    def _slot(self, concurrency: int) -> dict[str, Any]:
        return self.by_c.setdefault(
            concurrency,
            {"bursts": 0, "lifecycles": 0, "wall_ns": 0, "cpu_ns": 0, "start_lag_ns": [], "probe_lag_ns": []},
        )

    @contextlib.contextmanager
    def burst(self, concurrency: int, lifecycles: int, timeout_s: float) -> Iterator[StartGate]:
        """Around one burst: yields the gate its min(concurrency, lifecycles) workers start through."""
        gate = StartGate(min(concurrency, lifecycles), timeout_s)
        starts = gate.lags
        lags: list[int] = []
        w0, c0 = time.monotonic_ns(), time.process_time_ns()
        try:
            with LagProbe(lags) if concurrency > 1 or lifecycles > 1 else contextlib.nullcontext():
                yield gate
        finally:
            wall, cpu = time.monotonic_ns() - w0, time.process_time_ns() - c0
            with self.lock:
                slot = self._slot(concurrency)
                slot["bursts"] += 1
                slot["lifecycles"] += lifecycles
                slot["wall_ns"] += wall
                slot["cpu_ns"] += cpu
                for key, new in (("start_lag_ns", starts), ("probe_lag_ns", lags)):
                    slot[key].extend(new[: max(0, KEEP - len(slot[key]))])

    def report(self) -> dict[str, Any]:
        """{concurrency: {bursts, lifecycles, wall_s, agent_cores, start_lag_ms: {p50, p99, max}, probe_lag_ms: ...}}"""
        out: dict[str, Any] = {}
        with self.lock:
            for c, slot in sorted(self.by_c.items()):
                out[str(c)] = {
                    "bursts": slot["bursts"],
                    "lifecycles": slot["lifecycles"],
                    "wall_s": slot["wall_ns"] / 1e9,
                    "agent_cores": slot["cpu_ns"] / slot["wall_ns"] if slot["wall_ns"] else None,
                    "start_lag_ms": _percentiles(slot["start_lag_ns"]),
                    "probe_lag_ms": _percentiles(slot["probe_lag_ns"]),
                }
        return out


def _percentiles(values_ns: list[int]) -> dict[str, float | int | None]:
    if not values_ns:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    v = sorted(values_ns)

    def at(q: float) -> float:
        return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))] / 1e6

    return {"n": len(v), "p50": at(0.5), "p99": at(0.99), "max": v[-1] / 1e6}
