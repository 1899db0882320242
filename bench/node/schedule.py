"""The node's schedule: which level runs where, in what order, and the lifecycle workers.

`plan` turns the scenario's levels and the node's available targets into (level, target)
units, saying once why a level does not apply to a target. `run` opens each unit's level,
sweeps, runs and closes it; one broken unit is reported and the others go on; a stop
(signal, "stop" order, controller gone) ends the schedule after the lifecycles in flight.
`lifecycles` is the default way a level runs: warm-up plus measured lifecycles at each
concurrency of the scenario, each worker taking the next iteration, every timed op a
sample, and the target abandoned after `max_failures` failed lifecycles.

Nothing here needs root or a daemon: the levels do. tests/test_schedule.py drives it with a
fake level.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.messages import Check, Error, Info, Lifecycle, Plan, Sample, Warning
from bench.node import targets
from bench.node.levels import REGISTRY, Context, Emit, Level, Target, Timed, Turn, load


@dataclass(frozen=True)
class Unit:
    """One level on one target (None for a per-node level)."""

    level: type[Level]
    target: Target | None

    @property
    def name(self) -> str:
        return self.target.name if self.target is not None else "node"


def plan(ctx: Context, registry: dict[str, type[Level]] | None = None) -> list[Unit]:
    """The scenario's levels on the node's available targets, in the registry's order per target;
    per-handler levels (oci) after them, per-node levels (cli) last. Emits the plan."""
    scen = ctx.scen
    known = registry or {name: load(name) for name in REGISTRY if name in scen.levels}
    classes = {n: c for n, c in known.items() if n in scen.levels}
    units: list[Unit] = []
    for target in ctx.targets:
        for cls in classes.values():
            if cls.per != "target":
                continue
            why_not = cls.applies(target)
            if why_not:
                ctx.emit(Info(message=why_not, target=target.name, level=cls.name))
            else:
                units.append(Unit(cls, target))
    for cls in classes.values():
        if cls.per == "handler":
            units += [Unit(cls, Target(None, h)) for h in targets.oci_handlers(list(scen.targets), ctx.found)]
        elif cls.per == "node" and ctx.targets:
            units.append(Unit(cls, None))
    ctx.emit(
        Plan(
            lifecycles=sum(u.level.planned(scen) for u in units),
            targets=tuple(t.name for t in ctx.targets),
            levels=tuple(f"{u.name} {u.level.name}" for u in units),
        )
    )
    return units


def run(
    units: list[Unit],
    ctx: Context,
    before_target: Callable[[Target, float, Emit], None] | None = None,
) -> None:
    """Each unit in turn: open, sweep, run, close. `before_target` runs once per target before
    its first level (the agent removes pods a crashed run left)."""
    prepared: set[str] = set()
    for unit in units:
        if ctx.stopped:
            break
        if unit.target is not None and unit.target.stack is not None and unit.target.name not in prepared:
            prepared.add(unit.target.name)
            if before_target is not None:
                before_target(unit.target, ctx.scen.timeout_s, ctx.emit)
        level: Level | None = None
        try:
            level = unit.level.open(unit.target, ctx)
            with level:
                level.sweep()
                _say(level, ctx.emit)
                level.run(lambda lv: lifecycles(lv, ctx))
        except Exception as exc:  # noqa: BLE001 - one broken target or level must not stop the others
            ctx.emit(Error(message=f"level {unit.level.name}: {type(exc).__name__}: {exc}", target=unit.name))
        finally:
            if level is not None:
                _say(level, ctx.emit)


def _say(level: Level, emit: Emit) -> None:
    for note in level.notes:
        emit(Warning(message=note))
    level.notes.clear()


def sample(ctx: Context, where: tuple[str, str, str], t: Timed[Any], turn: Turn) -> Sample:
    """One timed op as a sample row; `where` is (stack, handler, level)."""
    stack, handler, level = where
    return Sample(
        run_id=ctx.job.run_id,
        node=ctx.job.node,
        stack=stack,
        handler=handler,
        level=level,
        op=t.op,
        iteration=turn.iteration,
        concurrency=turn.concurrency,
        worker=turn.worker,
        warmup=turn.warmup,
        start_ns=t.start_ns,
        duration_ns=t.duration_ns,
        ok=t.ok,
        error=t.error or "",
    )


def one(level: Level, turn: Turn, ctx: Context) -> bool:
    """One lifecycle of `level`: its samples, its workload check and other events; True when good."""
    where = level.where()
    name = f"{where[0]}/{where[1]}"
    out = level.lifecycle(turn)
    for t in out.timed:
        ctx.emit(sample(ctx, where, t, turn))
    complete = len(out.timed) == len(level.ops) and all(t.ok for t in out.timed)
    if complete or out.problem:
        ctx.emit(
            Check(
                target=name,
                level=level.name,
                iteration=turn.iteration,
                concurrency=turn.concurrency,
                check=out.check,
                ok=complete and not out.problem,
                detail=out.problem,
            )
        )
    for ev in out.events:
        ctx.emit(ev)
    failed = next((t for t in out.timed if not t.ok), None)
    if failed is not None or out.problem:
        why = f"{failed.op} failed: {failed.error}" if failed is not None else out.problem
        ctx.emit(Warning(message=f"{name} level {level.name} iteration {turn.iteration}: {why}"))
    return complete and not out.problem


def lifecycles(level: Level, ctx: Context) -> None:
    """Warm-up plus measured lifecycles at every concurrency of the scenario, until done,
    stopped or abandoned."""
    for concurrency in ctx.scen.concurrency:
        if not at_concurrency(level, concurrency, ctx) or ctx.stopped:
            break


def at_concurrency(level: Level, concurrency: int, ctx: Context) -> bool:
    """`concurrency` workers share the lifecycles; False when the target was abandoned."""
    scen = ctx.scen
    where = level.where()
    name = f"{where[0]}/{where[1]}" + ("" if level.name == "cri" else f" ({level.name})")
    work: queue.Queue[int] = queue.Queue()
    for i in range(scen.warmup + scen.iterations):
        work.put(i)
    abandon = threading.Event()
    failures = 0
    lock = threading.Lock()

    def worker(wid: int) -> None:
        nonlocal failures
        while not (ctx.stopped or abandon.is_set()):
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            try:
                ok = one(level, Turn(i, concurrency, wid, i < scen.warmup), ctx)
            except Exception as exc:  # noqa: BLE001 - a level bug fails the lifecycle, not the worker
                ctx.emit(Warning(message=f"{name} iteration {i}: {type(exc).__name__}: {exc}"))
                ok = False
            ctx.emit(Lifecycle(target=name, concurrency=concurrency, iteration=i, ok=ok))
            if not ok:
                with lock:
                    failures += 1
                    if failures >= scen.max_failures and not abandon.is_set():
                        abandon.set()
                        ctx.emit(
                            Error(
                                message=f"{failures} failed lifecycles at concurrency {concurrency}: target abandoned",
                                target=name,
                            )
                        )

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return not abandon.is_set()
