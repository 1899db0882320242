"""The node's scheduler driven by a fake level: plan, failures, abandon, stop, clean-up. No root, no daemon.

The fake level implements the written protocol (bench.node.levels.Level); what it does is
scripted per iteration, and what the scheduler emits is read back as typed events.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from bench import stacks
from bench.levelnames import REGISTRY
from bench.messages import Artifact, Check, Error, Event, Info, Job, Lifecycle, Plan, Sample, Warning, decode_event
from bench.node import schedule
from bench.node.channel import Emitter
from bench.node.levels import Context, Level, Outcome, Target, Timed, Turn
from bench.scenario import Density, Scenario


class Recorder:
    """An Emit that keeps the events; `closed` like the real Emitter's."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def make_target(name: str = "containerd", handler: str = "runc", extra: dict[str, object] | None = None) -> Target:
    h = stacks.Handler(handler, handler, f"/usr/bin/{handler}")
    s = stacks.Stack(
        name=f"{name}@1.0",
        cri_endpoint="unix:///nonexistent.sock",
        daemons=(),
        handlers={handler: h},
        pause_image="pause",
        workload_image="workload",
        description_path="/dev/null",
        extra=dict(extra or {}),
        kind=name,
        version="1.0",
    )
    return Target(s, h)


def make_ctx(tmp_path: Path, targets: list[Target], **scen: object) -> tuple[Context, Recorder]:
    scenario = Scenario(name="t", path="t.yaml", sha256="", text="", **scen)  # type: ignore[arg-type]
    rec = Recorder()
    ctx = Context(Job(run_id="run-1", node="n1", scenario=scenario), rec, threading.Event(), tmp_path, [], targets)
    return ctx, rec


class FakeLevel(Level):
    """Two ops per lifecycle; `script[i]` says what iteration i does: ok, fail (2nd op), check, raise."""

    name = "fake"
    ops = ("Make", "Unmake")
    script: ClassVar[dict[int, str]] = {}
    opened: ClassVar[list[str]] = []
    closed: ClassVar[list[str]] = []
    on_lifecycle: ClassVar[list[object]] = []

    def __init__(self, target: Target | None) -> None:
        self.target = target

    @classmethod
    def applies(cls, target: Target) -> str:
        return "" if target.handler.name == "runc" else f"level fake: {target.name} is not runc"

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> FakeLevel:
        if target is not None and target.stack is not None and target.stack.extra.get("broken"):
            raise RuntimeError("cannot open")
        cls.opened.append(target.name if target else "node")
        return cls(target)

    def sweep(self) -> None:
        self.notes.append("swept 1 leftover")

    def lifecycle(self, turn: Turn) -> Outcome:
        for hook in self.on_lifecycle:
            hook(turn)  # type: ignore[operator]
        what = self.script.get(turn.iteration, "ok")
        if what == "raise":
            raise RuntimeError("driver bug")
        first = Timed("Make", 1000 * turn.iteration, 10, "id", None)
        if what == "fail":
            return Outcome([first, Timed("Unmake", 0, 5, None, "boom")])
        second = Timed("Unmake", 0, 7, None, None)
        return Outcome([first, second], "no ready line" if what == "check" else "")

    def close(self) -> None:
        self.closed.append(self.target.name if self.target else "node")


@pytest.fixture(autouse=True)
def fresh_fake():
    FakeLevel.script, FakeLevel.opened, FakeLevel.closed, FakeLevel.on_lifecycle = {}, [], [], []


def test_every_registered_level_implements_the_protocol():
    from bench.node.levels import load
    from bench.scenario import LEVELS

    assert tuple(REGISTRY) == LEVELS
    for name in REGISTRY:
        cls = load(name)
        assert issubclass(cls, Level) and cls.name == name and cls.per in ("target", "handler", "node")
        assert not getattr(cls, "__abstractmethods__", None), f"{name} leaves {cls.__abstractmethods__} abstract"


def test_plan_skips_targets_a_level_does_not_apply_to_and_says_why(tmp_path):
    runc, crun = make_target(), make_target(handler="crun")
    ctx, rec = make_ctx(tmp_path, [runc, crun], levels=("fake",), iterations=3, warmup=1, concurrency=(1, 2))
    units = schedule.plan(ctx, {"fake": FakeLevel})
    assert [(u.level, u.target) for u in units] == [(FakeLevel, runc)]
    (info,) = rec.of(Info)
    assert isinstance(info, Info) and info.target == crun.name and "not runc" in info.message
    (plan,) = rec.of(Plan)
    assert isinstance(plan, Plan) and plan.lifecycles == 2 * (3 + 1) and plan.levels == (f"{runc.name} fake",)


def test_a_handler_that_runs_only_at_some_levels_is_planned_only_there(tmp_path):
    """Docker's crun: dockerd runs it (level engine), cri-dockerd cannot ask for it (level cri)."""
    runc = make_target("docker")
    h = stacks.Handler("crun", "docker", "/usr/bin/crun", reason="cri-dockerd serves a single runtime handler",
                       extra={"levels": ["engine"]})  # fmt: skip
    crun = Target(dataclasses.replace(runc.stack, handlers={"crun": h}), h)
    assert schedule.only_at(crun, "engine") == "" and schedule.only_at(runc, "cri") == ""
    ctx, rec = make_ctx(tmp_path, [crun], levels=("fake",), iterations=1, warmup=0, concurrency=(1,))
    assert schedule.plan(ctx, {"fake": FakeLevel}) == []
    (info,) = rec.of(Info)
    assert "runs at level engine only: cri-dockerd serves a single runtime handler" in info.message


def test_samples_checks_and_warmup_flags_of_good_lifecycles(tmp_path):
    t = make_target()
    ctx, rec = make_ctx(tmp_path, [t], levels=("fake",), iterations=3, warmup=1, concurrency=(1,))
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    samples = [e for e in rec.of(Sample) if isinstance(e, Sample)]
    assert len(samples) == 2 * 4
    assert {(s.stack, s.handler, s.level) for s in samples} == {(t.stack.name, "runc", "fake")}  # type: ignore[union-attr]
    assert sorted(s.iteration for s in samples if s.warmup) == [0, 0]
    checks = [e for e in rec.of(Check) if isinstance(e, Check)]
    assert len(checks) == 4 and all(c.ok and c.check == "workload-ran" for c in checks)
    assert FakeLevel.opened == FakeLevel.closed == [t.name]
    assert any(isinstance(w, Warning) and w.message == "swept 1 leftover" for w in rec.events)


def test_a_failed_op_is_a_failed_sample_and_a_failed_check_is_reported(tmp_path):
    FakeLevel.script = {0: "fail", 1: "check"}
    ctx, rec = make_ctx(tmp_path, [make_target()], levels=("fake",), iterations=3, warmup=0, concurrency=(1,))
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    failed = [s for s in rec.of(Sample) if isinstance(s, Sample) and not s.ok]
    assert [(s.iteration, s.op, s.error) for s in failed] == [(0, "Unmake", "boom")]
    bad = [c for c in rec.of(Check) if isinstance(c, Check) and not c.ok]
    assert [(c.iteration, c.detail) for c in bad] == [(1, "no ready line")]
    life = {e.iteration: e.ok for e in rec.of(Lifecycle) if isinstance(e, Lifecycle)}
    assert life == {0: False, 1: False, 2: True}


def test_a_target_is_abandoned_after_max_failures_and_the_next_concurrency_is_not_run(tmp_path):
    FakeLevel.script = dict.fromkeys(range(100), "fail")
    ctx, rec = make_ctx(
        tmp_path, [make_target()], levels=("fake",), iterations=50, warmup=0, concurrency=(1, 4), max_failures=3
    )
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    lifecycles = rec.of(Lifecycle)
    assert len(lifecycles) == 3, "a single worker stops at the third failure"
    (err,) = rec.of(Error)
    assert isinstance(err, Error) and "target abandoned" in err.message and "concurrency 1" in err.message
    assert FakeLevel.closed == FakeLevel.opened


def test_concurrent_workers_share_the_iterations_once_each(tmp_path):
    ctx, rec = make_ctx(tmp_path, [make_target()], levels=("fake",), iterations=40, warmup=2, concurrency=(4,))
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    iterations = sorted(e.iteration for e in rec.of(Lifecycle) if isinstance(e, Lifecycle))
    assert iterations == list(range(42))
    workers = {s.worker for s in rec.of(Sample) if isinstance(s, Sample)}
    assert workers <= {0, 1, 2, 3}


def test_stop_ends_the_schedule_after_the_lifecycles_in_flight_and_closes_the_level(tmp_path):
    a, b = make_target("containerd"), make_target("crio")
    ctx, rec = make_ctx(
        tmp_path, [a, b], levels=("fake",), iterations=100, warmup=0, concurrency=(2,), schedule="block"
    )
    FakeLevel.on_lifecycle = [lambda turn: ctx.stop.set() if turn.iteration == 5 else None]
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    assert FakeLevel.opened == FakeLevel.closed == [a.name], "the second target never starts"
    done = rec.of(Lifecycle)
    assert 6 <= len(done) <= 8, len(done)
    # Every lifecycle that started was reported with its samples: nothing taken is lost.
    assert len(rec.of(Sample)) == 2 * len(done)


def test_interleaved_rounds_run_every_target_once_per_round_in_a_seeded_shuffle(tmp_path):
    a, b, c = make_target("containerd"), make_target("crio"), make_target("docker")
    order: list[tuple[int, int, str]] = []

    def run(seed: int) -> list[tuple[int, int, str]]:
        FakeLevel.opened, FakeLevel.closed = [], []
        ctx, rec = make_ctx(
            tmp_path, [a, b, c], levels=("fake",), iterations=9, warmup=1, concurrency=(1, 3), seed=seed
        )
        FakeLevel.on_lifecycle = []
        schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
        assert sorted(FakeLevel.opened) == sorted(FakeLevel.closed) == sorted([a.name, b.name, c.name])
        life = [e for e in rec.of(Lifecycle) if isinstance(e, Lifecycle)]
        return [(e.concurrency, e.iteration, e.target.removesuffix(" (fake)")) for e in life]

    def bursts(o: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        # Within one burst (a target's round at concurrency c) the workers end in any order.
        return [(conc, i // conc, t) for conc, i, t in o]

    order = run(7)
    assert bursts(order) == bursts(run(7)), "the same seed gives the same order"
    assert bursts(order) != bursts(run(8))
    # At concurrency 1: 10 rounds, each holds iteration r of every target, one after the other.
    c1 = [(i, t) for conc, i, t in order if conc == 1]
    assert len(c1) == 30
    for r in range(10):
        assert {t for i, t in c1[3 * r : 3 * r + 3]} == {a.name, b.name, c.name}
        assert {i for i, _ in c1[3 * r : 3 * r + 3]} == {r}
    firsts = {c1[3 * r][1] for r in range(10)}
    assert len(firsts) > 1, "the order is shuffled every round"
    # At concurrency 3: 4 rounds (10 lifecycles: 3+3+3+1); round r holds iterations 3r..3r+2 of one target at a time.
    c3 = [(i, t) for conc, i, t in order if conc == 3]
    assert len(c3) == 30
    blocks = [c3[k : k + 3] for k in range(0, 27, 3)]
    assert all(len({t for _, t in blk}) == 1 and {i // 3 for i, _ in blk} == {k // 3} for k, blk in enumerate(blocks))
    assert sorted(i for i, t in c3 if t == a.name) == list(range(10))


def test_interleaved_abandons_a_failing_target_and_goes_on_with_the_others(tmp_path):
    good, bad = make_target("containerd"), make_target("crio", extra={"fails": True})

    class Failing(FakeLevel):
        def lifecycle(self, turn: Turn) -> Outcome:
            if self.target is not None and self.target.stack is not None and self.target.stack.extra.get("fails"):
                return Outcome([Timed("Make", 0, 1, None, "boom")])
            return super().lifecycle(turn)

    ctx, rec = make_ctx(tmp_path, [good, bad], levels=("fake",), iterations=20, warmup=0, max_failures=3, seed=1)
    schedule.run(schedule.plan(ctx, {"fake": Failing}), ctx)
    life = [e for e in rec.of(Lifecycle) if isinstance(e, Lifecycle)]
    assert sum(1 for e in life if e.target.startswith("crio")) == 3
    assert sum(1 for e in life if e.target.startswith("containerd") and e.ok) == 20
    (err,) = rec.of(Error)
    assert isinstance(err, Error) and "abandoned" in err.message and err.target.startswith("crio")
    assert sorted(FakeLevel.closed) == sorted([good.name, bad.name])


def test_interleaved_stop_ends_the_rounds_and_closes_every_open_level(tmp_path):
    a, b = make_target("containerd"), make_target("crio")
    ctx, rec = make_ctx(tmp_path, [a, b], levels=("fake",), iterations=100, warmup=0, concurrency=(1,), seed=3)
    FakeLevel.on_lifecycle = [lambda turn: ctx.stop.set() if turn.iteration == 5 else None]
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    assert sorted(FakeLevel.opened) == sorted(FakeLevel.closed) == sorted([a.name, b.name])
    done = rec.of(Lifecycle)
    assert 11 <= len(done) <= 12, len(done)
    assert len(rec.of(Sample)) == 2 * len(done)


def test_groups_keep_kubelet_levels_apart_and_own_run_levels_alone():
    from bench.node.levels import load

    t1, t2 = make_target("containerd"), make_target("docker")
    names = ["cri", "engine", "split", "density", "kube", "kubelet", "oci"]
    units = [schedule.Unit(load(n), t) for t in (t1, t2) for n in names]
    got = [(g, sorted({u.level.name for u in us}), len(us)) for g, us in schedule.groups(units)]
    assert got == [
        ("lifecycle", ["cri", "engine", "oci"], 6),
        ("split", ["split"], 2),
        (None, ["density"], 1),
        (None, ["density"], 1),
        ("kube", ["kube"], 2),
        ("kubelet", ["kubelet"], 2),
    ]


def test_a_closed_event_stream_stops_like_a_stop_order(tmp_path):
    ctx, rec = make_ctx(tmp_path, [make_target()], levels=("fake",), iterations=100, warmup=0, concurrency=(1,))
    FakeLevel.on_lifecycle = [lambda turn: rec.closed.set() if turn.iteration == 2 else None]
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    assert len(rec.of(Lifecycle)) == 3


def test_a_level_that_raises_fails_its_lifecycles_and_one_that_cannot_open_spares_the_others(tmp_path):
    FakeLevel.script = {1: "raise"}
    broken, good = make_target("docker", extra={"broken": True}), make_target("containerd")
    ctx, rec = make_ctx(tmp_path, [broken, good], levels=("fake",), iterations=3, warmup=0, concurrency=(1,))
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    errors = [e for e in rec.of(Error) if isinstance(e, Error)]
    assert [(e.target, e.message) for e in errors] == [(broken.name, "level fake: RuntimeError: cannot open")]
    assert FakeLevel.opened == [good.name]
    life = {e.iteration: e.ok for e in rec.of(Lifecycle) if isinstance(e, Lifecycle)}
    assert life == {0: True, 1: False, 2: True}
    assert any(isinstance(w, Warning) and "driver bug" in w.message for w in rec.events)


def test_before_target_runs_once_per_target_before_its_first_level(tmp_path):
    class Second(FakeLevel):
        name = "second"

    t = make_target()
    ctx, _ = make_ctx(tmp_path, [t], levels=("fake", "second"), iterations=1, warmup=0, concurrency=(1,))
    seen: list[tuple[str, list[str]]] = []
    units = schedule.plan(ctx, {"fake": FakeLevel, "second": Second})
    schedule.run(units, ctx, before_target=lambda target, _t, _e: seen.append((target.name, list(FakeLevel.opened))))
    assert seen == [(t.name, [])]
    assert FakeLevel.opened == [t.name, t.name]


def test_density_plans_its_pod_count_and_events_cross_the_wire_unchanged(tmp_path):
    from bench.node.levels.density import DensityLevel

    ctx, rec = make_ctx(
        tmp_path, [make_target()], levels=("density",), iterations=5, density=Density(steps=(2, 7), hold_s=0)
    )
    schedule.plan(ctx, {"density": DensityLevel})
    (plan,) = rec.of(Plan)
    out = io.StringIO()
    emit = Emitter(out)
    emit(plan)
    assert emit.drain(5)
    assert decode_event(out.getvalue()) == plan
    assert json.loads(out.getvalue())["lifecycles"] == 7


def test_job_round_trip_keeps_the_typed_scenario():
    scen = Scenario(name="q", path="q.yaml", sha256="x", text="", iterations=7, concurrency=(1, 2))
    job = Job(run_id="r", node="n", scenario=scen, heartbeat_s=2.5)
    back = Job.decode(job.encode())
    assert back == job and back.scen.concurrency == (1, 2)
    with pytest.raises(ValueError, match="job.scenario.iterations"):
        Job.decode(job.encode().replace('"iterations": 7', '"iterations": "7"'))
    with pytest.raises(ValueError, match="unknown field"):
        Job.decode(json.dumps({**json.loads(job.encode()), "extra": 1}))
    assert dataclasses.replace(job, mode="check").mode == "check"


def test_a_level_without_lifecycles_raises_unsupported_op_never_a_zero(tmp_path):
    from bench.node.levels import UnsupportedOp
    from bench.node.levels.cli import CliLevel

    ctx, _ = make_ctx(tmp_path, [], levels=("cli",))
    with pytest.raises(UnsupportedOp), CliLevel.open(None, ctx) as level:
        level.lifecycle(Turn(0))


def test_the_kubelet_config_is_loopback_only_and_refuses_cgroup_v1_only_where_the_node_has_v2(tmp_path):
    from bench.node.kubeletd import config

    stack = make_target().stack
    assert stack is not None
    conf = config(stack, tmp_path / "root", 10350, 10348, "/hopbench-kube-x", cgroup_v1=True)
    assert conf["failCgroupV1"] is False and conf["cgroupRoot"] == "/hopbench-kube-x"
    assert conf["address"] == conf["healthzBindAddress"] == "127.0.0.1" and conf["readOnlyPort"] == 0
    assert conf["containerRuntimeEndpoint"] == stack.cri_endpoint
    assert conf["authorization"] == {"mode": "AlwaysAllow"} and conf["imageGCHighThresholdPercent"] == 100
    assert config(stack, tmp_path / "root", 1, 2, "/x", cgroup_v1=False)["failCgroupV1"] is True
    assert conf["cgroupDriver"] == "cgroupfs"
    assert config(stack, tmp_path / "root", 1, 2, "/x", True, cgroup_driver="systemd")["cgroupDriver"] == "systemd"


def test_the_kubelet_cgroup_root_is_a_slice_with_the_systemd_driver_as_kubelet_names_it():
    from bench.node.kubeletd import cgroup_root_of, node_name_of

    # kubelet's CgroupName.ToSystemd: '-' is a step in the slice hierarchy, so it becomes '_'
    assert cgroup_root_of("containerd-2.4.2", "cgroupfs") == ("/hopbench-kube-containerd-2.4.2",) * 2
    assert cgroup_root_of("containerd-2.4.2", "systemd") == (
        "/hopbench-kube-containerd-2.4.2",
        "/hopbench_kube_containerd_2.4.2.slice",
    )
    # a twin's '+' is no character of a unit name, nor of a node name
    assert cgroup_root_of("docker-29.1.2+cgroupfs", "systemd")[1] == "/hopbench_kube_docker_29.1.2_cgroupfs.slice"
    stack = make_target().stack
    assert stack is not None
    twin = dataclasses.replace(stack, name="containerd@2.4.2+cgroupfs")
    assert node_name_of(twin) == "hb-kube-containerd-2.4.2-cgroupfs"


def test_levels_kube_and_kubelet_apply_to_the_default_handler_of_a_stack_with_what_they_need(tmp_path):
    from bench.node.levels.kube import KubeLevel
    from bench.node.levels.kubelet import KubeletLevel

    (tmp_path / "stacks").mkdir()
    runc, crun = make_target(), make_target(handler="crun")
    for t in (runc, crun):
        object.__setattr__(t.stack, "description_path", str(tmp_path / "stacks" / "containerd.json"))
    for level in (KubeLevel, KubeletLevel):
        assert "hopbench provision --playbook kube.yml" in level.applies(runc)
    (tmp_path / "kube.json").write_text("{}")
    assert KubeletLevel.applies(runc) == ""
    # Level kube also needs the control plane.
    assert "control plane" in KubeLevel.applies(runc)
    (tmp_path / "control-plane.json").write_text("{}")
    assert KubeLevel.applies(runc) == ""
    # A RuntimeClass runs crun through the API server; a standalone kubelet has none.
    assert KubeLevel.applies(crun) == "" and "no RuntimeClass" in KubeletLevel.applies(crun)
    docker = make_target("docker", handler="crun")
    object.__setattr__(docker.stack, "description_path", str(tmp_path / "stacks" / "docker.json"))
    assert "cri-dockerd serves one runtime handler" in KubeLevel.applies(docker)


def test_interleaved_bursts_record_the_agents_own_queueing_per_concurrency(tmp_path):

    a, b = make_target("containerd"), make_target("crio")
    ctx, rec = make_ctx(tmp_path, [a, b], levels=("fake",), iterations=8, warmup=0, concurrency=(1, 4), seed=1)
    FakeLevel.on_lifecycle = [lambda turn: time.sleep(0.01)]
    schedule.run(schedule.plan(ctx, {"fake": FakeLevel}), ctx)
    arts = [e for e in rec.of(Artifact) if isinstance(e, Artifact) and e.name.startswith("client-load/")]
    assert [x.name for x in arts] == ["client-load/lifecycle.json"]
    load = json.loads(arts[0].content)
    assert set(load) == {"1", "4"}
    assert load["1"]["bursts"] == 16 and load["4"]["bursts"] == 4  # 8 rounds x 2 targets, 2 rounds x 2
    assert load["4"]["lifecycles"] == 16 and load["4"]["start_lag_ms"]["n"] == 16  # every worker released once
    assert 0 <= load["4"]["start_lag_ms"]["p50"] < 1000
    assert load["4"]["probe_lag_ms"]["n"] > 0  # the probe woke while the 10 ms lifecycles ran
    assert 0 < load["4"]["agent_cores"] < 2.5


def test_a_second_agent_is_refused_with_the_first_ones_run_id_and_pid(tmp_path):
    from bench.errors import ComponentError
    from bench.node.protocol import node_lock

    lock = str(tmp_path / "agent.lock")
    with node_lock(lock, "run-A"):
        with (
            pytest.raises(ComponentError, match=rf"run run-A, agent PID {os.getpid()}; lock {lock}"),
            node_lock(lock, "run-B"),
        ):
            pass
        assert Path(lock).read_text() == f"{os.getpid()} run-A\n"  # the refused one wiped nothing
    with node_lock(lock, "run-C"):  # released: the next one takes it
        assert Path(lock).read_text() == f"{os.getpid()} run-C\n"


def test_a_per_node_level_runs_without_an_available_target_only_when_it_measures_no_stack(tmp_path):
    """A node whose stacks are all unavailable plans no per-node level that measures them (cli),
    but plans one that stands in for every stack (nullcri: the harness and its stream alone)."""

    class NodeLevel(FakeLevel):
        name = "node"
        per = "node"
        group: ClassVar[str | None] = None

    class Harness(NodeLevel):
        name = "harness"
        needs_target: ClassVar[bool] = False

    ctx, _ = make_ctx(tmp_path, [], levels=("node", "harness"), iterations=1, warmup=0, concurrency=(1,))
    units = schedule.plan(ctx, {"node": NodeLevel, "harness": Harness})
    assert [(u.level, u.target) for u in units] == [(Harness, None)]
    ctx, _ = make_ctx(tmp_path, [make_target()], levels=("node",), iterations=1, warmup=0, concurrency=(1,))
    assert [u.level for u in schedule.plan(ctx, {"node": NodeLevel})] == [NodeLevel]
