"""Levels `critest`, `cri-critest` and `nullcri`: the reference tool beside hopbench, and the harness's own cost.

- `critest`: cri-tools' `critest -benchmark` itself, one pod sample and one container sample per
  lifecycle (bench.node.critest.run), its figures taken as samples under the CRI op names.
- `cri-critest`: hopbench's CRI client sending critest's own requests (bench.node.critest) in
  critest's order: the pod benchmark's four calls on a pod without containers, then the
  container benchmark's five calls in a pod made and removed untimed. Like critest, it asks
  RuntimeConfig (untimed) before each RunPodSandbox, and its CreateContainer figure holds an
  ImageStatus call before the CreateContainer call, as critest's does (CreateContainerWithError). Untimed checks: the
  container is RUNNING in the timed ContainerStatus answer, EXITED after StopContainer.
- `nullcri` (once per node): both of the above, interleaved, against nullcri, a CRI server that
  answers every call at once (tools/nullcri): what is left is the client side, gRPC and the
  harness, per op. Then the null-target limit: cri-critest lifecycles back to back for a few
  seconds from one thread pinned to one core, nullcri pinned to the other, as ops per second.

critest, cri-critest and cri of one target are one interleaved group, so the three see the
same node in the same rounds; the report's crosscheck table sets them side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from bench import stacks
from bench.errors import ComponentError
from bench.messages import Artifact, Info, Setting, Tool
from bench.node import critest
from bench.node.cri import CriClient
from bench.node.kubeletd import terminate, with_parent_death_signal
from bench.node.levels import (
    Context,
    Level,
    Outcome,
    Record,
    StopLifecycle,
    Target,
    Timed,
    Turn,
    UnsupportedOp,
    need_stack,
)
from bench.scenario import Scenario

NULLCRI = "/usr/local/lib/hopbench/bin/nullcri"
LIMIT_S = 3.0


class CritestLevel(Level):
    name = "critest"
    ops = critest.OPS

    def __init__(self, target: Target, stack: stacks.Stack, ctx: Context, binary: str) -> None:
        self.target, self.stack, self.ctx, self.pair = target, stack, ctx, target.name
        self.handler = target.handler
        self.binary = binary
        self.raw: dict[str, list[Any]] = {"pod": [], "container": []}
        self.lock = threading.Lock()

    @classmethod
    def applies(cls, target: Target) -> str:
        if target.stack is None:
            return f"level {cls.name} runs inside a stack: {target.name}"
        try:
            critest.find_binary()
        except ComponentError as exc:
            return f"level {cls.name}: {exc}"
        return ""

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> CritestLevel:
        t, stack = need_stack(target, cls.name)
        level = cls(t, stack, ctx, critest.find_binary())
        ctx.emit(Tool(name="critest", version=_critest_version(level.binary)))
        return level

    def lifecycle(self, turn: Turn) -> Outcome:
        tag = f"{self.stack.name}-{self.handler.name}-{turn.concurrency}-{turn.iteration}"
        result = critest.run(
            self.binary,
            self.stack.cri_endpoint,
            self.handler.runtime_handler,
            self.stack.workload_image,
            self.ctx.workdir,
            self.ctx.scen.timeout_s,
            tag.replace("/", "_").replace("@", "_"),
        )
        with self.lock:
            for kind, data in result.raw.items():
                for point in data.get("datapoints") or []:
                    self.raw[kind].append({**point, "iteration": turn.iteration, "concurrency": turn.concurrency})
        return Outcome(result.timed, result.problem, "critest-passed")

    def sweep(self) -> None:
        self._remove_leftovers("before")

    def close(self) -> None:
        name = f"critest/{self.stack.name}-{self.handler.name}.json"
        self.ctx.emit(Artifact(name=name.replace("@", "_"), content=json.dumps(self.raw, indent=1)))
        self._remove_leftovers("after")

    def _remove_leftovers(self, when: str) -> None:
        client = CriClient(self.stack.cri_endpoint, self.ctx.scen.timeout_s)
        try:
            left = critest.leftovers(client.sandboxes({}))
            for sandbox_id in left:
                errors = client.remove_pod(sandbox_id)
                if errors:
                    self.notes.append(f"clean-up of critest pod {sandbox_id[:12]} on {self.pair}: {'; '.join(errors)}")
            if left:
                self.notes.append(f"removed {len(left)} critest pod(s) on {self.pair} {when} the level")
        finally:
            client.close()


def _critest_version(binary: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30, check=False).stdout
        for line in out.splitlines():
            if "critest version" in line:
                return line.split(":", 1)[1].strip()
    return "?"


class CriCritestLevel(Level):
    name = "cri-critest"
    ops = critest.OPS

    def __init__(self, target: Target, stack: stacks.Stack, ctx: Context) -> None:
        self.target, self.stack, self.ctx, self.pair = target, stack, ctx, target.name
        self.handler = target.handler.runtime_handler
        self.client = CriClient(stack.cri_endpoint, ctx.scen.timeout_s)
        self.image_ref = stack.workload_image
        self.client.image_id(self.image_ref)
        self.live: set[str] = set()
        self.lock = threading.Lock()

    @classmethod
    def applies(cls, target: Target) -> str:
        return "" if target.stack is not None else f"level {cls.name} runs inside a stack: {target.name}"

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> CriCritestLevel:
        t, stack = need_stack(target, cls.name)
        return cls(t, stack, ctx)

    def _run(self, prefix: str, record: Callable[[Timed[Any]], Any] | None) -> tuple[str, Any]:
        # critest asks the runtime's cgroup driver for every pod it makes (common.GetCgroupParent),
        # right before RunPodSandbox: untimed, and it keeps the channel as warm as critest's.
        cfg = critest.pod_config(prefix, critest.cgroup_parent(self.client.runtime_config()))
        t = self.client.run_pod_sandbox(cfg, self.handler)
        if t.ok:
            with self.lock:
                self.live.add(str(t.value))
        if record is not None:
            return record(t), cfg
        if not t.ok:
            raise StopLifecycle(t.error)
        return str(t.value), cfg

    def lifecycle(self, turn: Turn) -> Outcome:
        record = Record()
        done = record.done
        problem, check = "", "workload-ran"
        made: list[str] = []

        try:
            # critest's pod benchmark: a pod alone.
            pod, _ = self._run("PodSandbox-for-creating-performance-test-", record)
            made.append(pod)
            record(self.client.pod_sandbox_status(pod, verbose=True))
            record(self.client.stop_pod_sandbox(pod))
            record(self.client.remove_pod_sandbox(pod))
            made.remove(pod)
            self._forget(pod)
            # critest's container benchmark: in a pod made untimed.
            holder, holder_cfg = self._run("create-PodSandbox-for-container-", None)
            made.append(holder)
            cfg = critest.container_config(self.image_ref)
            cid = record(self.client.create_container_as_critest(holder, cfg, holder_cfg, self.image_ref))
            record(self.client.start_container(cid))
            status = record(self.client.timed_container_status(cid, verbose=True))
            if not critest.running(status.status):
                problem, check = f"container {cid[:12]} not running after start", "workload-running"
                raise StopLifecycle
            record(self.client.stop_container(cid, critest.STOP_TIMEOUT_S))
            after = self.client.container_status(cid)
            if not critest.exited(after):
                problem, check = f"container {cid[:12]} not exited after stop", "workload-exited"
                raise StopLifecycle
            record(self.client.remove_container(cid))
        except StopLifecycle as exc:
            if str(exc) and not problem:
                problem = str(exc)
        finally:
            for sandbox_id in made:
                self._remove(sandbox_id)
        return Outcome(done, problem, check)

    def calls(self) -> dict[str, tuple[float, float]]:
        return self.client.log.snapshot()

    def _forget(self, sandbox_id: str) -> None:
        with self.lock:
            self.live.discard(sandbox_id)

    def _remove(self, sandbox_id: str) -> None:
        errors = self.client.remove_pod(sandbox_id)
        self._forget(sandbox_id)
        if errors:
            self.notes.append(f"clean-up of pod {sandbox_id[:12]} on {self.pair}: {'; '.join(errors)}")

    def close(self) -> None:
        try:
            with self.lock:
                left = list(self.live)
            for sandbox_id in left:
                self._remove(sandbox_id)
            if left:
                self.notes.append(f"removed {len(left)} pod(s) of level {self.name} on {self.pair} at the end")
        finally:
            self.client.close()


def _accepts(path: Path) -> bool:
    """Whether a unix socket takes connections: its file appears at bind(), before listen() (a
    client in between is refused, as eight agents starting at once found)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class NullLevel(Level):
    """Levels cri-critest and critest against nullcri, interleaved; then the null-target limit."""

    name = "nullcri"
    ops = critest.OPS
    per = "node"
    group: ClassVar[str | None] = None
    needs_target: ClassVar[bool] = False  # the null CRI server stands in for every stack

    def __init__(self, ctx: Context, binary: str, image_ref: str, name: str = "nullcri") -> None:
        self.ctx, self.binary, self.image_ref = ctx, binary, image_ref
        self.target = None
        self.dir = ctx.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "nullcri.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def applies(cls, target: Target) -> str:
        return ""

    @classmethod
    def planned(cls, scen: Scenario) -> int:
        return 2 * len(scen.concurrency) * (scen.warmup + scen.iterations)

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> NullLevel:
        return cls.make(ctx)

    @classmethod
    def make(cls, ctx: Context, name: str = "nullcri") -> NullLevel:
        """The level with its own directory `name` under the work dir; ComponentError without nullcri."""
        binary = os.environ.get("HOPBENCH_NULLCRI", NULLCRI)
        if not os.access(binary, os.X_OK):
            raise ComponentError(f"nullcri not found at {binary}: provision the node (hopbench provision)")
        images = [t.stack.workload_image for t in ctx.targets if t.stack is not None]
        return cls(ctx, binary, images[0] if images else "localhost/hopbench/workload:1", name)

    def lifecycle(self, turn: Turn) -> Outcome:
        raise UnsupportedOp(
            "level nullcri runs levels cri-critest and critest against nullcri; no lifecycle of its own"
        )

    def null_target(self) -> Target:
        handler = stacks.Handler("none", "", "")
        stack = stacks.Stack(
            name="null",
            cri_endpoint=f"unix://{self.socket}",
            daemons=(),
            handlers={"none": handler},
            pause_image="",
            workload_image=self.image_ref,
            description_path="",
            kind="null",
            version="0.1.0",
        )
        return Target(stack, handler)

    def start(self) -> None:
        log = open(self.dir / "nullcri.log", "wb")  # noqa: SIM115 - nullcri writes it while it runs
        argv = [self.binary, "--listen", str(self.socket), "--image", self.image_ref]
        self.proc = subprocess.Popen(
            with_parent_death_signal(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise ComponentError(f"nullcri exited {self.proc.returncode}: {(self.dir / 'nullcri.log').read_text()}")
            if _accepts(self.socket):
                return
            time.sleep(0.01)
        raise ComponentError("nullcri did not listen within 10 s")

    def run(self, schedule: Any) -> None:
        from bench.node import schedule as sched

        self.start()
        self.ctx.emit(Tool(name="nullcri", version="0.1.0"))
        target = self.null_target()
        units = [sched.Unit(CriCritestLevel, target), sched.Unit(CritestLevel, target)]
        seed = self.ctx.scen.seed if self.ctx.scen.seed is not None else 0
        sched.interleave(units, self.ctx, random.Random(f"{seed}/null"))  # noqa: S311 - an order, replayable
        if not self.ctx.stopped:
            self.limit(target)

    def limit(self, target: Target) -> None:
        """cri-critest lifecycles back to back for LIMIT_S from this thread on one core, nullcri on another."""
        cpus = sorted(os.sched_getaffinity(0))
        level = CriCritestLevel(target, target.stack, self.ctx)  # type: ignore[arg-type]
        pinned = len(cpus) >= 2 and self.proc is not None
        try:
            if pinned:
                os.sched_setaffinity(self.proc.pid, {cpus[-1]})  # type: ignore[union-attr]
                os.sched_setaffinity(0, {cpus[0]})  # this thread only (Linux: pid 0 is the caller)
            ops = lifecycles = 0
            start = time.monotonic()
            while time.monotonic() - start < LIMIT_S and not self.ctx.stopped:
                out = level.lifecycle(Turn(lifecycles))
                ops += sum(1 for t in out.timed if t.ok)
                lifecycles += 1
            elapsed = time.monotonic() - start
        finally:
            if pinned:
                os.sched_setaffinity(0, set(cpus))
            level.close()
        figure = {
            "ops": ops,
            "lifecycles": lifecycles,
            "seconds": elapsed,
            "ops_per_s": ops / elapsed if elapsed > 0 else 0.0,
            "pinned": pinned,
            "client_cpu": cpus[0] if pinned else None,
            "server_cpu": cpus[-1] if pinned else None,
        }
        self.ctx.emit(Artifact(name="null/limit.json", content=json.dumps(figure, indent=2)))
        self.ctx.emit(
            Info(
                message=f"null: {figure['ops_per_s']:.0f} CRI ops/s against nullcri from one client thread"
                + (f" on CPU {cpus[0]} (nullcri on CPU {cpus[-1]})" if pinned else " (not pinned: one CPU)")
            )
        )

    def stop(self) -> None:
        """Stop nullcri, by its PID."""
        if self.proc is not None and terminate(self.proc, 10):
            self.notes.append("nullcri did not stop on SIGTERM within 10 s: killed")

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            log = (self.dir / "nullcri.log").read_text(errors="replace")[-20_000:]
            self.ctx.emit(Artifact(name="null/nullcri.log", content=log))


PROBE_LIFECYCLES = 40
PROBE_WARMUP = 5


def probe_overhead(ctx: Context) -> None:
    """Every run's harness figure: level cri-critest's lifecycles against nullcri for a moment
    (PROBE_LIFECYCLES after PROBE_WARMUP), p50 and p90 per op in meta.json's settings. Skipped,
    and said, where nullcri is not installed."""
    try:
        null = NullLevel.make(ctx, "nullcri-probe")
    except ComponentError as exc:
        ctx.emit(Info(message=f"harness overhead not measured: {exc}"))
        return
    per_op: dict[str, list[int]] = {}
    try:
        null.start()
        target = null.null_target()
        level = CriCritestLevel(target, target.stack, ctx)  # type: ignore[arg-type]
        try:
            for i in range(PROBE_WARMUP + PROBE_LIFECYCLES):
                out = level.lifecycle(Turn(i))
                if i >= PROBE_WARMUP:
                    for t in out.timed:
                        if t.ok:
                            per_op.setdefault(t.op, []).append(t.duration_ns)
        finally:
            level.close()
    except (ComponentError, OSError) as exc:
        ctx.emit(Info(message=f"harness overhead not measured: {type(exc).__name__}: {exc}"))
        return
    finally:
        null.stop()
    value = {
        op: {
            "n": len(ns),
            "p50_us": sorted(ns)[len(ns) // 2] / 1000,
            "p90_us": sorted(ns)[int(len(ns) * 0.9)] / 1000,
        }
        for op, ns in per_op.items()
    }
    ctx.emit(
        Setting(
            target=f"harness@{ctx.job.node}",
            name="null_cri_overhead",
            value=value,
            why="hopbench's CRI client (critest's requests) against nullcri, which answers at once: the client's "
            "own cost per op on this node, measured at the start of the run",
        )
    )
