"""The `cri` level: a pod lifecycle through the stack's CRI socket, the kubelet's requests.

One lifecycle: RunPodSandbox, CreateContainer, StartContainer, StopContainer,
RemoveContainer, StopPodSandbox, RemovePodSandbox, each one CRI gRPC call timed alone, with
the requests bench.node.kubelet builds as kubelet does. Untimed between ops: after
StartContainer the workload must run and print its ready line ("workload-running"); after
StopContainer it must have exited 0 with its stop line ("workload-exited"). Every pod it
creates is tracked until removed; at the end anything of this run left on the stack (say a
sandbox whose RunPodSandbox timed out) is removed too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bench.messages import Event
from bench.node import kubelet
from bench.node.cri import CheckFailed, CriClient, remove_pod_files
from bench.node.levels import Context, Level, Outcome, Record, StopLifecycle, Target, Timed, Turn, need_stack
from bench.ops import POD_LIFECYCLE_OPS


class CriLevel(Level):
    name = "cri"
    ops = POD_LIFECYCLE_OPS

    def __init__(self, target: Target, ctx: Context) -> None:
        self.target, self.ctx, self.pair = target, ctx, target.name
        _, self.stack = need_stack(target, self.name)
        self.handler = target.handler
        self.run_id = ctx.job.run_id
        self.workload = ctx.scen.workload
        self.client = CriClient(self.stack.cri_endpoint, ctx.scen.timeout_s, ctx.tracer)
        self.image_ref = self.stack.workload_image
        self.image_id = self.client.image_id(self.image_ref)
        self.live: dict[str, kubelet.Pod] = {}
        self.lock = threading.Lock()

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> CriLevel:
        t, _ = need_stack(target, cls.name)
        return cls(t, ctx)

    def new_pod(self, tag: str) -> kubelet.Pod:
        pod = kubelet.Pod(
            name=f"hb-{self.run_id[-8:]}-{tag}".lower(),
            run_id=self.run_id,
            grace_period_s=self.workload.stop_timeout_s,
            cgroup_driver=self.stack.cgroup_driver,
        )
        pod.prepare()
        return pod

    def start(self, pod: kubelet.Pod, record: Callable[[Timed[Any]], Any], ids: dict[str, str]) -> None:
        """RunPodSandbox, CreateContainer, StartContainer, each through `record` (which raises on a
        failed op); `ids` gets the sandbox and container ids as they come, the pod is tracked as live."""
        sandbox_cfg = kubelet.sandbox_config(pod)
        ids["sandbox"] = record(self.client.run_pod_sandbox(sandbox_cfg, self.handler.runtime_handler))
        with self.lock:
            self.live[ids["sandbox"]] = pod
        cfg = kubelet.container_config(
            pod, self.image_id, self.image_ref, list(self.workload.command), list(self.workload.args)
        )
        ids["container"] = record(self.client.create_container(ids["sandbox"], cfg, sandbox_cfg))
        record(self.client.start_container(ids["container"]))

    def lifecycle(self, turn: Turn) -> Outcome:
        pod = self.new_pod(turn.tag)
        record = Record()
        done = record.done
        ids = {"sandbox": "", "container": ""}
        problem, check = "", "workload-ran"
        removed = False

        try:
            self.start(pod, record, ids)
            try:
                self.client.wait_running_with_output(ids["container"])
            except CheckFailed as exc:
                problem, check = str(exc), "workload-running"
                raise StopLifecycle from exc
            record(self.client.stop_container(ids["container"], pod.grace_period_s))
            try:
                self.client.check_exited_cleanly(ids["container"])
            except CheckFailed as exc:
                problem, check = str(exc), "workload-exited"
                raise StopLifecycle from exc
            record(self.client.remove_container(ids["container"]))
            record(self.client.stop_pod_sandbox(ids["sandbox"]))
            record(self.client.remove_pod_sandbox(ids["sandbox"]))
            with self.lock:
                self.live.pop(ids["sandbox"], None)
            removed = True
        except StopLifecycle:
            pass
        finally:
            if ids["sandbox"] and not removed:
                self.remove(ids["sandbox"])
            remove_pod_files(pod)
        return Outcome(done, problem, check, self.events(turn, done, ids))

    def calls(self) -> dict[str, tuple[float, float]]:
        return self.client.log.snapshot()

    def events(self, turn: Turn, done: list[Timed[Any]], ids: dict[str, str]) -> list[Event]:
        """Other events of one lifecycle (level split: the calls under each op)."""
        return []

    def remove(self, sandbox_id: str) -> None:
        errors = self.client.remove_pod(sandbox_id)
        with self.lock:
            pod = self.live.pop(sandbox_id, None)
        if pod is not None:
            remove_pod_files(pod)
        if errors:
            self.notes.append(f"clean-up of pod {sandbox_id[:12]} on {self.pair}: {'; '.join(errors)}")

    def remove_all(self) -> int:
        """Every pod of this run on this stack: the tracked ones, then any other with the run's label."""
        with self.lock:
            ids = list(self.live)
        for sandbox_id in ids:
            self.remove(sandbox_id)
        mine = {kubelet.RUN_LABEL: self.run_id, kubelet.NODE_LABEL: self.ctx.job.node}
        leftovers = [s.id for s in self.client.sandboxes(mine)]
        for sandbox_id in leftovers:
            self.remove(sandbox_id)
        return len(ids) + len(leftovers)

    def close(self) -> None:
        try:
            n = self.remove_all()
            if n:
                self.notes.append(f"removed {n} pod(s) of this run on {self.pair} at the end")
        finally:
            self.client.close()
