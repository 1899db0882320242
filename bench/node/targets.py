"""The node's targets: stack instances and handlers found here, matched to the scenario, checked.

Every target the scenario names is reported (available or not, with the reason and the
component versions); an available one has passed a preflight pod. Pods a crashed earlier
run left behind (label io.hopbench/managed, agent gone) are removed before a target is
measured, and a controller that lost a node asks here what a run left (mode check).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import signal
import time

from bench import stacks
from bench.messages import Job, Left, TargetInfo, Targets, Warning
from bench.node import kubelet, leftovers, memory
from bench.node.cri import CriClient, remove_cgroup_tree, remove_pod_files
from bench.node.levels import Emit, Target
from bench.scenario import HANDLERS


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
                f"{daemon.name} is not running (no live process for {daemon.pidfile} or unit {daemon.unit}); "
                "run hopbench provision",
                versions,
            )
    for name, argv in stack.components.items():
        versions[name] = stacks.command_version(argv)
    client = CriClient(stack.cri_endpoint, timeout_s)
    try:
        v = client.version()
        versions["cri"] = f"{v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})"
    except Exception as exc:  # noqa: BLE001 - an unreachable daemon makes the stack unavailable
        return False, f"CRI at {stack.cri_endpoint} does not answer: {exc}", versions
    finally:
        client.close()
    return True, "", versions


def preflight(stack: stacks.Stack, handler: stacks.Handler, timeout_s: float) -> str:
    """Start one pod with its container and remove it, untimed: the reason the target cannot run
    pods, or ''.

    A handler can pass its provisioning probe (the OCI runtime alone) and still fail inside
    the stack, e.g. containerd-shim-runsc-v1 insists on an oom_score_adj the host forbids. The
    container matters too: CRI-O drops the infra container of kubelet's default pod, so its
    first OCI call is CreateContainer's (Debian's crun 1.8 with the systemd driver on a hybrid
    node: "unknown version specified").
    """
    pod = kubelet.Pod(
        name=f"hb-preflight-{os.getpid()}", run_id=f"preflight-{os.getpid()}", cgroup_driver=stack.cgroup_driver
    )
    pod.prepare()
    client = CriClient(stack.cri_endpoint, timeout_s)
    try:
        sandbox_cfg = kubelet.sandbox_config(pod)
        t = client.run_pod_sandbox(sandbox_cfg, handler.runtime_handler)
        if not (t.ok and t.value):
            return t.error or "RunPodSandbox returned no id"
        problem = ""
        try:
            image = stack.workload_image
            cfg = kubelet.container_config(pod, client.image_id(image), image, [], [])
            made = client.create_container(t.value, cfg, sandbox_cfg)
            started = client.start_container(made.value) if made.ok and made.value else made
            if not started.ok:
                problem = f"preflight container failed: {started.error}"
        except Exception as exc:  # noqa: BLE001 - whatever fails here makes the target unavailable, with why
            problem = f"preflight container failed: {type(exc).__name__}: {exc}"
        errors = client.remove_pod(t.value)
        return "; ".join([p for p in (problem, *errors) if p])
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


def _info(
    pair: str,
    stack: stacks.Stack | None,
    handler_name: str,
    status: dict[str, tuple[bool, str, dict[str, str]]],
    timeout_s: float,
) -> tuple[TargetInfo, Target | None]:
    """One target's report, and the target itself when it is usable (preflight passed)."""
    stack_name = pair.split("/")[0]
    if stack is None:
        reason = f"stack {stack_name} is not provisioned on this node"
        return TargetInfo(pair, stack_name, stacks.kind_of(stack_name), "", False, handler_name, False, reason), None
    ok, reason, versions = status[stack.name]
    handler = stack.handlers.get(handler_name)
    if not ok:
        pass  # the stack's own reason comes first
    elif handler is None:
        ok, reason = False, f"handler {handler_name} is not configured for {stack.name}"
    elif not handler.available:
        ok, reason = False, handler.reason or f"{handler_name} is unavailable on {stack.name}"
    if handler is not None and handler.version_cmd:
        versions = {**versions, handler_name: stacks.command_version(handler.version_cmd)}
    # A handler the stack runs only at some levels (Docker's crun: dockerd's runtime, not
    # cri-dockerd's) gets no CRI preflight: that pod would run the stack's CRI handler instead.
    only = list(handler.extra.get("levels") or []) if handler is not None else []
    if ok and handler is not None and only and "cri" not in only:
        reason = f"runs at level {', '.join(only)} only: {handler.reason}"
    elif ok and handler is not None:
        problem = preflight(stack, handler, timeout_s)
        if problem:
            ok, reason = False, f"preflight pod failed: {problem}"
    info = TargetInfo(
        pair,
        stack.name,
        stack.kind or stack.name,
        stack.version,
        stack.default,
        handler_name,
        ok,
        reason,
        versions,
        stack.extra,
        handler.extra if handler is not None else {},
    )
    return info, (Target(stack, handler) if ok and handler is not None else None)


def resolve(job: Job, found: list[stacks.Stack], emit: Emit) -> list[Target]:
    """Match the scenario's targets to the node's stacks; report every one, available or not."""
    scen = job.scen
    status = {s.name: stack_status(s, scen.timeout_s) for s in found}
    infos, usable = [], []
    for pair, stack, handler_name in match_targets(list(scen.targets), found):
        info, target = _info(pair, stack, handler_name, status, scen.timeout_s)
        infos.append(info)
        if target is not None:
            usable.append(target)
    emit(Targets(targets=tuple(infos)))
    return usable


def sweep_pods(target: Target, timeout_s: float, emit: Emit) -> None:
    """Remove pods a crashed earlier run left on the target's stack (label io.hopbench/managed), and
    the files and cgroups kubelet would have removed with them."""
    if target.stack is None:
        return
    client = CriClient(target.stack.cri_endpoint, timeout_s)
    try:
        for sandbox in client.sandboxes({kubelet.MANAGED_LABEL: "true"}):
            if kubelet.agent_alive(sandbox.labels.get(kubelet.AGENT_LABEL, "")):
                continue  # another agent's pod, being measured right now
            run = sandbox.labels.get(kubelet.RUN_LABEL, "?")
            errors = client.remove_pod(sandbox.id)
            uid = sandbox.labels.get("io.kubernetes.pod.uid") or sandbox.metadata.uid
            if uid:  # what kubelet prepared for the pod: its log and state folders, its cgroups
                remove_pod_files(kubelet.Pod(name=sandbox.metadata.name, run_id=run, uid=uid))
            emit(
                Warning(
                    message=f"removed pod {sandbox.metadata.name} left by run {run} on {target.stack.name}"
                    + (f" with errors: {'; '.join(errors)}" if errors else "")
                )
            )
        known = client.known_ids()
        release_orphan_leases(target.stack, known, timeout_s, emit)
        remove_orphan_monitors(target.stack, known, timeout_s, emit, engine_ids(target.stack, timeout_s))
    finally:
        client.close()
    remove_orphan_pod_files(os.path.dirname(target.stack.description_path), timeout_s, emit)


def remove_orphan_pod_files(stacks_dir: str, older_than_s: float, emit: Emit) -> None:
    """kubelet's housekeeping of orphaned pods: the log and state folders and the (empty) pod
    cgroups of pods that no stack's CRI knows. A runtime can drop a sandbox by itself (CRI-O cleans
    up a RunPodSandbox whose caller gave up, two minutes after, as a "stale resource"), and the
    cgroups it made under the pod's parent stay. Pods are shared by every stack of the node (one
    cgroup parent, one log root), so every stack is asked; when one does not answer nothing is
    removed. Files younger than a call deadline are left: a pod being made now is not listed yet."""
    known: set[str] = set()
    for stack in stacks.discover(stacks_dir):
        if stack.unavailable:
            continue
        client = CriClient(stack.cri_endpoint, older_than_s)
        try:
            for sandbox in client.sandboxes({}):
                known |= {sandbox.metadata.uid, sandbox.labels.get("io.kubernetes.pod.uid", "")}
        except Exception:  # noqa: BLE001 - a stack that does not answer: its pods cannot be told from orphans
            return
        finally:
            client.close()
    found: dict[str, list[str]] = {}
    log_root, state_root = kubelet.DEFAULT_LOG_ROOT, kubelet.DEFAULT_POD_STATE_ROOT
    for entry in os.listdir(log_root) if os.path.isdir(log_root) else []:
        found.setdefault(entry.rsplit("_", 1)[-1], []).append(os.path.join(log_root, entry))
    for entry in os.listdir(state_root) if os.path.isdir(state_root) else []:
        found.setdefault(entry, []).append(os.path.join(state_root, entry))
    cgroup_root = "/sys/fs/cgroup"
    for hierarchy in os.listdir(cgroup_root) if os.path.isdir(cgroup_root) else []:
        parent = os.path.join(cgroup_root, hierarchy, kubelet.CGROUP_ROOT.lstrip("/"))
        for entry in os.listdir(parent) if os.path.isdir(parent) else []:
            if entry.startswith("pod") and os.path.isdir(os.path.join(parent, entry)):
                found.setdefault(entry[len("pod") :], []).append(os.path.join(parent, entry))
    now = time.time()
    for uid, paths in sorted(found.items()):
        if not uid or uid in known:
            continue
        with contextlib.suppress(OSError):
            if any(now - os.stat(p).st_mtime < older_than_s for p in paths):
                continue
            remove_pod_files(kubelet.Pod(name="", run_id="", uid=uid))
            for path in paths:  # the log folder is named by namespace and pod name too
                if path.startswith(log_root):
                    shutil.rmtree(path, ignore_errors=True)
            left = [p for p in paths if os.path.exists(p)]
            if left:  # a cgroup with a process in it stays: say so, never that it went
                emit(
                    Warning(
                        message=f"pod {uid}, which no stack knows any more, still has processes: "
                        f"{len(left)} of its folders and cgroups could not be removed ({left[0]}, ...)"
                    )
                )
            else:
                emit(Warning(message=f"removed the folders and cgroups of pod {uid}, which no stack knows any more"))


def engine_ids(stack: stacks.Stack, timeout_s: float) -> set[str] | None:
    """Every container id dockerd of `stack` has a record of; None without dockerd, or when it does
    not answer (then no shim can be told from an orphan by it)."""
    endpoint = stack.extra.get("docker_endpoint")
    if not endpoint:
        return None
    from bench.node.levels.engine import EngineClient, EngineError

    client = EngineClient(str(endpoint), timeout_s)
    try:
        return {str(c["Id"]) for c in client.request("GET", "/containers/json?all=1")}
    except (EngineError, OSError, KeyError, TypeError):
        return None
    finally:
        client.close()


def remove_orphan_monitors(
    stack: stacks.Stack, known: set[str], older_than_s: float, emit: Emit, engine: set[str] | None = None
) -> None:
    """Remove the shims and conmons of `stack` that its daemons no longer know (a daemon killed
    while starting one forgets it at restart), with the processes under them and their pod
    cgroups. Each is reported as left behind by a crash, with its daemon's log lines about it.
    A shim that ignores SIGTERM (containerd-shim-runc-v2 with no task to serve) is killed.
    `engine`: the container ids dockerd of a docker stack knows (engine_ids)."""
    engine_known = {stack.name: engine} if engine is not None else None
    for orphan in leftovers.orphan_monitors([stack], {stack.name: known}, older_than_s, engine_known):
        if not leftovers.exe_name(orphan.pid).startswith(leftovers.MONITORS):
            continue  # it ended since it was found (its PID may be another process's now)
        cgroups = {kubelet.CGROUP_ROOT + "/pod" + uid for uid in (_pod_uid(p) for p in orphan.tree) if uid}
        for pid in (orphan.pid, *orphan.tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in (orphan.pid, *orphan.tree):
            _wait_gone(pid, 5.0)
        for path in sorted(cgroups):
            remove_cgroup_tree(path)
        lines = daemon_log_lines(stack, orphan.object_id)
        emit(
            Warning(
                message=f"removed {orphan.name} (PID {orphan.pid}, {len(orphan.tree)} process(es) under it) of "
                f"{stack.name} for {orphan.object_id[:12]}, left behind by a crash: {orphan.why}"
                + (f"; its daemon's log: {' | '.join(lines)}" if lines else "; its daemon's log says nothing of it")
            )
        )


def _pod_uid(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            return memory.pod_of_cgroup(fh.read())[0]
    except OSError:
        return ""


def _wait_gone(pid: int, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.02)


def daemon_log_lines(stack: stacks.Stack, object_id: str, most: int = 4) -> list[str]:
    """Lines of the stack's daemon logs (dockerd's managed containerd included) that name
    `object_id`, each cut to 300 characters: the last `most` of those at warning or error level
    (what went wrong: "failed to read bootstrap.json"), else the last `most` of all."""
    logs = [d.log for d in stack.daemons if d.log]
    child = stack.extra.get("containerd_level") or {}
    if child.get("log"):
        logs.append(str(child["log"]))
    found: list[str] = []
    for path in dict.fromkeys(logs):
        try:
            with open(path, errors="replace") as fh:
                found += [line.strip()[:300] for line in fh if object_id and object_id in line]
        except OSError:
            continue
    bad = [line for line in found if re.search(r"level=(error|warn|fatal)|failed", line)]
    return (bad or found)[-most:]


def release_orphan_leases(stack: stacks.Stack, sandbox_ids: set[str], older_than_s: float, emit: Emit) -> None:
    """Free the addresses of sandboxes the stack no longer knows. A daemon killed (or hung past the
    call deadline) inside RunPodSandbox can leave host-local's lease behind with no sandbox to remove
    through the CRI; the network is the stack's own (hopbench's CNI folder), so a lease whose owner
    is not a sandbox of the stack is an orphan. Leases younger than a call deadline are left: a
    sandbox being made right now (by an agent of another node sharing the stack) is not listed yet."""
    now = time.time()
    for path in leftovers.lease_files(stack):
        owner = leftovers.lease_owner(path)
        try:
            young = now - path.stat().st_mtime < older_than_s
        except OSError:
            continue
        if not owner or owner in sandbox_ids or young:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        emit(Warning(message=f"released IPAM lease {path.name} of sandbox {owner[:12]}, unknown to {stack.name}"))


def check_left(job: Job, emit: Emit) -> None:
    """Mode "check": what a run (job.check_run_id) left on this node: its pods, per stack."""
    left: dict[str, int] = {}
    for stack in stacks.discover(job.stacks_dir):
        if stack.unavailable:
            continue
        client = CriClient(stack.cri_endpoint, 10)
        try:
            labels = {kubelet.RUN_LABEL: job.check_run_id, kubelet.NODE_LABEL: job.node}
            left[stack.name] = len(client.sandboxes(labels))
        except Exception as exc:  # noqa: BLE001 - a stack that does not answer is reported, not fatal
            emit(Warning(message=f"check on {stack.name}: {type(exc).__name__}: {exc}"))
        finally:
            client.close()
    emit(Left(run_id=job.check_run_id, pods=left))


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
