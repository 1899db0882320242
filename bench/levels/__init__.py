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


class UnsupportedOp(NotImplementedError):
    pass


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
