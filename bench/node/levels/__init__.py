"""Levels: each enters the runtime path at one hop and times lifecycle ops there.

The written protocol every level implements (bucketbench's one `Driver` per runtime, behind
one interface), and the registry the scenario's `levels` and the node's schedule read:

    class MyLevel(Level):
        name = "mine"                      # the scenario's level name, the samples' `level`
        ops = ("Create", "Start", ...)     # what one complete lifecycle times, in order
        per = "target"                     # or "handler" (the OCI runtime alone, stack "none"),
                                           # or "node" (once, for every available target)

        @classmethod
        def applies(cls, target): ...      # '' when the level can run on the target, else why not
        @classmethod
        def open(cls, target, ctx): ...    # the level for one target, built from its description
        def sweep(self): ...               # remove what a crashed earlier run left (untimed)
        def lifecycle(self, turn): ...     # one lifecycle: its Timed ops and the workload check
        def begin(self): ... / end(self)   # around the level's lifecycles (a sampler, say)
        def run(self, schedule): ...       # default: begin, lifecycles at every concurrency, end
        def close(self): ...               # remove what this run made; context-managed

    group = "lifecycle"                    # levels of one group run interleaved (bench.node.schedule):
                                           # every round, one lifecycle of each of their targets in a
                                           # shuffled order; None: the level runs its own `run` alone

A call returns its result together with the elapsed time and the error (`Timed`), so the
timing sits right beside the call. An op a level cannot do raises UnsupportedOp; a failed call
is a failed sample with its error, never a zero duration. What a level has to say about its
own housekeeping (leftovers removed, clean-up errors) goes to `notes`; the scheduler emits
them as warnings. A new level is one module here and one line in REGISTRY (bench.levelnames).
"""

from __future__ import annotations

import abc
import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from bench import stacks
from bench.errors import ComponentError
from bench.levelnames import REGISTRY

if TYPE_CHECKING:
    from bench.messages import Event, Job
    from bench.node.traces import Tracer
    from bench.scenario import Scenario

T = TypeVar("T")


# What the workload image's program prints once running and on SIGTERM: every level checks them.
READY_MARK = "hopbench-workload ready"
STOP_MARK = "hopbench-workload stopping"


class UnsupportedOp(ComponentError, NotImplementedError):
    """An op the level cannot do: raised, never timed as zero."""


class StopLifecycle(Exception):
    """Raised by a level's op helper when an op failed: the lifecycle ends there (a failed sample)."""


class Emit(Protocol):
    """Where events go (bench.node.channel.Emitter); `closed` once the reader has gone away."""

    closed: threading.Event

    def __call__(self, event: Event, /) -> None: ...


def load(name: str) -> type[Level]:
    """The level class registered under `name`."""
    module, _, cls = REGISTRY[name].partition(":")
    level: type[Level] = getattr(importlib.import_module(module), cls)
    return level


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


class Record:
    """The timed ops of one lifecycle as they come: a call appends one and returns its value, or
    raises StopLifecycle when it failed (the lifecycle ends there, a failed sample)."""

    def __init__(self) -> None:
        self.done: list[Timed[Any]] = []

    def __call__(self, t: Timed[Any]) -> Any:
        self.done.append(t)
        if not t.ok:
            raise StopLifecycle
        return t.value


@dataclass(frozen=True)
class Target:
    """A stack instance with one of its handlers; `stack` is None for the runtime alone (level oci)."""

    stack: stacks.Stack | None
    handler: stacks.Handler

    @property
    def name(self) -> str:
        return f"{self.stack.name if self.stack else 'none'}/{self.handler.name}"


@dataclass(frozen=True)
class Turn:
    """One lifecycle's place in the schedule."""

    iteration: int
    concurrency: int = 1
    worker: int = 0
    warmup: bool = False

    @property
    def tag(self) -> str:
        return f"{self.concurrency}-{self.iteration}"


@dataclass(frozen=True)
class Outcome:
    """One lifecycle: its timed ops in order, the workload check, other events it produced.

    Complete when every op of the level was timed and succeeded; `problem` is the failed
    check's detail ('' when the workload behaved) and `check` its name."""

    timed: list[Timed[Any]]
    problem: str = ""
    check: str = "workload-ran"
    events: list[Event] = field(default_factory=list)


@dataclass
class Context:
    """What a level sees of the node agent: the job, the event stream, the stop flag, a work dir."""

    job: Job
    emit: Emit
    stop: threading.Event
    workdir: Path
    found: list[stacks.Stack] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    # Scenario tracing: our client's spans (bench.node.traces.Tracer); None when not tracing.
    tracer: Tracer | None = None

    @property
    def scen(self) -> Scenario:
        return self.job.scen

    @property
    def stopped(self) -> bool:
        return self.stop.is_set() or self.emit.closed.is_set()


def traced_fields(ctx: Context, stack: str, handler: str, turn: Turn) -> dict[str, Any]:
    """Where a lifecycle ran: the fields a sample and a lifecycle's own events (Split, Call, Pull) share."""
    return {
        "run_id": ctx.job.run_id,
        "node": ctx.job.node,
        "stack": stack,
        "handler": handler,
        "iteration": turn.iteration,
        "concurrency": turn.concurrency,
        "worker": turn.worker,
        "warmup": turn.warmup,
    }


class Level(abc.ABC):
    """One way into the runtime path; see the module docstring for the protocol."""

    name: ClassVar[str]
    # Most levels fix it in the class; a level whose ops come from the scenario (image) sets it
    # per instance.
    ops: tuple[str, ...]
    per: ClassVar[Literal["target", "handler", "node"]] = "target"
    # Levels of one group are open together and interleaved round by round. A level whose pods a
    # kubelet drives has a group of its own (a kubelet removes pods it does not know of on its
    # stack); one with its own `run` (density, cli) has None and runs alone.
    group: ClassVar[str | None] = "lifecycle"
    # A per-node level runs when at least one of the scenario's targets is available on the node,
    # unless it measures no stack at all (nullcri: the harness and its stream alone).
    needs_target: ClassVar[bool] = True

    target: Target | None = None

    @property
    def notes(self) -> list[str]:
        if "_notes" not in self.__dict__:
            self._notes: list[str] = []
        return self._notes

    @classmethod
    def applies(cls, target: Target) -> str:
        """'' when this level can run on `target`, else the reason (said once in the run's events)."""
        return ""

    @classmethod
    @abc.abstractmethod
    def open(cls, target: Target | None, ctx: Context) -> Level:
        """The level for one target (None for per-node levels), built from its stack description."""

    def sweep(self) -> None:  # noqa: B027 - an optional hook: most levels leave nothing behind
        """Remove what a crashed earlier run left at this level (untimed); say so in `notes`."""

    @abc.abstractmethod
    def lifecycle(self, turn: Turn) -> Outcome:
        """One lifecycle, every op timed; a failed op ends it (a failed sample, never a zero)."""

    def calls(self) -> dict[str, tuple[float, float]] | None:
        """Every call the level's client made so far, {method: (count, seconds)}, timed or not (the
        client's side of the daemon's counters); None for a level without such a client."""
        return None

    def begin(self) -> None:  # noqa: B027 - an optional hook
        """Before the level's first lifecycle (after sweep), whichever the schedule."""

    def end(self) -> None:  # noqa: B027 - an optional hook
        """After its last lifecycle, before close; also when the lifecycles failed."""

    def run(self, schedule: Callable[[Level], None]) -> None:
        """Run the level's part of the scenario alone: by default `schedule` drives the lifecycles."""
        self.begin()
        try:
            schedule(self)
        finally:
            self.end()

    @classmethod
    def planned(cls, scen: Scenario) -> int:
        """How many lifecycles the level will run on one target (for progress)."""
        return len(scen.concurrency) * (scen.warmup + scen.iterations)

    def where(self) -> tuple[str, str, str]:
        """(stack, handler, level) of this level's samples."""
        t = self.target
        if t is None:
            return ("none", "", self.name)
        return (t.stack.name if t.stack else "none", t.handler.name, self.name)

    def close(self) -> None:  # noqa: B027 - an optional hook: a level may hold nothing
        """Remove what this run made at this level; say so in `notes`. Called once, also on errors."""

    def __enter__(self) -> Level:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def need_stack(target: Target | None, level: str) -> tuple[Target, stacks.Stack]:
    """The target and its stack, for the levels that run inside a stack."""
    if target is None or target.stack is None:
        raise ComponentError(f"level {level} runs inside a stack; it got {target.name if target else 'no target'}")
    return target, target.stack
