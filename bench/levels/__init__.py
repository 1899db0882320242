"""Level drivers: each enters the runtime path at one level and times lifecycle ops there.

A driver call returns its result together with the elapsed time and the error, so the
timing sits right beside the call (bucketbench's shape). An op a level cannot do raises
UnsupportedOp; a failed call is a failed sample with its error, never a zero duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


# What the workload image's program prints once running and on SIGTERM: every level checks them.
READY_MARK = "hopbench-workload ready"
STOP_MARK = "hopbench-workload stopping"


class UnsupportedOp(NotImplementedError):
    pass


class StopLifecycle(Exception):
    """Raised by a level driver's op helper when an op failed: the lifecycle ends there."""


def wait_for(condition: Callable[[], object], what: str, deadline_s: float = 10.0) -> str:
    """Poll `condition` (untimed, between ops) until true: '' or why not."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return ""
        time.sleep(0.002)
    return f"no {what} within {deadline_s:.0f} s"


@dataclass(frozen=True)
class Timed(Generic[T]):
    op: str
    start_ns: int
    duration_ns: int
    value: T | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def timed(op: str, call: Callable[[], T]) -> Timed[T]:
    """Run one call between two readings of the monotonic clock; nothing else is inside."""
    start = time.monotonic_ns()
    try:
        value = call()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a failed sample
        end = time.monotonic_ns()
        return Timed(op, start, end - start, None, f"{type(exc).__name__}: {_short(exc)}")
    end = time.monotonic_ns()
    return Timed(op, start, end - start, value, None)


def _short(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return " ".join(str(text).split())[:500]
