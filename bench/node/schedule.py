"""The node's schedule: which level runs where, in what order, and the lifecycle workers.

`plan` turns the scenario's levels and the node's available targets into (level, target)
units, saying once why a level does not apply to a target. `run` runs them by the scenario's
`schedule`:

- **interleaved** (the default): the units of one level group (Level.group: cri, cri-critest,
  critest, engine, containerd, oci and control together; split, kube, kubelet, dockershim each
  with itself) are open
  together, and every round runs one lifecycle of each of them (at concurrency c: c lifecycles
  at once) in a freshly shuffled order, so what drifts on the node (a neighbour, the page
  cache, thermal state) falls on every target alike. Round r at concurrency c holds iterations
  r*c .. r*c+c-1: a sample's round is iteration // concurrency. The shuffles come from the
  scenario's seed (meta.json), so a run's order can be replayed.
- **block**: each unit alone, all its lifecycles, then the next (the earlier behaviour).

Levels with their own `run` (density, cli: group None) run alone in either. One broken unit is
reported and the others go on; a stop (signal, "stop" order, controller gone) ends the
schedule after the lifecycles in flight. A target is abandoned at a concurrency after
`max_failures` failed lifecycles there. Level control joins every run that has a lifecycle
group (scenario `control`), and each stack's daemon counters are read around every burst
(bench.node.metrics).

Nothing here needs root or a daemon: the levels do. tests/test_schedule.py drives it with a
fake level.
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.levelnames import REGISTRY
from bench.messages import Artifact, Check, Error, Info, Lifecycle, Plan, Sample, Warning
from bench.node import clientload, metrics, targets
from bench.node.levels import Context, Emit, Level, Target, Timed, Turn, load, traced_fields


@dataclass(frozen=True)
class Unit:
    """One level on one target (None for a per-node level)."""

    level: type[Level]
    target: Target | None

    @property
    def name(self) -> str:
        return self.target.name if self.target is not None else "node"


def only_at(target: Target, level: str) -> str:
    """'' unless the target's handler runs only at some levels (its description's `levels`:
    Docker's crun, which dockerd runs but cri-dockerd cannot ask for) and `level` is not one."""
    only = list(target.handler.extra.get("levels") or [])
    if not only or level in only:
        return ""
    return f"{target.name} runs at level {', '.join(only)} only: {target.handler.reason}"


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
            why_not = only_at(target, cls.name) or cls.applies(target)
            if why_not:
                ctx.emit(Info(message=why_not, target=target.name, level=cls.name))
            else:
                units.append(Unit(cls, target))
    # A control in every run that has interleaved lifecycles: the node's own speed (level control).
    control = registry.get("control") if registry is not None else load("control")
    if (
        control is not None
        and scen.control
        and "control" not in classes
        and any(u.level.group == control.group for u in units)
    ):
        classes = {**classes, "control": control}
    for cls in classes.values():
        if cls.per == "handler":
            units += [Unit(cls, Target(None, h)) for h in targets.oci_handlers(list(scen.targets), ctx.found)]
        elif cls.per == "node" and (ctx.targets or not cls.needs_target):
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
    """Run the units by the scenario's schedule. `before_target` runs once per target before its
    first level (the agent removes pods a crashed run left)."""
    prepared: set[str] = set()

    def prepare(unit: Unit) -> None:
        t = unit.target
        if t is not None and t.stack is not None and t.name not in prepared:
            prepared.add(t.name)
            if before_target is not None:
                before_target(t, ctx.scen.timeout_s, ctx.emit)

    if ctx.scen.schedule == "block":
        for unit in units:
            if ctx.stopped:
                break
            prepare(unit)
            _alone(unit, ctx)
        return
    seed = ctx.scen.seed if ctx.scen.seed is not None else 0
    for group, members in groups(units):
        if ctx.stopped:
            break
        for unit in members:
            prepare(unit)
        if group is None:
            _alone(members[0], ctx)
        else:
            rng = random.Random(f"{seed}/{group}")  # noqa: S311 - an order, replayable by seed
            interleave(members, ctx, rng, group)


def groups(units: list[Unit]) -> list[tuple[str | None, list[Unit]]]:
    """The units by level group, groups in the order their first level comes in the registry;
    a level without a group (its own run) is a group of one."""
    rank = {name: i for i, name in enumerate(REGISTRY)}
    ordered = sorted(units, key=lambda u: rank.get(u.level.name, len(rank)))
    out: list[tuple[str | None, list[Unit]]] = []
    index: dict[str, int] = {}
    for unit in ordered:
        g = unit.level.group
        if g is None:
            out.append((None, [unit]))
        elif g in index:
            out[index[g]][1].append(unit)
        else:
            index[g] = len(out)
            out.append((g, [unit]))
    return out


def _alone(unit: Unit, ctx: Context) -> None:
    """One unit on its own: open, sweep, run, close; its daemon's counters read around its lifecycles."""
    level: Level | None = None
    clocks = metrics.Clocks()
    if unit.target is not None and unit.target.stack is not None:
        clocks.add_stack(unit.target.stack)

    def measured(lv: Level) -> None:
        stack = lv.where()[0]
        before, mine = clocks.read(stack), lv.calls()
        try:
            lifecycles(lv, ctx)
        finally:
            clocks.add(lv.where(), before, clocks.read(stack))
            clocks.add(lv.where(), mine, lv.calls(), client=True)

    try:
        level = unit.level.open(unit.target, ctx)
        with level:
            level.sweep()
            _say(level, ctx.emit)
            level.run(measured)
    except Exception as exc:  # noqa: BLE001 - one broken target or level must not stop the others
        ctx.emit(Error(message=f"level {unit.level.name}: {type(exc).__name__}: {exc}", target=unit.name))
    finally:
        if level is not None:
            _say(level, ctx.emit)
        _emit_clocks(clocks, f"{unit.level.name}-{unit.name}".replace("/", "-").replace("@", "_"), ctx)


def _emit_clocks(clocks: metrics.Clocks, name: str, ctx: Context) -> None:
    for stack, why in clocks.errors.items():
        ctx.emit(Warning(message=f"metrics of {stack}: {why}: no daemon figures from then on"))
    found = clocks.report()
    if found:
        ctx.emit(Artifact(name=f"daemon-metrics/{name}.json", content=json.dumps(found, indent=1)))


def interleave(units: list[Unit], ctx: Context, rng: random.Random, group: str = "group") -> None:
    """The units open together; round after round, one lifecycle of each (c at concurrency c) in
    a shuffled order, the daemons' counters read around each; then each is ended and closed,
    whatever happened."""
    clocks, load = metrics.Clocks(), clientload.ClientLoad()
    try:
        _interleave(units, ctx, rng, clocks, load)
    finally:
        _emit_clocks(clocks, group, ctx)
        _emit_load(load, group, ctx)


def _emit_load(load: clientload.ClientLoad, name: str, ctx: Context) -> None:
    found = load.report()
    if found:
        ctx.emit(Artifact(name=f"client-load/{name}.json", content=json.dumps(found, indent=1)))


def _interleave(
    units: list[Unit], ctx: Context, rng: random.Random, clocks: metrics.Clocks, load: clientload.ClientLoad
) -> None:
    with contextlib.ExitStack() as stack:
        live: list[tuple[Unit, Level]] = []
        for unit in units:
            if ctx.stopped:
                break
            try:
                level = unit.level.open(unit.target, ctx)
            except Exception as exc:  # noqa: BLE001 - one broken unit must not stop the others
                ctx.emit(Error(message=f"level {unit.level.name}: {type(exc).__name__}: {exc}", target=unit.name))
                continue
            stack.callback(_close, unit, level, ctx)
            try:
                level.sweep()
                level.begin()
            except Exception as exc:  # noqa: BLE001
                ctx.emit(Error(message=f"level {unit.level.name}: {type(exc).__name__}: {exc}", target=unit.name))
                continue
            finally:
                _say(level, ctx.emit)
            stack.callback(_end, unit, level, ctx)
            live.append((unit, level))
            if unit.target is not None and unit.target.stack is not None:
                clocks.add_stack(unit.target.stack)
        if not live:
            return
        scen = ctx.scen
        total = scen.warmup + scen.iterations
        ctx.emit(
            Info(
                message=f"schedule interleaved (seed {scen.seed}): {len(live)} target level(s) "
                f"{', '.join(f'{u.name} {u.level.name}' for u, _ in live)}, one lifecycle each per round, "
                "shuffled every round"
            )
        )
        for concurrency in scen.concurrency:
            tallies = {id(lv): Tally(scen.max_failures) for _, lv in live}
            for r in range(-(-total // concurrency)):
                order = live[:]
                rng.shuffle(order)
                for _, level in order:
                    if ctx.stopped:
                        return
                    iterations = range(r * concurrency, min(total, (r + 1) * concurrency))
                    where = level.where()
                    before, mine = clocks.read(where[0]), level.calls()
                    going = burst(level, concurrency, list(iterations), ctx, tallies[id(level)], load)
                    clocks.add(where, before, clocks.read(where[0]))
                    clocks.add(where, mine, level.calls(), client=True)
                    if not going:
                        live = [(u, lv) for u, lv in live if lv is not level]
                if not live:
                    return


def _end(unit: Unit, level: Level, ctx: Context) -> None:
    try:
        level.end()
    except Exception as exc:  # noqa: BLE001 - reported; close still runs
        ctx.emit(Error(message=f"level {unit.level.name}: {type(exc).__name__}: {exc}", target=unit.name))


def _close(unit: Unit, level: Level, ctx: Context) -> None:
    try:
        level.close()
    except Exception as exc:  # noqa: BLE001 - reported; the other units still close
        ctx.emit(Error(message=f"level {unit.level.name}: {type(exc).__name__}: {exc}", target=unit.name))
    finally:
        _say(level, ctx.emit)


def _say(level: Level, emit: Emit) -> None:
    for note in level.notes:
        emit(Warning(message=note))
    level.notes.clear()


def sample(ctx: Context, where: tuple[str, str, str], t: Timed[Any], turn: Turn) -> Sample:
    """One timed op as a sample row; `where` is (stack, handler, level)."""
    stack, handler, level = where
    return Sample(
        **traced_fields(ctx, stack, handler, turn),
        level=level,
        op=t.op,
        start_ns=t.start_ns,
        duration_ns=t.duration_ns,
        ok=t.ok,
        error=t.error or "",
    )


def one(level: Level, turn: Turn, ctx: Context) -> bool:
    """One lifecycle of `level`: its samples, its workload check and other events; True when good."""
    where = level.where()
    name = f"{where[0]}/{where[1]}"
    if ctx.tracer is not None:
        with ctx.tracer.lifecycle(traced_fields(ctx, where[0], where[1], turn), level.name):
            out = level.lifecycle(turn)
    else:
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
        ctx.emit(Warning(message=f"{name} level {level.name} iteration {turn.iteration}: {why}", target=name))
    return complete and not out.problem


def lifecycles(level: Level, ctx: Context) -> None:
    """Warm-up plus measured lifecycles at every concurrency of the scenario, until done,
    stopped or abandoned."""
    for concurrency in ctx.scen.concurrency:
        if not at_concurrency(level, concurrency, ctx) or ctx.stopped:
            break


class Tally:
    """Failed lifecycles of one level at one concurrency; abandoned once `limit` have failed."""

    def __init__(self, limit: int) -> None:
        self.limit, self.failures = limit, 0
        self.abandoned = threading.Event()
        self.lock = threading.Lock()

    def fail(self) -> bool:
        """Count one failure: True the first time the limit is reached."""
        with self.lock:
            self.failures += 1
            if self.failures >= self.limit and not self.abandoned.is_set():
                self.abandoned.set()
                return True
            return False


def at_concurrency(level: Level, concurrency: int, ctx: Context) -> bool:
    """`concurrency` workers share all the lifecycles (the block schedule); False when the target
    was abandoned."""
    scen = ctx.scen
    return burst(level, concurrency, list(range(scen.warmup + scen.iterations)), ctx, Tally(scen.max_failures))


def burst(
    level: Level,
    concurrency: int,
    iterations: list[int],
    ctx: Context,
    tally: Tally,
    load: clientload.ClientLoad | None = None,
) -> bool:
    """`concurrency` workers share `iterations`, one lifecycle each at a time; False when the
    target was abandoned (now or before). The workers start together (a barrier); with `load`,
    the agent's own queueing and CPU are measured around the burst (bench.node.clientload)."""
    if not iterations:
        return not tally.abandoned.is_set()
    load = load or clientload.ClientLoad()
    with load.burst(concurrency, len(iterations), max(60.0, ctx.scen.timeout_s)) as gate:
        return _burst(level, concurrency, iterations, ctx, tally, gate)


def _burst(
    level: Level, concurrency: int, iterations: list[int], ctx: Context, tally: Tally, gate: clientload.StartGate
) -> bool:
    scen = ctx.scen
    where = level.where()
    name = f"{where[0]}/{where[1]}" + ("" if level.name == "cri" else f" ({level.name})")
    work: queue.Queue[int] = queue.Queue()
    for i in iterations:
        work.put(i)

    def worker(wid: int) -> None:
        gate.wait()
        while not (ctx.stopped or tally.abandoned.is_set()):
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            try:
                ok = one(level, Turn(i, concurrency, wid, i < scen.warmup), ctx)
            except Exception as exc:  # noqa: BLE001 - a level bug fails the lifecycle, not the worker
                ctx.emit(Warning(message=f"{name} iteration {i}: {type(exc).__name__}: {exc}", target=name))
                ok = False
            ctx.emit(Lifecycle(target=name, concurrency=concurrency, iteration=i, ok=ok))
            if not ok and tally.fail():
                ctx.emit(
                    Error(
                        message=f"{tally.failures} failed lifecycles at concurrency {concurrency}: target abandoned",
                        target=name,
                    )
                )

    threads = [
        threading.Thread(target=worker, args=(w,), daemon=True) for w in range(min(concurrency, len(iterations)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return not tally.abandoned.is_set()
