"""The node agent: runs a job next to the runtimes and streams events back as JSON lines.

Started by a transport (in-process subprocess for the local node, over SSH for lab nodes)
as `python -m bench.agent`; reads one job (JSON) on stdin, writes one JSON object per
line on stdout: hello, meta, plan, sample, check, lifecycle, warning, error, done.
Timing happens here, on the node's monotonic clock; the channel back never sits inside a
timed interval.

The agent owns clean-up: every pod it creates carries the run's label; on SIGTERM,
SIGINT, a closed stdout (the controller went away) or any error it stops creating pods,
removes the ones it made and sweeps any left with its run label. One agent runs on a
node at a time (a lock under /run/hopbench); leftovers of a crashed earlier run (pods
labelled io.hopbench/managed) are removed before measuring and reported.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench import __version__, hyperfine, kubelet, memory, nodeinfo, split, stacks
from bench.levels import Timed, cli
from bench.levels.cli import CliCommand
from bench.levels.containerd import CONTAINERD_LIFECYCLE_OPS, ContainerdLevel
from bench.levels.cri import CheckFailed, CriClient, remove_pod_files
from bench.levels.engine import ENGINE_LIFECYCLE_OPS, EngineLevel
from bench.levels.oci import OCI_LIFECYCLE_OPS, OciRuntime
from bench.scenario import HANDLERS

LOCK_PATH = "/run/hopbench/agent.lock"


class Emitter:
    """Thread-safe JSON-lines writer; remembers when the reader has gone away."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self.lock:
            if self.closed.is_set():
                return
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed.set()


def emit_sample(
    emit: Emitter,
    job: dict[str, Any],
    where: tuple[str, str, str],
    t: Timed[Any],
    iteration: int,
    concurrency: int,
    worker: int,
    warmup: bool,
) -> None:
    """One timed op as a sample row; `where` is (stack, handler, level)."""
    stack, handler, level = where
    emit(
        "sample",
        run_id=job["run_id"],
        node=job["node"],
        stack=stack,
        handler=handler,
        level=level,
        op=t.op,
        iteration=iteration,
        concurrency=concurrency,
        worker=worker,
        warmup=warmup,
        start_ns=t.start_ns,
        duration_ns=t.duration_ns,
        ok=t.ok,
        error=t.error or "",
    )


@dataclass
class Target:
    stack: stacks.Stack
    handler: stacks.Handler

    @property
    def name(self) -> str:
        return f"{self.stack.name}/{self.handler.name}"


def stack_status(stack: stacks.Stack, timeout_s: float) -> tuple[bool, str, dict[str, str]]:
    """Is the stack usable now? (available, reason, component versions)."""
    versions: dict[str, str] = {}
    if stack.unavailable:
        return False, stack.unavailable, versions
    for daemon in stack.daemons:
        versions[daemon.name] = stacks.command_version(daemon.version_cmd)
        if daemon.pid() is None:
            return (
                False,
                f"{daemon.name} is not running (no live process for {daemon.pidfile}); run hopbench provision",
                versions,
            )
    client = CriClient(stack.cri_endpoint, timeout_s)
    try:
        v = client.version()
        versions["cri"] = f"{v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})"
    except Exception as exc:  # noqa: BLE001 - an unreachable daemon makes the stack unavailable
        return False, f"CRI at {stack.cri_endpoint} does not answer: {exc}", versions
    finally:
        client.close()
    return True, "", versions


def preflight(target: Target, timeout_s: float) -> str:
    """Start and remove one pod sandbox, untimed: the reason the target cannot run pods, or ''.

    A handler can pass its provisioning probe (the OCI runtime alone) and still fail inside
    the stack, e.g. containerd-shim-runsc-v1 insists on an oom_score_adj the host forbids.
    """
    pod = kubelet.Pod(name=f"hb-preflight-{os.getpid()}", run_id=f"preflight-{os.getpid()}")
    pod.prepare()
    client = CriClient(target.stack.cri_endpoint, timeout_s)
    try:
        t = client.run_pod_sandbox(kubelet.sandbox_config(pod), target.handler.runtime_handler)
        if t.ok and t.value:
            errors = client.remove_pod(t.value)
            return "; ".join(errors)
        return t.error or "RunPodSandbox returned no id"
    finally:
        client.close()
        remove_pod_files(pod)


def match_targets(wanted: list[str], found: list[stacks.Stack]) -> list[tuple[str, stacks.Stack | None, str]]:
    """The scenario's target patterns as (target name, stack instance or None, handler), in order.

    `all` is every handler of every default instance, `all@*` every handler of every instance,
    `STACK/HANDLER` the stack's default instance, `STACK@VERSION/HANDLER` every instance whose
    version matches VERSION (exact or an fnmatch pattern). A pattern that matches no instance
    comes back once with None, so the report can say it is not provisioned.
    """
    out: list[tuple[str, stacks.Stack | None, str]] = []
    seen: set[str] = set()

    def add(name: str, stack: stacks.Stack | None, handler: str) -> None:
        if name not in seen:
            seen.add(name)
            out.append((name, stack, handler))

    for pattern in wanted:
        if pattern in ("all", "all@*"):
            for s in found:
                if pattern == "all@*" or s.default:
                    for h in s.handlers or HANDLERS:
                        add(f"{s.name}/{h}", s, h)
            continue
        stack_part, handler = pattern.split("/")
        kind, at, version = stack_part.partition("@")
        matched = [
            s
            for s in found
            if (s.kind or s.name) == kind and (fnmatch.fnmatchcase(s.version, version) if at else s.default)
        ]
        for s in matched:
            add(f"{s.name}/{handler}", s, handler)
        if not matched:
            add(pattern, None, handler)
    return out


def resolve_targets(wanted: list[str], found: list[stacks.Stack], timeout_s: float, emit: Emitter) -> list[Target]:
    """Match the scenario's targets to the node's stacks; report every one, available or not."""
    status = {s.name: stack_status(s, timeout_s) for s in found}
    targets: list[Target] = []
    report = []
    for pair, stack, handler_name in match_targets(wanted, found):
        stack_name = pair.split("/")[0]
        if stack is None:
            report.append(
                {
                    "target": pair,
                    "stack": stack_name,
                    "kind": stacks.kind_of(stack_name),
                    "version": "",
                    "default": False,
                    "handler": handler_name,
                    "available": False,
                    "reason": f"stack {stack_name} is not provisioned on this node",
                }
            )
            continue
        ok, reason, versions = status[stack_name]
        handler = stack.handlers.get(handler_name)
        if not ok:
            pass  # the stack's own reason comes first
        elif handler is None:
            ok, reason = False, f"handler {handler_name} is not configured for {stack_name}"
        elif not handler.available:
            ok, reason = False, handler.reason or f"{handler_name} is unavailable on {stack_name}"
        if handler is not None and handler.version_cmd:
            versions = {**versions, handler_name: stacks.command_version(handler.version_cmd)}
        report.append(
            {
                "target": pair,
                "stack": stack_name,
                "kind": stack.kind or stack.name,
                "version": stack.version,
                "default": stack.default,
                "handler": handler_name,
                "available": ok,
                "reason": reason,
                "versions": versions,
                "stack_extra": stack.extra,
                "handler_extra": handler.extra if handler is not None else {},
            }
        )
        if ok and handler is not None:
            target = Target(stack, handler)
            problem = preflight(target, timeout_s)
            if problem:
                report[-1].update(available=False, reason=f"preflight pod failed: {problem}")
            else:
                targets.append(target)
    emit("targets", targets=report)
    return targets


class PodRunner:
    """Runs pod lifecycles on one target; every created pod is tracked until it is gone.

    Level "cri" times the kubelet's CRI calls. Level "split" runs the same lifecycles with
    the runtime wrappers' trace on (`trace`), and cuts each op into parts (bench.split).
    """

    def __init__(
        self,
        target: Target,
        job: dict[str, Any],
        emit: Emitter,
        level: str = "cri",
        trace: split.TraceReader | None = None,
    ) -> None:
        scen = job["scenario"]
        self.target, self.emit = target, emit
        self.level, self.trace = level, trace
        self.job = job
        self.run_id: str = job["run_id"]
        self.client = CriClient(target.stack.cri_endpoint, float(scen["timeout_s"]))
        self.workload = scen["workload"]
        self.image_ref = target.stack.workload_image
        self.image_id = self.client.image_id(self.image_ref)
        self.live: dict[str, kubelet.Pod] = {}
        self.lock = threading.Lock()

    def sample(self, t: Timed[Any], iteration: int, concurrency: int, worker: int, warmup: bool) -> None:
        where = (self.target.stack.name, self.target.handler.name, self.level)
        emit_sample(self.emit, self.job, where, t, iteration, concurrency, worker, warmup)

    def emit_split(
        self,
        windows: list[split.OpWindow],
        ids: dict[str, str],
        iteration: int,
        concurrency: int,
        worker: int,
        warmup: bool,
    ) -> None:
        """Each op of one lifecycle cut into parts, and every traced call of the lifecycle."""
        if self.trace is None:
            return
        calls = self.trace.take(set(ids.values()))
        by_op = split.attribute(windows, calls)
        common = {
            "run_id": self.run_id,
            "node": self.job["node"],
            "stack": self.target.stack.name,
            "handler": self.target.handler.name,
            "iteration": iteration,
            "concurrency": concurrency,
            "worker": worker,
            "warmup": warmup,
        }
        role = {v: k for k, v in ids.items() if v}
        op_of = {id(c): windows[i].op for i, cs in by_op.items() for c in cs}
        for c in calls:
            self.emit(
                "call",
                **common,
                op=op_of.get(id(c), ""),
                kind=c.kind,
                command=c.command,
                object=role.get(c.object_id, ""),
                entry_ns=c.entry_ns,
                fork_ns=c.fork_ns,
                exit_ns=c.exit_ns,
                status=c.status,
            )
        for i, w in enumerate(windows):
            mine = by_op.get(i, [])
            cut = split.parts(w, mine)
            self.emit(
                "split",
                **common,
                op=w.op,
                start_ns=w.start_ns,
                duration_ns=w.end_ns - w.start_ns,
                calls=" ".join(f"{c.kind}:{c.command}" for c in mine),
                **{f"{k}_ns": v for k, v in cut.items()},
            )

    def _new_pod(self, tag: str) -> kubelet.Pod:
        pod = kubelet.Pod(
            name=f"hb-{self.run_id[-8:]}-{tag}".lower(),
            run_id=self.run_id,
            grace_period_s=int(self.workload["stop_timeout_s"]),
        )
        pod.prepare()
        return pod

    def _start(self, pod: kubelet.Pod, record: Callable[[Timed[Any]], Any], ids: dict[str, str]) -> None:
        """RunPodSandbox, CreateContainer, StartContainer, each through `record` (which raises on a
        failed op); `ids` gets the sandbox and container ids as they come, the pod is tracked as live."""
        sandbox_cfg = kubelet.sandbox_config(pod)
        ids["sandbox"] = record(self.client.run_pod_sandbox(sandbox_cfg, self.target.handler.runtime_handler))
        with self.lock:
            self.live[ids["sandbox"]] = pod
        cfg = kubelet.container_config(
            pod, self.image_id, self.image_ref, list(self.workload["command"]), list(self.workload["args"])
        )
        ids["container"] = record(self.client.create_container(ids["sandbox"], cfg, sandbox_cfg))
        record(self.client.start_container(ids["container"]))

    def lifecycle(self, iteration: int, concurrency: int, worker: int, warmup: bool) -> bool:
        pod = self._new_pod(f"{concurrency}-{iteration}")
        removed = False
        check: tuple[str, str] | None = None
        windows: list[split.OpWindow] = []
        ids = {"sandbox": "", "container": ""}

        def record(t: Timed[Any]) -> Any:
            self.sample(t, iteration, concurrency, worker, warmup)
            if not t.ok:
                raise _OpFailed(t)
            windows.append(split.OpWindow(t.op, t.start_ns, t.start_ns + t.duration_ns))
            return t.value

        try:
            self._start(pod, record, ids)
            sandbox_id, container_id = ids["sandbox"], ids["container"]
            try:
                self.client.wait_running_with_output(container_id)
            except CheckFailed as exc:
                check = ("workload-running", str(exc))
                raise
            record(self.client.stop_container(container_id, pod.grace_period_s))
            try:
                self.client.check_exited_cleanly(container_id)
            except CheckFailed as exc:
                check = ("workload-exited", str(exc))
                raise
            self.emit(
                "check",
                target=self.target.name,
                iteration=iteration,
                concurrency=concurrency,
                check="workload-ran",
                ok=True,
                detail="",
            )
            record(self.client.remove_container(container_id))
            record(self.client.stop_pod_sandbox(sandbox_id))
            record(self.client.remove_pod_sandbox(sandbox_id))
            with self.lock:
                self.live.pop(sandbox_id, None)
            removed = True
            return True
        except (_OpFailed, CheckFailed) as exc:
            if check is not None:
                self.emit(
                    "check",
                    target=self.target.name,
                    iteration=iteration,
                    concurrency=concurrency,
                    check=check[0],
                    ok=False,
                    detail=check[1],
                )
            self.emit("warning", message=f"{self.target.name} iteration {iteration}: {exc}")
            return False
        finally:
            if ids["sandbox"] and not removed:
                self.cleanup(ids["sandbox"])
            remove_pod_files(pod)
            if self.trace is not None:
                self.emit_split(windows, ids, iteration, concurrency, worker, warmup)

    def start_pod(self, index: int) -> str:
        """Start one pod and leave it running (level density): the sandbox id, or '' when it failed.

        RunPodSandbox, CreateContainer and StartContainer are timed (iteration = pods already
        running), then the workload must be running with its ready line."""
        pod = self._new_pod(f"d{index}")
        ids = {"sandbox": "", "container": ""}

        def record(t: Timed[Any]) -> Any:
            self.sample(t, index, 1, 0, False)
            if not t.ok:
                raise _OpFailed(t)
            return t.value

        try:
            self._start(pod, record, ids)
            self.client.wait_running_with_output(ids["container"])
            self.emit(
                "check",
                target=self.target.name,
                iteration=index,
                concurrency=1,
                check="workload-running",
                ok=True,
                detail="",
            )
            return ids["sandbox"]
        except (_OpFailed, CheckFailed) as exc:
            self.emit("warning", message=f"{self.target.name} density pod {index}: {exc}")
            if ids["sandbox"]:
                self.cleanup(ids["sandbox"])
            else:
                remove_pod_files(pod)
            return ""

    def cleanup(self, sandbox_id: str) -> None:
        errors = self.client.remove_pod(sandbox_id)
        with self.lock:
            pod = self.live.pop(sandbox_id, None)
        if pod is not None:
            remove_pod_files(pod)
        if errors:
            self.emit(
                "warning", message=f"clean-up of pod {sandbox_id[:12]} on {self.target.name}: {'; '.join(errors)}"
            )

    def cleanup_all(self) -> int:
        with self.lock:
            ids = list(self.live)
        for sandbox_id in ids:
            self.cleanup(sandbox_id)
        # Anything else of this run on this node (e.g. a sandbox whose RunPodSandbox timed out).
        mine = {kubelet.RUN_LABEL: self.run_id, kubelet.NODE_LABEL: str(self.job["node"])}
        leftovers = [s.id for s in self.client.sandboxes(mine)]
        for sandbox_id in leftovers:
            self.cleanup(sandbox_id)
        return len(ids) + len(leftovers)


class _OpFailed(Exception):
    def __init__(self, t: Timed[Any]) -> None:
        super().__init__(f"{t.op} failed: {t.error}")
        self.timed = t


def sweep_leftovers(target: Target, timeout_s: float, emit: Emitter) -> None:
    """Remove pods a crashed earlier run left behind (label io.hopbench/managed)."""
    client = CriClient(target.stack.cri_endpoint, timeout_s)
    try:
        for sandbox in client.sandboxes({kubelet.MANAGED_LABEL: "true"}):
            if kubelet.agent_alive(sandbox.labels.get(kubelet.AGENT_LABEL, "")):
                continue  # another agent's pod, being measured right now
            run = sandbox.labels.get(kubelet.RUN_LABEL, "?")
            errors = client.remove_pod(sandbox.id)
            emit(
                "warning",
                message=f"removed pod {sandbox.metadata.name} left by run {run} on {target.stack.name}"
                + (f" with errors: {'; '.join(errors)}" if errors else ""),
            )
    finally:
        client.close()


def run_level(
    name: str,
    lifecycle: Callable[[int, int, int, bool], bool],
    concurrency: int,
    scen: dict[str, Any],
    emit: Emitter,
    stop: threading.Event,
) -> bool:
    """Run warm-up plus measured lifecycles with `concurrency` workers; False if the target was abandoned."""
    work: queue.Queue[int] = queue.Queue()
    for i in range(scen["warmup"] + scen["iterations"]):
        work.put(i)
    abandon = threading.Event()
    failures = 0
    lock = threading.Lock()

    def worker(wid: int) -> None:
        nonlocal failures
        while not (stop.is_set() or abandon.is_set() or emit.closed.is_set()):
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            ok = lifecycle(i, concurrency, wid, i < scen["warmup"])
            emit("lifecycle", target=name, concurrency=concurrency, iteration=i, ok=ok)
            if not ok:
                with lock:
                    failures += 1
                    if failures >= scen["max_failures"] and not abandon.is_set():
                        abandon.set()
                        emit(
                            "error",
                            target=name,
                            message=f"{failures} failed lifecycles at concurrency {concurrency}: target abandoned",
                        )

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return not abandon.is_set()


def run_target(target: Target, job: dict[str, Any], emit: Emitter, stop: threading.Event, level: str = "cri") -> None:
    """CRI lifecycles on one target: level "cri", or "split" with the runtime calls traced."""
    scen = job["scenario"]
    trace = None
    if level == "split":
        trace = split.TraceReader(str(target.stack.extra["trace_path"]))
        trace.arm()
    runner = PodRunner(target, job, emit, level, trace)
    try:
        for concurrency in scen["concurrency"]:
            if not run_level(target.name, runner.lifecycle, concurrency, scen, emit, stop) or stop.is_set():
                break
    finally:
        n = runner.cleanup_all()
        if n:
            emit("warning", message=f"removed {n} pod(s) of this run on {target.name} at the end")
        runner.client.close()
        if trace is not None:
            trace.disarm()
            if trace.bad_lines:
                emit("warning", message=f"{trace.bad_lines} unreadable line(s) in the call trace {trace.path}")


def oci_handlers(wanted: list[str], found: list[stacks.Stack]) -> list[stacks.Handler]:
    """The OCI runtimes the oci level measures: every probed, working handler the scenario names."""
    every = "all" in wanted or "all@*" in wanted
    names = {pair.split("/")[1] for pair in wanted if "/" in pair}
    chosen: dict[str, stacks.Handler] = {}
    for stack in found:
        for h in stack.handlers.values():
            if h.available and h.binary and (every or h.name in names):
                chosen.setdefault(h.name, h)
    return list(chosen.values())


def run_driver(
    where: tuple[str, str, str],
    driver: Callable[[str], tuple[list[Timed[Any]], str]],
    ops: tuple[str, ...],
    job: dict[str, Any],
    emit: Emitter,
    stop: threading.Event,
) -> None:
    """Lifecycles of a level driver (engine, containerd, oci) at every concurrency of the scenario.

    `driver(tag)` runs one lifecycle and returns its timed ops and the workload check's
    failure ('' when the workload behaved); a lifecycle is good when all `ops` succeeded.
    """
    scen = job["scenario"]
    stack, handler, level = where
    name = f"{stack}/{handler}"

    def lifecycle(i: int, conc: int, wid: int, warmup: bool) -> bool:
        results, problem = driver(f"{conc}-{i}")
        for t in results:
            emit_sample(emit, job, where, t, i, conc, wid, warmup)
        complete = len(results) == len(ops) and all(t.ok for t in results)
        if complete or problem:
            emit(
                "check",
                target=name,
                level=level,
                iteration=i,
                concurrency=conc,
                check="workload-ran",
                ok=complete and not problem,
                detail=problem,
            )
        if not complete and results and not results[-1].ok:
            emit("warning", message=f"{name} level {level} iteration {i}: {results[-1].op} failed: {results[-1].error}")
        return complete and not problem

    for concurrency in scen["concurrency"]:
        if not run_level(f"{name} ({level})", lifecycle, concurrency, scen, emit, stop) or stop.is_set():
            break


def run_oci(handler: stacks.Handler, job: dict[str, Any], emit: Emitter, stop: threading.Event, workdir: Path) -> None:
    """Lifecycles of the runtime binary itself (level oci), at every concurrency of the scenario."""
    scen = job["scenario"]
    runtime = OciRuntime(
        handler.binary,
        list(handler.extra.get("args", [])),
        workdir / handler.name,
        _archive(job),
        float(scen["timeout_s"]),
    )
    try:
        run_driver(("none", handler.name, "oci"), runtime.lifecycle, OCI_LIFECYCLE_OPS, job, emit, stop)
    finally:
        errors = runtime.cleanup()
        if errors:
            emit("warning", message=f"clean-up of none/{handler.name}: {'; '.join(errors)}")


def _archive(job: dict[str, Any]) -> str:
    return str(job.get("workload_archive", "/var/lib/hopbench/images/workload.oci.tar"))


def level_applies(level: str, target: Target) -> str:
    """'' when `level` can run on `target`, else why not (said once in the run's events)."""
    if level == "engine" and not target.stack.extra.get("docker_endpoint"):
        return f"level engine needs dockerd: stack {target.stack.name} has no Docker Engine API"
    if level == "containerd" and not target.stack.extra.get("containerd_level"):
        return f"level containerd: stack {target.stack.name} runs no containerd"
    if level == "containerd" and not (target.handler.extra.get("wrapper") or target.handler.binary):
        return f"level containerd: no runtime binary known for {target.name}"
    if level == "split" and not (target.stack.extra.get("trace_path") and target.handler.extra.get("wrapper")):
        return f"level split: {target.name} does not run its runtime through the timing wrapper (re-provision)"
    return ""


def run_engine(target: Target, job: dict[str, Any], emit: Emitter, stop: threading.Event, workdir: Path) -> None:
    scen = job["scenario"]
    level = EngineLevel(
        str(target.stack.extra["docker_endpoint"]),
        target.stack.pause_image,
        scen["workload"],
        target.stack.workload_image,
        job["run_id"],
        float(scen["timeout_s"]),
    )
    try:
        where = (target.stack.name, target.handler.name, "engine")
        run_driver(where, level.lifecycle, ENGINE_LIFECYCLE_OPS, job, emit, stop)
    finally:
        n, errors = level.cleanup()
        if n or errors:
            emit(
                "warning", message=f"engine level on {target.name}: removed {n} container(s) at the end {errors or ''}"
            )
        level.close()


def run_containerd(target: Target, job: dict[str, Any], emit: Emitter, stop: threading.Event, workdir: Path) -> None:
    scen = job["scenario"]
    conf = target.stack.extra["containerd_level"]
    level = ContainerdLevel(
        str(conf["endpoint"]),
        str(conf.get("rootfs", "snapshot")),
        str(target.handler.extra.get("wrapper") or target.handler.binary),
        _archive(job),
        workdir / f"containerd-{target.stack.name}",
        job["run_id"],
        float(scen["timeout_s"]),
        str(conf.get("snapshotter", "overlayfs")),
    )
    try:
        n, errors = level.cleanup(all_runs=True)
        if n:
            emit("warning", message=f"containerd level on {target.name}: removed {n} container(s) left by earlier runs")
        where = (target.stack.name, target.handler.name, "containerd")
        run_driver(where, level.lifecycle, CONTAINERD_LIFECYCLE_OPS, job, emit, stop)
    finally:
        n, errors = level.cleanup()
        if n or errors:
            emit(
                "warning",
                message=f"containerd level on {target.name}: removed {n} container(s) at the end {errors or ''}",
            )
        level.close()


def run_cri(target: Target, job: dict[str, Any], emit: Emitter, stop: threading.Event, workdir: Path) -> None:
    run_target(target, job, emit, stop, "cri")


def run_split(target: Target, job: dict[str, Any], emit: Emitter, stop: threading.Event, workdir: Path) -> None:
    run_target(target, job, emit, stop, "split")


def run_density(target: Target, job: dict[str, Any], emit: Emitter, stop: threading.Event, workdir: Path) -> None:
    """Fill the node with running pods step by step, sampling memory all along; tear all down at the end.

    Memory is sampled at 0 pods first (the daemons' baseline), then while pods start ("ramp")
    and while each step's pods run ("hold"). Every pod is removed at the end, also when the
    run is interrupted or a pod fails.
    """
    scen = job["scenario"]
    dens = scen["density"]
    runner = PodRunner(target, job, emit, "density")
    where = {"run_id": job["run_id"], "node": job["node"], "target": target.name, "handler": target.handler.name}

    def on_sweep(rows: list[dict[str, Any]]) -> None:
        emit("memory", rows=[{**where, **r} for r in rows])

    sampler = memory.Sampler(memory.Classifier([target.stack]), float(dens["interval_s"]), on_sweep)
    running: list[str] = []

    def hold(step: int) -> None:
        sampler.set_labels(step=step, pods_running=len(running), phase="hold")
        stop.wait(float(dens["hold_s"]))

    failures = 0
    sampler.set_labels(step=0, pods_running=0, phase="hold")
    sampler.start()
    try:
        hold(0)
        for step in dens["steps"]:
            while len(running) < step and not (stop.is_set() or emit.closed.is_set()):
                sampler.set_labels(step=step, pods_running=len(running), phase="ramp")
                sandbox_id = runner.start_pod(len(running))
                emit("lifecycle", target=target.name, concurrency=1, iteration=len(running), ok=bool(sandbox_id))
                if sandbox_id:
                    running.append(sandbox_id)
                else:
                    failures += 1
                    if failures >= scen["max_failures"]:
                        emit("error", target=target.name, message=f"density: {failures} pods failed to start")
                        return
            if stop.is_set() or emit.closed.is_set():
                return
            hold(step)
    finally:
        sampler.stop()
        emit("sampler", target=target.name, stats=sampler.stats())
        n = runner.cleanup_all()
        emit("info", target=target.name, message=f"density: removed the {n} pod(s) it started on {target.name}")
        runner.client.close()


# The levels run per target, in this order. A new level (e.g. "kube": pods through a real API
# server and kubelet, lab only) is one more function of this shape and one more entry here
# and in bench.scenario.LEVELS.
TARGET_LEVELS: dict[str, Callable[[Target, dict[str, Any], Emitter, threading.Event, Path], None]] = {
    "cri": run_cri,
    "split": run_split,
    "engine": run_engine,
    "containerd": run_containerd,
    "density": run_density,
}


def run_cli(commands: list[CliCommand], job: dict[str, Any], emit: Emitter, stop: threading.Event) -> None:
    """Time each command with hyperfine; one failing command is reported and the rest go on."""
    scen = job["scenario"]
    for cmd in commands:
        if stop.is_set() or emit.closed.is_set():
            return
        target = f"{cmd.stack}/{cmd.handler}"
        start = time.monotonic_ns()
        try:
            result, raw = hyperfine.run(cmd.bench, scen["iterations"], scen["warmup"], stop=stop)
        except hyperfine.HyperfineError as exc:
            emit("error", target=target, message=f"cli {cmd.bench.name}: {exc}")
            emit("lifecycle", target=target, concurrency=1, iteration=-1, ok=False)
            continue
        emit(
            "artifact", name=f"hyperfine/{cmd.stack}-{cmd.handler}-{cmd.bench.name.replace(' ', '-')}.json", content=raw
        )
        for i, (seconds, code) in enumerate(zip(result.times_s, result.exit_codes, strict=False)):
            error = None if code in (0, None) else f"exit status {code}"
            t: Timed[None] = Timed(cmd.bench.name, start, round(seconds * 1e9), None, error)
            emit_sample(emit, job, (cmd.stack, cmd.handler, "cli"), t, i, 1, 0, False)
        emit("lifecycle", target=target, concurrency=1, iteration=-1, ok=True)


def cli_commands(targets: list[Target], job: dict[str, Any], workdir: Path) -> list[CliCommand]:
    """The cli-level commands of every target, then one `RUNTIME run` per available OCI runtime."""
    commands: list[CliCommand] = []
    handlers: dict[str, stacks.Handler] = {}
    for target in targets:
        client = CriClient(target.stack.cri_endpoint, float(job["scenario"]["timeout_s"]))
        try:
            image_id = client.image_id(target.stack.workload_image)
        finally:
            client.close()
        commands += cli.stack_commands(target.stack, target.handler, job["run_id"], workdir, image_id)
        if target.handler.binary:
            handlers.setdefault(target.handler.name, target.handler)
    archive = job.get("workload_archive", "/var/lib/hopbench/images/workload.oci.tar")
    commands += [cli.oci_command(h, workdir, archive) for h in handlers.values()]
    return commands


@contextmanager
def node_lock(path: str = LOCK_PATH) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another hopbench agent runs on this node (lock {path})") from None
        fh.write(str(os.getpid()))
        fh.flush()
        yield


def watch_stdin(stdin: IO[str], stop: threading.Event, received: list[int], stop_on_eof: bool) -> None:
    """After the job, stdin carries orders: a line "stop" stops the run (how a remote controller
    interrupts); with `stop_on_eof` (SSH), so does the end of stdin: the connection is gone."""

    def watch() -> None:
        for line in stdin:
            if line.strip() == "stop":
                received.append(signal.SIGTERM)
                stop.set()
                return
        if stop_on_eof:
            received.append(signal.SIGHUP)
            stop.set()

    threading.Thread(target=watch, name="stdin-orders", daemon=True).start()


def heartbeat(emit: Emitter, every_s: float) -> None:
    """A line every `every_s` while the agent lives, so a remote controller can tell quiet from gone."""

    def beat() -> None:
        while not emit.closed.is_set():
            time.sleep(every_s)
            emit("heartbeat")

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


def check_left(job: dict[str, Any], emit: Emitter) -> int:
    """Mode "check": what a run (job["check_run_id"]) left on this node: its pods, per stack."""
    run_id = str(job["check_run_id"])
    left: dict[str, int] = {}
    for stack in stacks.discover(job.get("stacks_dir", stacks.DEFAULT_STACKS_DIR)):
        if stack.unavailable:
            continue
        client = CriClient(stack.cri_endpoint, 10)
        try:
            labels = {kubelet.RUN_LABEL: run_id, kubelet.NODE_LABEL: str(job["node"])}
            left[stack.name] = len(client.sandboxes(labels))
        except Exception as exc:  # noqa: BLE001 - a stack that does not answer is reported, not fatal
            emit("warning", message=f"check on {stack.name}: {type(exc).__name__}: {exc}")
        finally:
            client.close()
    emit("left", run_id=run_id, pods=left)
    emit("done", ok=True, interrupted=False)
    return 0


def main(stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    emit = Emitter(stdout)
    stop = threading.Event()

    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only flag here: emitting from a handler could wait on the lock the interrupted code holds.
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    emit("hello", agent_version=__version__, pid=os.getpid())
    try:
        job = json.loads(stdin.readline())
        kubelet.set_node(str(job.get("node", "local")))
        watch_stdin(stdin, stop, received, bool(job.get("stop_on_eof")))
        if job.get("heartbeat_s"):
            heartbeat(emit, float(job["heartbeat_s"]))
        if job.get("mode") == "check":
            return check_left(job, emit)
        scen = job["scenario"]
        with node_lock(job.get("lock_path", LOCK_PATH)):
            emit("meta", node=nodeinfo.collect())
            found = stacks.discover(job.get("stacks_dir", stacks.DEFAULT_STACKS_DIR))
            targets = resolve_targets(scen["targets"], found, float(scen["timeout_s"]), emit)
            if job.get("mode") == "targets":
                emit("done", ok=True, interrupted=False)
                return 0
            per_level = len(scen["concurrency"]) * (scen["warmup"] + scen["iterations"])
            levels = scen.get("levels", ["cri"])
            plan: list[tuple[Target, str]] = []
            for target in targets:
                for level in (lv for lv in TARGET_LEVELS if lv in levels):
                    why_not = level_applies(level, target)
                    if why_not:
                        emit("info", target=target.name, level=level, message=why_not)
                    else:
                        plan.append((target, level))
            runtimes = oci_handlers(scen["targets"], found) if "oci" in levels else []
            pods = max(scen.get("density", {}).get("steps", [0]))
            emit(
                "plan",
                lifecycles=sum(pods if lv == "density" else per_level for _, lv in plan) + per_level * len(runtimes),
                targets=[t.name for t in targets],
                levels=[f"{t.name} {lv}" for t, lv in plan] + [f"none/{h.name} oci" for h in runtimes],
            )
            with tempfile.TemporaryDirectory(prefix="hopbench-levels-") as work:
                swept: set[str] = set()
                for target, level in plan:
                    if stop.is_set() or emit.closed.is_set():
                        break
                    if target.name not in swept:
                        sweep_leftovers(target, float(scen["timeout_s"]), emit)
                        swept.add(target.name)
                    try:
                        TARGET_LEVELS[level](target, job, emit, stop, Path(work))
                    except Exception as exc:  # noqa: BLE001 - one broken target or level must not stop the others
                        emit("error", target=target.name, message=f"level {level}: {type(exc).__name__}: {exc}")
            if "oci" in levels and not stop.is_set():
                with tempfile.TemporaryDirectory(prefix="hopbench-oci-") as work:
                    for handler in runtimes:
                        if stop.is_set() or emit.closed.is_set():
                            break
                        try:
                            run_oci(handler, job, emit, stop, Path(work))
                        except Exception as exc:  # noqa: BLE001 - one broken runtime must not stop the rest
                            emit("error", target=f"none/{handler.name}", message=f"{type(exc).__name__}: {exc}")
            if "cli" in scen.get("levels", []) and targets and not stop.is_set():
                emit("tool", name="hyperfine", version=hyperfine.version(hyperfine.find()))
                with tempfile.TemporaryDirectory(prefix="hopbench-cli-") as work:
                    commands = cli_commands(targets, job, Path(work))
                    emit("plan_add", lifecycles=len(commands))
                    try:
                        run_cli(commands, job, emit, stop)
                    finally:
                        for target in targets:
                            sweep_leftovers(target, float(scen["timeout_s"]), emit)
                        for cmd in commands:
                            if cmd.pod is not None:
                                remove_pod_files(cmd.pod)
            if received:
                emit("warning", message=f"agent got {signal.Signals(received[0]).name}: stopped early and cleaned up")
            emit("meta_end", clock=nodeinfo.clock(), loadavg=nodeinfo.load())
    except Exception as exc:  # noqa: BLE001 - reported to the controller, then a non-zero exit
        emit("error", message=f"{type(exc).__name__}: {exc}")
        emit("done", ok=False, interrupted=stop.is_set())
        return 1
    emit("done", ok=not stop.is_set(), interrupted=stop.is_set())
    return 0 if not stop.is_set() else 130


if __name__ == "__main__":
    sys.exit(main())
