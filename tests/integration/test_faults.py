"""Faults a lab sees: a second run started while one runs, daemons, shims and monitors killed
mid-run, a daemon that hangs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import stacks
from bench.controller.results import load_meta, load_run, read_jsonl
from bench.controller.runfacts import CRASH_LEFTOVER
from bench.messages import LOCK_PATH
from bench.node import leftovers, memory
from bench.node.levels.engine import EngineClient

from .conftest import REPO, hopbench_exe, no_pods_left, playbook, run_hopbench, run_scenario, run_until

pytestmark = pytest.mark.integration


def test_a_second_run_on_the_node_is_refused_with_the_first_ones_run_id_and_pid(provisioned, tmp_path):
    scen = tmp_path / "long.yaml"
    scen.write_text(
        "schema: 1\nname: itlock\ntargets: [containerd/runc]\nlevels: [cri]\niterations: 40\nwarmup: 0\n"
        "concurrency: [1]\ncontrol: false\n"
    )
    first_results = tmp_path / "first"
    first = subprocess.Popen(
        [hopbench_exe(), "run", "--scenario", str(scen), "--results", str(first_results)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        holder = ""
        while time.monotonic() < deadline and first.poll() is None:
            runs = list(first_results.iterdir()) if first_results.exists() else []
            holder = Path(LOCK_PATH).read_text() if runs else ""
            if runs and runs[0].name in holder:
                break
            time.sleep(0.2)
        (run,) = list(first_results.iterdir())
        pid, run_id = holder.split()
        assert run_id == run.name and first.poll() is None
        second = run_hopbench("run", "--scenario", str(scen), "--results", str(tmp_path / "second"))
        assert second.returncode == 1
        assert f"another hopbench agent runs on this node (run {run_id}, agent PID {pid}" in second.stderr
        (refused,) = list((tmp_path / "second").iterdir())
        assert load_meta(refused)["status"] == "failed"
        assert first.wait(timeout=600) == 0
        assert load_meta(run)["status"] == "complete"  # the first run went on, untouched
        no_pods_left(run_id)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(timeout=120)


# Daemons, shims and monitors killed mid-run by PID (SIGKILL), and a daemon that hangs (SIGSTOP).
# Each run pairs the victim with a target of another stack instance: the victim's failure is
# recorded, the other runs every lifecycle, every sample taken is kept. Victims are distinct
# instances, so the daemons killed by one test do not stand in the way of the next (the shim, conmon
# and hang tests, which need the default instances alive, come first); the last test re-provisions
# (as an operator would) and checks the next run sweeps what the faults left.

FAULT_RUN = (
    "levels: [cri]\niterations: {n}\nwarmup: 0\nconcurrency: [1]\ncontrol: false\ntimeout_s: 10\nmax_failures: 3\n"
)
# Instances by kind and role (the default one, or an older one beside it), not by version, so
# the tests follow the versions the roles install.
DEFAULT, OLDER = True, False
KILLS = [  # victim daemon, its stack instance, the stack instance that must run on undisturbed
    ("containerd", ("containerd", DEFAULT), ("crio", DEFAULT)),
    # dockerd ("docker", DEFAULT): test_a_killed_dockerd_forgets_a_container_the_next_sweep_finds
    ("crio", ("crio", DEFAULT), ("containerd", OLDER)),
    ("cri-dockerd", ("docker", OLDER), ("containerd", OLDER)),
]
killed_runs: list[str] = []
forgotten: list[tuple[str, int, str]] = []  # a docker stack, the shim of a container its dockerd forgot, the id


def instance(kind: str, default: bool = DEFAULT) -> stacks.Stack:
    """A provisioned, available instance of `kind`: its default one, or another (an older version)."""
    match = [s for s in stacks.discover() if not s.unavailable and s.kind == kind and s.default == default]
    if not match:
        role = "default" if default else "non-default"
        pytest.skip(f"no {role} instance of {kind} is provisioned and available on this node")
    return match[0]


def target_of(stack: stacks.Stack) -> str:
    return f"{stack.name}/runc"


def ok_lifecycles(samples: Any, target: str, checks: Sequence[dict[str, Any]] = ()) -> int:
    """Lifecycles of `target` whose every op is ok and whose workload checks all passed."""
    stack, handler = target.split("/")
    mine = samples[(samples["stack"] == stack) & (samples["handler"] == handler)]
    failed = {c["iteration"] for c in checks if c.get("target") == target and not c["ok"]}
    ok = mine.groupby("iteration")["ok"].all() if len(mine) else {}
    return sum(1 for iteration, good in dict(ok).items() if good and iteration not in failed)


def first_process(
    victim: stacks.Stack, run: subprocess.Popen[str], match: Callable[[memory.Proc], bool], within_s: float = 60
) -> memory.Proc | None:
    """The first process of `victim`'s stack that `match`es, polled every 10 ms (a lifecycle lasts
    well under a second) while the run goes on; None when the run ended or `within_s` passed."""
    classifier = memory.Classifier([victim])
    end = time.monotonic() + within_s
    while time.monotonic() < end and run.poll() is None:
        for p in classifier.classify():
            if match(p):
                return p
        time.sleep(0.01)
    return None


def fault_run(tmp_path: Path, name: str, targets: list[str], iterations: int, ready, act) -> tuple[int, str, Path]:
    scen = tmp_path / f"{name}.yaml"
    scen.write_text(f"schema: 1\nname: {name}\ntargets: [{', '.join(targets)}]\n" + FAULT_RUN.format(n=iterations))
    results = tmp_path / "results"
    return run_until(
        ["run", "--scenario", str(scen), "--results", str(results)], results, "samples.jsonl", ready, act, name, 300
    )


def assert_failure_reported(run: Path, victim: str, survivor: str, iterations: int, before_kill: int) -> Any:
    meta, samples = load_run(run)
    assert meta["status"] == "failed", meta["status"]  # the agent ended, with the victim's errors
    assert any(e.get("target") == victim for e in read_jsonl(run / "events.jsonl") if e["event"] == "error")
    assert ok_lifecycles(samples, survivor) == iterations  # the other target ran to the end
    stack = victim.split("/")[0]
    assert len(samples[samples["stack"] == stack]) >= before_kill  # nothing taken before the kill is lost
    report_md = (run / "report.md").read_text()
    section = report_md.split("What went wrong, and when", 1)[1][:4000]
    assert victim in section and re.search(r"\d\d:\d\d:\d\d \(\+\d+ s\)", section)
    no_pods_left(meta["run_id"], (survivor.split("/")[0],))
    return meta


@pytest.mark.parametrize("monitor", ["containerd-shim", "conmon"])
def test_a_killed_shim_or_conmon_fails_its_lifecycle_and_the_run_goes_on(provisioned, tmp_path, monitor):
    victim = instance("containerd" if monitor == "containerd-shim" else "crio")
    other = instance("containerd", OLDER)
    kills: list[int] = []

    def kill_one(proc: subprocess.Popen[str]) -> None:
        """SIGKILL a shim (conmon) of the victim's stack serving a pod of this run: the lifecycle in
        flight fails."""
        p = first_process(victim, proc, lambda p: p.role == "shim" and bool(p.pod) and p.name.startswith(monitor))
        if p is not None:
            os.kill(p.pid, signal.SIGKILL)
            kills.append(p.pid)

    iterations = 24
    rc, err, run = fault_run(
        tmp_path,
        f"kill-{monitor}",
        [target_of(victim), target_of(other)],
        iterations,
        lambda text: text.count(f'"stack": "{victim.name}"') >= 4,
        kill_one,
    )
    assert kills, f"no {monitor} of {victim.name} was seen serving a pod"
    meta, samples = load_run(run)
    # One lifecycle failed where the monitor died: an op failed, or (when the kill landed between
    # ops) the ops answered ok and the workload check saw the container still running after its
    # StopContainer. The victim went on (3 failures abandon it): the run completes, and exits 1.
    assert rc == 1 and meta["status"] == "complete", (meta["status"], err[-2000:])
    checks = read_jsonl(run / "checks.jsonl")
    assert 0 < ok_lifecycles(samples, target_of(victim), checks) < iterations
    assert ok_lifecycles(samples, target_of(other), checks) == iterations
    section = (run / "report.md").read_text().split("What went wrong, and when", 1)[1][:4000]
    assert re.search(rf"(lifecycle|check) failed: {re.escape(target_of(victim))}", section), section
    no_pods_left(meta["run_id"])
    killed_runs.append(meta["run_id"])


def test_a_hung_daemon_is_caught_by_the_call_deadline(provisioned, tmp_path):
    """crio stopped (SIGSTOP), not dead: its socket accepts and nothing answers. Each call fails at
    timeout_s, the target is abandoned after max_failures; the other target runs to the end."""
    victim, other = instance("crio"), instance("containerd", OLDER)
    (daemon,) = [d for d in victim.daemons if d.name == "crio"]
    pid = daemon.pid()
    assert pid is not None
    seen = [0]

    def ready(text: str) -> bool:
        seen[0] = text.count(f'"stack": "{victim.name}"')
        return seen[0] >= 8

    try:
        rc, err, run = fault_run(
            tmp_path,
            "hang-crio",
            [target_of(victim), target_of(other)],
            30,
            ready,
            lambda _: os.kill(pid, signal.SIGSTOP),
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert rc == 1, err[-3000:]
    meta = assert_failure_reported(run, target_of(victim), target_of(other), 30, seen[0])
    events = read_jsonl(run / "events.jsonl")
    assert any("DEADLINE_EXCEEDED" in e.get("message", "") or "Deadline" in e.get("message", "") for e in events)
    # Woken, crio finishes what it was asked; the next run sweeps any pod it then made.
    killed_runs.append(meta["run_id"])


def test_a_shim_its_containerd_forgot_in_a_crash_is_found_and_removed_by_the_next_sweep(provisioned, tmp_path):
    """containerd killed after it started a shim and before the shim wrote its address: after the
    restart containerd cannot load the shim ("failed to read bootstrap.json ... address: no such
    file"), removes its bundle and forgets it, and the shim runs on, ignoring SIGTERM. The kill is
    made to land in that window on purpose: containerd is killed while a shim serves a pod of the
    run, and the two files the shim writes once started (address, bootstrap.json) are removed
    before containerd comes back, which is the state the window leaves. The next run's sweep must
    report the shim as left behind by a crash, with containerd's log lines, and remove it with the
    pod processes under it."""
    victim, other = instance("containerd"), instance("containerd", OLDER)
    (daemon,) = victim.daemons
    pid = daemon.pid()
    assert pid is not None
    landed: list[tuple[int, Path]] = []

    def crash_in_the_window(proc: subprocess.Popen[str]) -> None:
        p = first_process(
            victim, proc, lambda p: p.role == "shim" and bool(p.pod) and p.name.startswith("containerd-shim")
        )
        if p is not None:
            bundle = Path(os.readlink(f"/proc/{p.pid}/cwd"))
            os.kill(pid, signal.SIGKILL)
            for name in ("address", "bootstrap.json"):
                (bundle / name).unlink(missing_ok=True)
            landed.append((p.pid, bundle))

    rc, err, run = fault_run(
        tmp_path,
        "crash-window",
        [target_of(victim), target_of(other)],
        24,
        lambda text: text.count(f'"stack": "{victim.name}"') >= 4,
        crash_in_the_window,
    )
    assert landed, f"no shim of {victim.name} was seen serving a pod"
    shim, bundle = landed[0]
    assert rc == 1, err[-3000:]
    killed_runs.append(load_meta(run)["run_id"])
    playbook()  # containerd back, as after a crash in the lab
    assert os.path.exists(f"/proc/{shim}"), "the shim did not outlive the crash: the window was not reached"
    assert not bundle.exists(), f"{victim.name} kept the bundle it could not load: {bundle}"

    (tmp_path / "after").mkdir()
    after, meta, _ = run_scenario(
        tmp_path / "after", "after-crash", f"targets: [{target_of(victim)}]\n" + FAULT_RUN.format(n=1)
    )
    swept = [
        e["message"] for e in read_jsonl(after / "events.jsonl") if "left behind by a crash" in e.get("message", "")
    ]
    assert any(f"(PID {shim}," in m and bundle.name[:12] in m for m in swept), swept
    # containerd's own account of the crash travels with the report of it.
    assert any("failed to read bootstrap.json" in m or "failed to load shim" in m for m in swept), swept
    assert not os.path.exists(f"/proc/{shim}")
    section = (after / "report.md").read_text()
    assert "left behind by a crash" in section


@pytest.mark.parametrize(("daemon", "victim_stack", "other_stack"), KILLS, ids=[k[0] for k in KILLS])
def test_a_killed_stack_daemon_fails_its_target_only(provisioned, tmp_path, daemon, victim_stack, other_stack):
    victim, other = instance(*victim_stack), instance(*other_stack)
    (proc,) = [d for d in victim.daemons if d.name == daemon]
    pid = proc.pid()
    assert pid is not None, f"{daemon} of {victim.name} is not running"
    iterations, seen = 30, [0]

    def ready(text: str) -> bool:
        seen[0] = text.count(f'"stack": "{victim.name}"')
        return seen[0] >= 8  # a few lifecycles measured before the kill

    rc, err, run = fault_run(
        tmp_path,
        f"kill-{daemon}",
        [target_of(victim), target_of(other)],
        iterations,
        ready,
        lambda _: os.kill(pid, signal.SIGKILL),
    )
    assert rc == 1, err[-3000:]
    meta = assert_failure_reported(run, target_of(victim), target_of(other), iterations, seen[0])
    assert "target abandoned" in " ".join(meta["errors"]), meta["errors"]
    killed_runs.append(meta["run_id"])


def test_a_killed_dockerd_forgets_a_container_the_next_sweep_finds(provisioned, tmp_path):
    """dockerd killed mid-run fails its target only, as the other daemons do (KILLS), and here the
    kill lands while dockerd starts a pod's container (seen in CI on 2026-12-05): after the restart
    its containerd reconnects to the container's shim, the next sweep's RemovePodSandbox drops
    dockerd's record of the container, and its task and process run on in containerd's "moby"
    namespace, bundle and all. Neither the CRI (it lists no moby namespace) nor a removed bundle
    tells that shim from a live one: only dockerd's own list of containers does. The crash is made
    to land: dockerd is killed while the shim of a pod's workload container serves the run, and its
    record of that container is removed before it comes back, the state the race leaves. The
    reprovisioning test's run must find the shim through dockerd and remove it, with the pod."""
    victim, other = instance("docker", DEFAULT), instance("containerd", OLDER)
    (dockerd,) = [d for d in victim.daemons if d.name == "dockerd"]
    pid = dockerd.pid()
    assert pid is not None, f"dockerd of {victim.name} is not running"
    engine = EngineClient(str(victim.extra["docker_endpoint"]))
    try:
        records = Path(engine.request("GET", "/info")["DockerRootDir"]) / "containers"
    finally:
        engine.close()
    landed: list[tuple[int, str]] = []
    iterations, seen = 30, [0]

    def ready(text: str) -> bool:
        seen[0] = text.count(f'"stack": "{victim.name}"')
        return seen[0] >= 8  # a few lifecycles measured before the kill

    def started_workload(cid: str) -> bool:
        """dockerd's record says: a pod's workload container (not its pause), started."""
        try:
            config = json.loads((records / cid / "config.v2.json").read_text())
        except (OSError, ValueError):
            return False
        labels = config.get("Config", {}).get("Labels") or {}
        return labels.get("io.kubernetes.docker.type") == "container" and config.get("State", {}).get("Running") is True

    def crash(proc: subprocess.Popen[str]) -> None:
        """Once dockerd has recorded a pod's workload as running, as in CI (StartContainer had
        started it and failed on the inspect after). A kill during the create leaves a shim
        without a container, which containerd's restart removes by itself ("cleaning leaked shim
        process"): not this fault. dockerd is frozen first, and killed only if half a second later
        the shim still serves a running workload: a stop dockerd had already sent for that
        container (the lifecycle goes on while the shim is found) has by then ended the shim or
        the workload, and the crash waits for the next container instead of landing in a state the
        fault is not (both seen in fresh-clone runs, 2026-12-05)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            p = first_process(
                victim, proc, lambda p: p.role == "shim" and bool(p.object_id) and started_workload(p.object_id)
            )
            if p is None:
                return
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.5)  # what dockerd asked of its containerd before the freeze is done by now
            # The workload still runs under the shim: no stop had reached it (a stop in flight
            # leaves dockerd's record saying running and the shim serving an exited task).
            if serving(p.pid) and started_workload(p.object_id) and any(serving(c) for c in children(p.pid)):
                os.kill(pid, signal.SIGKILL)
                shutil.rmtree(records / p.object_id)
                landed.append((p.pid, p.object_id))
                return
            os.kill(pid, signal.SIGCONT)

    rc, err, run = fault_run(tmp_path, "kill-dockerd", [target_of(victim), target_of(other)], iterations, ready, crash)
    assert landed, f"no started workload of {victim.name} was seen"
    assert rc == 1, err[-3000:]
    meta = assert_failure_reported(run, target_of(victim), target_of(other), iterations, seen[0])
    assert "target abandoned" in " ".join(meta["errors"]), meta["errors"]
    assert serving(landed[0][0]), "the shim did not outlive dockerd"
    killed_runs.append(meta["run_id"])
    forgotten.append((victim.name, *landed[0]))


def serving(pid: int) -> bool:
    """The process runs (it exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """The process's children, from every one of its threads (a Go shim forks from any)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def ended(pid: int, within_s: float = 10) -> bool:
    """The process has exited: gone, or a zombie its new parent (this machine's init, which reaps
    in its own time) has not reaped yet."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_reprovisioning_after_the_faults_and_the_next_run_sweeps(provisioned, tmp_path):
    if not killed_runs:
        pytest.skip("no fault test ran before this one in this session: nothing to sweep")
    alive_before = {shim: serving(shim) for _, shim, _ in forgotten}
    playbook()  # brings every killed daemon back, as after a crash in the lab
    assert all(d.pid() is not None for s in stacks.discover() if not s.unavailable for d in s.daemons)
    # Whether each forgotten shim still ran before and after the daemons came back: when the
    # sweep below does not find one, this tells a shim that ended by itself from a missed one.
    alive = {shim: (alive_before[shim], serving(shim)) for _, shim, _ in forgotten}
    every = [("containerd", DEFAULT), ("docker", DEFAULT), ("crio", DEFAULT), ("containerd", OLDER), ("docker", OLDER)]
    body = f"targets: [{', '.join(target_of(instance(*n)) for n in every)}]\n"
    run, meta, _ = run_scenario(tmp_path, "after-faults", body + FAULT_RUN.format(n=2))
    for run_id in killed_runs:
        no_pods_left(run_id)
    # Daemons finish some teardown after RemovePodSandbox returns (a network namespace goes a few
    # seconds later): what is left is read until it is nothing, for at most a minute.
    # The node's own mounts are not the pods'. A conmon killed by SIGKILL cannot remove its attach
    # link, so dangling links are the lifecycle test's to check (test_lifecycle), not these faults'.
    pods_leave = [k for k in leftovers.COUNTS if k not in ("mounts", "dangling links")]
    end = time.monotonic() + 60
    while True:
        left = {k: v for k, v in leftovers.take().items() if k in pods_leave}
        if not any(left.values()) or time.monotonic() > end:
            break
        time.sleep(1)
    assert left == dict.fromkeys(pods_leave, 0)
    swept = [e["message"] for e in read_jsonl(run / "events.jsonl") if CRASH_LEFTOVER in e.get("message", "")]
    for stack, shim, cid in forgotten:  # found through dockerd's own list, and removed
        found = f"dockerd of {stack} has no container {cid[:12]}"
        assert any(found in m and f"(PID {shim}," in m for m in swept), (
            f"shim {shim} ran before reprovisioning / after it: {alive[shim]}; swept: {swept}"
        )
        assert ended(shim), f"shim {shim} still runs"
