"""What crosses the node boundary: the job and every event, one dataclass each.

The controller sends one `Job` (the scenario inside it as the typed `Scenario`) on the
agent's stdin; the agent answers with one JSON line per event. Both ends encode and decode
with the same functions (bench.codec) (pyperf's shape: the same classes on both sides of the pipe),
so a field is written once, in its dataclass. `bench.codec` maps any of these
dataclasses to plain JSON data and back, checking every field against its type; a line
that does not fit raises MessageError naming the event and the field.

The SSH transport uploads this package's node side with this module, so the agent and the
controller of one run always speak the same version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bench.codec import MessageError, from_data, to_data
from bench.scenario import Scenario

LOCK_PATH = "/run/hopbench/agent.lock"
STACKS_DIR = "/etc/hopbench/stacks"
WORKLOAD_ARCHIVE = "/var/lib/hopbench/images/workload.oci.tar"


# --- the job -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What the agent is asked to do: run the scenario ("run"), list targets ("targets"), say
    what an earlier run left on the node ("check"), or what the node has ("doctor")."""

    run_id: str
    node: str
    scenario: Scenario | None = None
    mode: str = "run"
    check_run_id: str = ""
    stacks_dir: str = STACKS_DIR
    lock_path: str = LOCK_PATH
    heartbeat_s: float = 0.0
    stop_on_eof: bool = False
    # Stop and clean up when no line (a "ping" or an order) came from the controller for this long
    # (0: never). A link that dies silently leaves the session open; the agent must not wait on it.
    watchdog_s: float = 0.0
    workload_archive: str = WORKLOAD_ARCHIVE

    def encode(self) -> str:
        return json.dumps(to_data(self))

    @classmethod
    def decode(cls, line: str) -> Job:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MessageError(f"job: not JSON ({exc})") from exc
        job = from_data(cls, data, "job")
        if job.mode not in ("run", "targets", "check", "doctor"):
            raise MessageError(f"job.mode: expected run, targets, check or doctor, got {job.mode!r}")
        if job.mode in ("run", "targets") and job.scenario is None:
            raise MessageError("job.scenario: a scenario is needed to run or list targets")
        return job

    @property
    def scen(self) -> Scenario:
        if self.scenario is None:
            raise MessageError(f"job {self.run_id}: mode {self.mode} has no scenario")
        return self.scenario


# --- events ------------------------------------------------------------------------------

EVENTS: dict[str, type[Event]] = {}


@dataclass(frozen=True)
class Event:
    """One line the agent sends; `kind` is its "event" field."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            EVENTS[cls.kind] = cls

    def record(self) -> dict[str, Any]:
        """The event as stored in a run folder: its fields and its kind."""
        return {"event": self.kind, **to_data(self)}

    def encode(self) -> str:
        return json.dumps(self.record(), default=str)


def decode_event(line: str) -> Event:
    """One agent line as its event; MessageError when it is not one."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MessageError(f"not JSON: {line[:200]}") from exc
    if not isinstance(data, dict) or data.get("event") not in EVENTS:
        raise MessageError(f"not a known event: {line[:200]}")
    cls = EVENTS[data.pop("event")]
    return from_data(cls, data, cls.kind)


@dataclass(frozen=True)
class Hello(Event):
    kind: ClassVar[str] = "hello"
    agent_version: str
    pid: int


@dataclass(frozen=True)
class Meta(Event):
    """The node's facts at the start (bench.node.nodeinfo)."""

    kind: ClassVar[str] = "meta"
    node: dict[str, Any]


@dataclass(frozen=True)
class TargetInfo:
    """One stack instance/handler pair of the node: available or why not, component versions."""

    target: str
    stack: str
    kind: str
    version: str
    default: bool
    handler: str
    available: bool
    reason: str
    versions: dict[str, str] = field(default_factory=dict)
    stack_extra: dict[str, Any] = field(default_factory=dict)
    handler_extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Targets(Event):
    kind: ClassVar[str] = "targets"
    targets: tuple[TargetInfo, ...]


@dataclass(frozen=True)
class Plan(Event):
    kind: ClassVar[str] = "plan"
    lifecycles: int
    targets: tuple[str, ...]
    levels: tuple[str, ...]


@dataclass(frozen=True)
class PlanAdd(Event):
    kind: ClassVar[str] = "plan_add"
    lifecycles: int


@dataclass(frozen=True)
class Sample(Event):
    """One timed op (the row of samples.parquet)."""

    kind: ClassVar[str] = "sample"
    run_id: str
    node: str
    stack: str
    handler: str
    level: str
    op: str
    iteration: int
    concurrency: int
    worker: int
    warmup: bool
    start_ns: int
    duration_ns: int
    ok: bool
    error: str


@dataclass(frozen=True)
class Check(Event):
    """A workload check of one lifecycle: the container ran and stopped as it must."""

    kind: ClassVar[str] = "check"
    target: str
    level: str
    iteration: int
    concurrency: int
    check: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Lifecycle(Event):
    """One lifecycle done (progress); iteration -1 for a whole cli command."""

    kind: ClassVar[str] = "lifecycle"
    target: str
    concurrency: int
    iteration: int
    ok: bool


@dataclass(frozen=True)
class Info(Event):
    kind: ClassVar[str] = "info"
    message: str
    target: str = ""
    level: str = ""


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - the event's name on the wire
    kind: ClassVar[str] = "warning"
    message: str
    target: str = ""


@dataclass(frozen=True)
class Error(Event):
    kind: ClassVar[str] = "error"
    message: str
    target: str = ""


@dataclass(frozen=True)
class Traced(Event):
    """Where a traced lifecycle of level split ran: the fields Split and Call share."""

    run_id: str
    node: str
    stack: str
    handler: str
    iteration: int
    concurrency: int
    worker: int
    warmup: bool


@dataclass(frozen=True)
class Split(Traced):
    """One CRI op of level split cut into parts (ns); the parts sum to duration_ns."""

    kind: ClassVar[str] = "split"
    op: str
    start_ns: int
    duration_ns: int
    calls: str
    before_ns: int
    network_ns: int
    runtime_ns: int
    between_ns: int
    after_ns: int


@dataclass(frozen=True)
class Pull(Traced):
    """One timed PullImage of level image: what it moved and what the node spent on it.

    `wire_bytes`: what the node's end of the registry link received during the pull (at
    concurrency above 1 other pulls' bytes are in it too); `round_wire_bytes`: what it received
    from the start of the round's first pull of this kind to the end of its last (-1 unknown);
    `cpu_s`: the node's busy CPU seconds (every core, /proc/stat) during it; `blob_bytes`: the
    image's compressed layers; `link`: the link's shape ('' as provisioned); `same`: the workers
    of the round pulled this one image together."""

    kind: ClassVar[str] = "pull"
    op: str
    image: str
    rung: str
    mode: str
    layers: int
    blob_bytes: int
    wire_bytes: int
    cpu_s: float
    start_ns: int
    duration_ns: int
    ok: bool
    link: str = ""
    same: bool = False
    round_wire_bytes: int = -1


@dataclass(frozen=True)
class Span(Traced):
    """One OpenTelemetry span of a traced run (bench.node.traces): ours (service `hopbench`: a
    lifecycle's root and a client span per CRI call, with the lifecycle's place) or a daemon's
    (from the agent's OTLP receiver: iteration -1, joined to ours by trace id). Ids are hex,
    times Unix ns; `status` is OTLP's code (0 unset, 1 ok, 2 error); `attributes` a JSON object
    of the few attributes kept; `level` the level of our lifecycle ('' for a daemon's span)."""

    kind: ClassVar[str] = "span"
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    span_kind: str
    start_unix_ns: int
    end_unix_ns: int
    status: int
    attributes: str
    level: str = ""


@dataclass(frozen=True)
class Call(Traced):
    """One runtime or CNI call the wrapper recorded during a level-split lifecycle."""

    kind: ClassVar[str] = "call"
    op: str
    call_kind: str
    command: str
    object: str
    entry_ns: int
    fork_ns: int
    exit_ns: int
    status: int

    def record(self) -> dict[str, Any]:
        # Stored with the trace's own name for the field ("kind": oci or cni).
        rec = super().record()
        rec["kind"] = rec.pop("call_kind")
        return rec

    def encode(self) -> str:
        return json.dumps({"event": self.kind, **to_data(self)})


@dataclass(frozen=True)
class Memory(Event):
    """One sweep of the memory sampler: a row per process."""

    kind: ClassVar[str] = "memory"
    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SamplerStats(Event):
    kind: ClassVar[str] = "sampler"
    target: str
    stats: dict[str, Any]


@dataclass(frozen=True)
class Artifact(Event):
    """A raw file kept beside the samples (hyperfine's JSON export)."""

    kind: ClassVar[str] = "artifact"
    name: str
    content: str


@dataclass(frozen=True)
class Tool(Event):
    kind: ClassVar[str] = "tool"
    name: str
    version: str


@dataclass(frozen=True)
class Setting(Event):
    """A setting a level chose for this node (not the scenario's), kept in meta.json under
    settings[target][name]: e.g. the kubelet's failCgroupV1 on a cgroup v1 node."""

    kind: ClassVar[str] = "setting"
    target: str
    name: str
    value: Any
    why: str = ""


@dataclass(frozen=True)
class MetaEnd(Event):
    kind: ClassVar[str] = "meta_end"
    clock: dict[str, Any]
    loadavg: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Left(Event):
    """Mode check: the pods a run left on this node, per stack."""

    kind: ClassVar[str] = "left"
    run_id: str
    pods: dict[str, int]


@dataclass(frozen=True)
class Heartbeat(Event):
    kind: ClassVar[str] = "heartbeat"


@dataclass(frozen=True)
class Done(Event):
    kind: ClassVar[str] = "done"
    ok: bool
    interrupted: bool
