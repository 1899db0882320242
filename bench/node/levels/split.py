"""The `split` level: the CRI lifecycles again, with every runtime and CNI call recorded.

The stacks run their OCI runtime and CNI plugins through the timing wrapper (role
ociwrapper); with the trace armed, each call lands in the trace file on the same monotonic
clock as the CRI call. Each op is then cut into parts (bench.node.split) and every call of
the lifecycle is reported with the op it fell in.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bench.messages import Call, Event, Split
from bench.node import split
from bench.node.levels import Context, Target, Timed, Turn, need_stack, traced_fields
from bench.node.levels.cri import CriLevel


class SplitLevel(CriLevel):
    name = "split"
    # The armed trace records every runtime call on the stack: cri-level pods beside these would
    # pay for it and fill it, so split interleaves across targets with itself only.
    group: ClassVar[str | None] = "split"

    def __init__(self, target: Target, ctx: Context) -> None:
        _, stack = need_stack(target, self.name)
        self.trace = split.TraceReader(str(stack.extra["trace_path"]))
        super().__init__(target, ctx)
        self.trace.arm()

    @classmethod
    def applies(cls, target: Target) -> str:
        stack = target.stack
        if stack is None or not (stack.extra.get("trace_path") and target.handler.extra.get("wrapper")):
            return (
                f"level split: {target.name} does not run its runtime through the timing wrapper (a node with"
                " CAP_SYS_RESOURCE keeps it out of the timed path: provision with -e hopbench_oci_wrapper=always)"
            )
        return ""

    def events(self, turn: Turn, done: list[Timed[Any]], ids: dict[str, str]) -> list[Event]:
        """Each op of one lifecycle cut into parts, and every traced call of the lifecycle."""
        windows = [split.OpWindow(t.op, t.start_ns, t.start_ns + t.duration_ns) for t in done if t.ok]
        calls = self.trace.take(set(ids.values()))
        by_op = split.attribute(windows, calls)
        stack, handler, _ = self.where()
        common = traced_fields(self.ctx, stack, handler, turn)
        role = {v: k for k, v in ids.items() if v}
        op_of = {id(c): windows[i].op for i, cs in by_op.items() for c in cs}
        out: list[Event] = [
            Call(
                **common,
                op=op_of.get(id(c), ""),
                call_kind=c.kind,
                command=c.command,
                object=role.get(c.object_id, ""),
                entry_ns=c.entry_ns,
                fork_ns=c.fork_ns,
                exit_ns=c.exit_ns,
                status=c.status,
            )
            for c in calls
        ]
        for i, w in enumerate(windows):
            mine = by_op.get(i, [])
            cut = split.parts(w, mine)
            out.append(
                Split(
                    **common,
                    op=w.op,
                    start_ns=w.start_ns,
                    duration_ns=w.end_ns - w.start_ns,
                    calls=" ".join(f"{c.kind}:{c.command}" for c in mine),
                    before_ns=cut["before"],
                    network_ns=cut["network"],
                    runtime_ns=cut["runtime"],
                    between_ns=cut["between"],
                    after_ns=cut["after"],
                )
            )
        return out

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.trace.disarm()
            if self.trace.bad_lines:
                self.notes.append(f"{self.trace.bad_lines} unreadable line(s) in the call trace {self.trace.path}")
