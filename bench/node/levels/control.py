"""Level `control`: something that does not change between runs, timed in every run beside the targets.

When the whole node slows (another tenant, thermal state, a kernel update), every target of a
run slows with it and a comparison across runs blames the stacks. The control is the node's
own speed, measured interleaved with the targets (it is in their level group, so every round
has one control lifecycle): a fixed CPU loop (pure Python arithmetic), a fixed syscall loop
(stat and getppid), and the OCI runtime's own create/start/kill/delete on a bundle of the
workload image (runc, the binary every stack uses; level oci's lifecycle). Samples: stack
"none", handler "control", level "control". `hopbench compare` and the report turn their
ratio between two runs into a node speed index (bench.controller.control).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from bench.node.levels import Context, Level, Outcome, Target, Timed, Turn, timed
from bench.node.levels.oci import OciLevel

CPU_ROUNDS = 200_000
SYSCALL_ROUNDS = 2_000
OPS = ("cpu-loop", "syscall-loop", "runc create", "runc start", "runc kill", "runc delete")


def cpu_loop() -> int:
    total = 0
    for i in range(CPU_ROUNDS):
        total += (i * i) % 7
    return total


def syscall_loop() -> int:
    n = 0
    for _ in range(SYSCALL_ROUNDS):
        os.stat("/")
        n += os.getppid() > 0
    return n


class ControlLevel(Level):
    name = "control"
    ops: tuple[str, ...] = OPS
    per = "node"
    group: ClassVar[str | None] = "lifecycle"

    def __init__(self, ctx: Context, oci: OciLevel | None, why_not: str) -> None:
        self.ctx, self.oci = ctx, oci
        self.target = None
        if why_not:
            self.notes.append(f"control: {why_not}: the CPU and syscall loops only")

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> ControlLevel:
        runc = next(
            (t.handler for t in ctx.targets if t.handler.name == "runc" and t.handler.binary and t.handler.available),
            None,
        )
        if runc is None:
            return LoopsOnly(ctx, None, "no runc among the run's targets")
        oci = OciLevel(runc.binary, [], ctx.workdir / "control-runc", ctx.job.workload_archive, ctx.scen.timeout_s)
        return cls(ctx, oci, "")

    def where(self) -> tuple[str, str, str]:
        return ("none", "control", self.name)

    def lifecycle(self, turn: Turn) -> Outcome:
        done: list[Timed[Any]] = [timed("cpu-loop", cpu_loop), timed("syscall-loop", syscall_loop)]
        if self.oci is None:
            return Outcome(done)
        out = self.oci.lifecycle(turn)
        done += [Timed(f"runc {t.op}", t.start_ns, t.duration_ns, t.value, t.error) for t in out.timed]
        return Outcome(done, out.problem, out.check)

    def sweep(self) -> None:
        if self.oci is not None:
            self.oci.sweep()

    def close(self) -> None:
        if self.oci is not None:
            self.oci.close()
            self.notes.extend(self.oci.notes)


class LoopsOnly(ControlLevel):
    """The control without an OCI runtime: the two loops."""

    ops = OPS[:2]
