"""The `density` level: fill the node with running pods step by step, sampling memory all along.

Memory is sampled at 0 pods first (the daemons' baseline), then while pods start ("ramp")
and while each step's pods run ("hold"). Each pod start is RunPodSandbox, CreateContainer and
StartContainer through CRI, timed (iteration = pods already running), then the workload must
run with its ready line. Every pod is removed at the end, also when the run is interrupted
or a pod fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from bench.messages import Check, Error, Info, Lifecycle, Memory, SamplerStats, Warning
from bench.node import memory
from bench.node.cri import CheckFailed, remove_pod_files
from bench.node.levels import Level, Outcome, StopLifecycle, Timed, Turn, UnsupportedOp
from bench.node.levels.cri import CriLevel
from bench.node.schedule import sample
from bench.scenario import Scenario


class DensityLevel(CriLevel):
    name = "density"
    group: ClassVar[str | None] = None  # its own run: fills the node step by step

    @classmethod
    def planned(cls, scen: Scenario) -> int:
        return max(scen.density.steps)

    def start_pod(self, index: int) -> str:
        """Start one pod and leave it running: the sandbox id, or '' when it failed."""
        pod = self.new_pod(f"d{index}")
        ids = {"sandbox": "", "container": ""}
        turn = Turn(index)

        def record(t: Timed[Any]) -> Any:
            self.ctx.emit(sample(self.ctx, self.where(), t, turn))
            if not t.ok:
                raise StopLifecycle(f"{t.op} failed: {t.error}")
            return t.value

        try:
            self.start(pod, record, ids)
            self.client.wait_running_with_output(ids["container"])
            self.ctx.emit(Check(self.pair, self.name, index, 1, "workload-running", True, ""))
            return ids["sandbox"]
        except (StopLifecycle, CheckFailed) as exc:
            self.ctx.emit(Warning(message=f"{self.pair} density pod {index}: {exc}"))
            if ids["sandbox"]:
                self.remove(ids["sandbox"])
            else:
                remove_pod_files(pod)
            return ""

    def lifecycle(self, turn: Turn) -> Outcome:
        raise UnsupportedOp("level density fills the node with pods that keep running; it has no lifecycle of its own")

    def run(self, schedule: Callable[[Level], None]) -> None:
        ctx, dens = self.ctx, self.ctx.scen.density
        where = {"run_id": ctx.job.run_id, "node": ctx.job.node, "target": self.pair, "handler": self.handler.name}

        def on_sweep(rows: list[dict[str, Any]]) -> None:
            ctx.emit(Memory(rows=tuple({**where, **r} for r in rows)))

        sampler = memory.Sampler(memory.Classifier([self.stack]), dens.interval_s, on_sweep)
        running: list[str] = []

        def hold(step: int) -> None:
            sampler.set_labels(step=step, pods_running=len(running), phase="hold")
            ctx.stop.wait(dens.hold_s)

        failures = 0
        sampler.set_labels(step=0, pods_running=0, phase="hold")
        sampler.start()
        try:
            hold(0)
            for step in dens.steps:
                while len(running) < step and not ctx.stopped:
                    sampler.set_labels(step=step, pods_running=len(running), phase="ramp")
                    sandbox_id = self.start_pod(len(running))
                    ctx.emit(Lifecycle(target=self.pair, concurrency=1, iteration=len(running), ok=bool(sandbox_id)))
                    if sandbox_id:
                        running.append(sandbox_id)
                    else:
                        failures += 1
                        if failures >= ctx.scen.max_failures:
                            ctx.emit(Error(message=f"density: {failures} pods failed to start", target=self.pair))
                            return
                if ctx.stopped:
                    return
                hold(step)
        finally:
            sampler.stop()
            ctx.emit(SamplerStats(target=self.pair, stats=sampler.stats()))

    def close(self) -> None:
        try:
            n = self.remove_all()
            self.ctx.emit(Info(message=f"density: removed the {n} pod(s) it started on {self.pair}", target=self.pair))
        finally:
            self.client.close()
