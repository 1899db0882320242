"""Scenario files: what to run, how often, at what concurrency, on which targets and levels.

A scenario is a YAML mapping. Every field is checked; an unknown or malformed field raises
ScenarioError naming the file, the field and what was expected, before anything runs. Counts
and durations have upper bounds far beyond real runs (iterations and max_failures 100000,
warmup 10000, concurrency 1024, density steps 10000 pods, regression.history 1000, timeout_s
and workload.stop_timeout_s 3600 s, density durations 86400 s), numbers must be finite, and the
file must be a regular file of at most 1 MiB.

    schema: 1                     # scenario format version
    name: quick                   # short name, used in run ids
    description: free text
    targets: [containerd/runc]    # STACK/HANDLER: the stack's default instance (the newest provisioned);
                                  # STACK@VERSION/HANDLER: the instances whose version matches VERSION
                                  #   (exact, or a pattern: containerd@1.6*/runc, docker@*/runc);
                                  # "all": every handler of every default instance;
                                  # "all@*": every handler of every instance
    levels: [cri]                 # where measurements enter the path, top down:
                                  #   cri         CRI gRPC, the kubelet's requests
                                  #   cri-critest CRI gRPC, critest's requests (hopbench crosscheck)
                                  #   critest     cri-tools' critest -benchmark itself, one sample a round
                                  #   split       the same CRI lifecycles with every runtime and CNI
                                  #               call timed by the wrapper (the in-situ split)
                                  #   engine      Docker Engine API (docker stack)
                                  #   containerd  containerd's API (containerd and docker stacks)
                                  #   oci         the OCI runtime binary on a bundle of the same image
                                  #   control     the node's own speed: CPU loop, syscall loop, runc on a
                                  #               bundle (added to every run unless control: false)
                                  #   nullcri     critest and cri-critest against a CRI server that answers
                                  #               at once: the harness's own cost, the null-target limit
                                  #   cli         whole commands (crictl, ctr, docker, runc) through hyperfine
                                  #   density     fill the node with running pods in steps, sampling the
                                  #               memory of daemons, shims and pods (section density)
                                  #   kube        static pods through a real kubelet (v1.36, standalone)
                                  #               the agent starts per stack: phases to Ready and deletion
                                  #               (hopbench provision --playbook kube.yml first)
                                  #   image       PullImage, ImageStatus, RemoveImage over CRI, the image
                                  #               ladder from the node's registry host, cold and warm
                                  #               (section pull; hopbench provision --playbook registry.yml)
    iterations: 20                # measured pod lifecycles (cli: hyperfine runs) per target and concurrency
    warmup: 2                     # extra lifecycles first, kept and flagged (cli: hyperfine --warmup, not kept)
    concurrency: [1, 2]           # workers running lifecycles at once (cli runs one at a time)
    timeout_s: 60                 # deadline of each CRI call
    max_failures: 5               # failed lifecycles before a target is abandoned
    schedule: interleaved         # interleaved: every round runs one lifecycle (at concurrency c: c at once)
                                  #   of every target and level in a freshly shuffled order, so the node's
                                  #   drift falls on all alike; block: each target's lifecycles in one block
    seed: 1234                    # the shuffles' seed (default: drawn per run; either way in meta.json)
    control: true                 # level control (CPU loop, syscall loop, runc on a bundle) interleaved with
                                  #   the targets in every run: the node's speed, for comparisons across runs
    tracing: false                # OpenTelemetry traces: a trace per lifecycle, our client span per CRI call
                                  #   with its traceparent, and the traced stack instances' own spans
                                  #   (<kind>@<version>+traced; hopbench_tracing_twins) from the agent's
                                  #   OTLP receiver on loopback, into spans.jsonl (bench/node/traces.py)
    workload:
      command: []                 # override the image entrypoint (empty: image default)
      args: []
      stop_timeout_s: 30          # StopContainer grace period (kubelet's default 30)
    density:                      # level density only
      steps: [1, 10, 25, 50]      # running pods to reach, in order (memory is also sampled at 0)
      hold_s: 3                   # at each step, how long pods run before and while memory is sampled
      interval_s: 0.5             # the memory sampler's interval
    pull:                         # level image only
      rungs:                      # the images, each pushed once per run with the run's salt
        - size_mb: 5              #   uncompressed bytes of its own layers (a shared base comes on top)
          layers: 1               #   layers of equal size
          files: one              #   one: a large file per layer; many: files of 16 KiB
          compression: gzip       #   gzip, zstd or none
          same: false             #   true: at concurrency c the c workers of a round pull one image at
                                  #   once (the coalescing path), removed untimed before and after
      links: []                   # the registry link's shapes, each rung pulled under each in turn
                                  #   (set untimed between rounds): {rate: 1gbit, rtt_ms: 5}; {} is
                                  #   unshaped; none: the link as provisioned. rtt_ms needs sch_netem
      modes: [cold, warm]         # cold: nothing of the image in the store; warm: all of it there,
                                  #   the manifest re-resolved (imagePullPolicy: Always on an unchanged tag)
      in_pod_start: false         # levels kube and kubelet: the pod's image is the first rung, removed
                                  #   from the store before each pod (untimed) and pulled by the kubelet
                                  #   (imagePullPolicy: Always), so pod start-up includes the pull
    regression:                   # hopbench nightly only
      threshold_pct: 10           # a rejected row counts as a regression beyond this ratio change
      history: 7                  # complete earlier runs of this scenario and node in the baseline
      alpha: 0.05                 # the gate's false-alarm rate per night (Holm over the rows; bench/controller/gate.py)
"""

from __future__ import annotations

import hashlib
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.codec import field_names, to_data
from bench.errors import InputError
from bench.levelnames import LEVELS

SCENARIO_SCHEMA = 1
STACKS = ("containerd", "crio", "docker")
HANDLERS = ("runc", "crun", "runsc", "kata")
# The levels a scenario may name (LEVELS): bench.levelnames, in the order a target runs them.


class ScenarioError(InputError):
    """A scenario file that cannot be used; the message names file, field and expectation."""

    def __init__(self, path: str | Path, field_name: str, expected: str, got: object = None) -> None:
        self.path, self.field, self.expected = str(path), field_name, expected
        got_text = "" if got is None else f", got {got!r}"
        super().__init__(f"{path}: field '{field_name}': expected {expected}{got_text}")


@dataclass(frozen=True)
class Workload:
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    stop_timeout_s: int = 30


@dataclass(frozen=True)
class Density:
    steps: tuple[int, ...] = (1, 10, 25, 50)
    hold_s: float = 3.0
    interval_s: float = 0.5


PULL_FILES = ("one", "many")
PULL_COMPRESSIONS = ("gzip", "zstd", "none")
PULL_MODES = ("cold", "warm")
MAX_RUNG_MB = 100_000


@dataclass(frozen=True)
class PullRung:
    """One image of the ladder (bench.node.ladder.Rung): size in MB of 10^6 bytes."""

    size_mb: float = 5
    layers: int = 1
    files: str = "one"
    compression: str = "gzip"
    same: bool = False


@dataclass(frozen=True)
class PullLink:
    """A shape of the registry link (ansible/roles/registry/files/registry_link.py): a rate for
    tbf, a round trip for netem; neither is the unshaped link."""

    rate: str = ""
    rtt_ms: float = 0.0

    @property
    def label(self) -> str:
        """How ops and reports name it: 1gbit, 1gbit+5ms, 5ms, unshaped."""
        parts = [self.rate] if self.rate else []
        if self.rtt_ms:
            parts.append(f"{self.rtt_ms:g}ms")
        return "+".join(parts) or "unshaped"


@dataclass(frozen=True)
class Pull:
    rungs: tuple[PullRung, ...] = (PullRung(),)
    links: tuple[PullLink, ...] = ()
    modes: tuple[str, ...] = PULL_MODES
    in_pod_start: bool = False


@dataclass(frozen=True)
class Regression:
    threshold_pct: float = 10.0
    history: int = 7
    alpha: float = 0.05


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    sha256: str
    text: str
    description: str = ""
    targets: tuple[str, ...] = ("all",)
    levels: tuple[str, ...] = ("cri",)
    iterations: int = 20
    warmup: int = 2
    concurrency: tuple[int, ...] = (1,)
    timeout_s: float = 60.0
    max_failures: int = 5
    workload: Workload = field(default_factory=Workload)
    density: Density = field(default_factory=Density)
    pull: Pull = field(default_factory=Pull)
    regression: Regression = field(default_factory=Regression)
    schedule: str = "interleaved"
    seed: int | None = None
    control: bool = True
    tracing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The scenario as stored in a run's meta.json (its text is stored beside it)."""
        data: dict[str, Any] = to_data(self)
        del data["text"]
        return data


# Fields a scenario file may have: the dataclass's, less what the loader fills in itself.
FILE_FIELDS = ("schema", *(f for f in field_names(Scenario) if f not in ("path", "sha256", "text")))


# Upper bounds of counts and durations: far beyond any real run, low enough that a typo
# (10^29 iterations) is refused at the door instead of starting a run that never ends.
MAX_FILE_BYTES = 1 << 20
MAX_ITERATIONS = 100_000
MAX_CONCURRENCY = 1024
MAX_PODS = 10_000
MAX_HISTORY = 1000
MAX_SECONDS = 86_400.0
SCHEDULES = ("interleaved", "block")
MAX_SEED = 2**63 - 1


def _int(path: Path, name: str, value: object, minimum: int, maximum: int = MAX_ITERATIONS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ScenarioError(path, name, f"an integer from {minimum} to {maximum}", value)
    return value


def _str_list(path: Path, name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(path, name, "a list of strings", value)
    return tuple(value)


_VERSION_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+*?")


def _target(path: Path, name: str, value: object) -> str:
    if value in ("all", "all@*"):
        return str(value)
    expected = (
        "'all', 'all@*', STACK/HANDLER such as containerd/runc or STACK@VERSION/HANDLER such as containerd@2.4.2/runc"
    )
    if not isinstance(value, str) or value.count("/") != 1:
        raise ScenarioError(path, name, expected, value)
    stack, handler = value.split("/")
    stack, at, version = stack.partition("@")
    if at and (not version or not set(version) <= _VERSION_CHARS):
        raise ScenarioError(path, name, f"{expected} (VERSION: letters, digits, . - _ + and the patterns * ?)", value)
    if stack not in STACKS:
        raise ScenarioError(path, name, f"a stack among {', '.join(STACKS)}", stack)
    if handler not in HANDLERS:
        raise ScenarioError(path, name, f"a handler among {', '.join(HANDLERS)}", handler)
    return value


def _section(path: Path, name: str, value: object, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A scenario section: a mapping of known fields, returned as such."""
    if not isinstance(value, dict):
        raise ScenarioError(path, name, f"a mapping with {', '.join(allowed)}", value)
    for key in value:
        if key not in allowed:
            raise ScenarioError(path, f"{name}.{key}", f"one of {', '.join(sorted(allowed))} (unknown field)")
    return value


def _workload(path: Path, value: object) -> Workload:
    section = _section(path, "workload", value, field_names(Workload))
    return Workload(
        command=_str_list(path, "workload.command", section.get("command", [])),
        args=_str_list(path, "workload.args", section.get("args", [])),
        stop_timeout_s=_int(path, "workload.stop_timeout_s", section.get("stop_timeout_s", 30), 0, 3600),
    )


def _seconds(path: Path, name: str, value: object, minimum: float, maximum: float = MAX_SECONDS) -> float:
    # NaN fails both comparisons, infinity the upper bound.
    if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= maximum:
        raise ScenarioError(path, name, f"a finite number of seconds from {minimum:g} to {maximum:g}", value)
    return float(value)


def _density(path: Path, value: object) -> Density:
    section = _section(path, "density", value, field_names(Density))
    steps = section.get("steps", [1, 10, 25, 50])
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(path, "density.steps", "a non-empty list of increasing pod counts", steps)
    counts = tuple(_int(path, f"density.steps[{i}]", s, 1, MAX_PODS) for i, s in enumerate(steps))
    if any(b <= a for a, b in zip(counts, counts[1:], strict=False)):
        raise ScenarioError(path, "density.steps", "strictly increasing pod counts", steps)
    return Density(
        steps=counts,
        hold_s=_seconds(path, "density.hold_s", section.get("hold_s", 3), 0),
        interval_s=_seconds(path, "density.interval_s", section.get("interval_s", 0.5), 0.05),
    )


def _rung(path: Path, name: str, value: object) -> PullRung:
    section = _section(path, name, value, field_names(PullRung))
    size = section.get("size_mb", 5)
    if isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size <= MAX_RUNG_MB:
        raise ScenarioError(path, f"{name}.size_mb", f"a size in MB above 0 and at most {MAX_RUNG_MB}", size)
    files, compression = section.get("files", "one"), section.get("compression", "gzip")
    if files not in PULL_FILES:
        raise ScenarioError(path, f"{name}.files", f"one of {', '.join(PULL_FILES)}", files)
    if compression not in PULL_COMPRESSIONS:
        raise ScenarioError(path, f"{name}.compression", f"one of {', '.join(PULL_COMPRESSIONS)}", compression)
    layers = _int(path, f"{name}.layers", section.get("layers", 1), 1, 500)
    if size * 1_000_000 < layers:
        raise ScenarioError(path, f"{name}.layers", "at most one layer per byte of size_mb", layers)
    same = section.get("same", False)
    if not isinstance(same, bool):
        raise ScenarioError(path, f"{name}.same", "true or false", same)
    return PullRung(size_mb=float(size), layers=layers, files=str(files), compression=str(compression), same=same)


RATE = re.compile(r"\d+(\.\d+)?[kmgt]?bit")


def _link(path: Path, name: str, value: object) -> PullLink:
    section = _section(path, name, value, field_names(PullLink))
    rate = section.get("rate", "")
    if not isinstance(rate, str) or (rate and not RATE.fullmatch(rate)):
        raise ScenarioError(
            path, f"{name}.rate", "a rate like 1gbit or 500mbit (tc's units: bit, kbit, mbit, gbit)", rate
        )
    rtt = section.get("rtt_ms", 0)
    if isinstance(rtt, bool) or not isinstance(rtt, int | float) or not 0 <= rtt <= 10_000:
        raise ScenarioError(path, f"{name}.rtt_ms", "a round trip in ms from 0 to 10000", rtt)
    return PullLink(rate=rate, rtt_ms=float(rtt))


def _pull(path: Path, value: object) -> Pull:
    section = _section(path, "pull", value, field_names(Pull))
    rungs = section.get("rungs", [{}])
    if not isinstance(rungs, list) or not rungs:
        raise ScenarioError(
            path, "pull.rungs", "a non-empty list of images (size_mb, layers, files, compression)", rungs
        )
    parsed = tuple(_rung(path, f"pull.rungs[{i}]", r) for i, r in enumerate(rungs))
    if len(set(parsed)) != len(parsed):
        raise ScenarioError(path, "pull.rungs", "distinct images (the same rung twice)", rungs)
    links_in = section.get("links", [])
    if not isinstance(links_in, list):
        raise ScenarioError(path, "pull.links", "a list of link shapes ({rate, rtt_ms})", links_in)
    links = tuple(_link(path, f"pull.links[{i}]", x) for i, x in enumerate(links_in))
    if len({x.label for x in links}) != len(links):
        raise ScenarioError(path, "pull.links", "distinct link shapes (the same shape twice)", links_in)
    modes = _str_list(path, "pull.modes", section.get("modes", list(PULL_MODES)))
    if not modes or any(m not in PULL_MODES for m in modes) or len(set(modes)) != len(modes):
        raise ScenarioError(
            path, "pull.modes", f"a non-empty list of distinct modes from {', '.join(PULL_MODES)}", list(modes)
        )
    in_pod_start = section.get("in_pod_start", False)
    if not isinstance(in_pod_start, bool):
        raise ScenarioError(path, "pull.in_pod_start", "true or false", in_pod_start)
    return Pull(rungs=parsed, links=links, modes=tuple(m for m in PULL_MODES if m in modes), in_pod_start=in_pod_start)


def _regression(path: Path, value: object) -> Regression:
    section = _section(path, "regression", value, field_names(Regression))
    threshold = section.get("threshold_pct", 10)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 100:
        raise ScenarioError(path, "regression.threshold_pct", "a percentage from 0 to 100", threshold)
    alpha = section.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ScenarioError(path, "regression.alpha", "a probability between 0 and 1", alpha)
    history = _int(path, "regression.history", section.get("history", 7), 1, MAX_HISTORY)
    return Regression(float(threshold), history, float(alpha))


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raise ScenarioError on the first problem."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device (/dev/zero) would block or never end
            raise ScenarioError(path, "(file)", "a regular scenario file", "not a regular file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(path, "(file)", "a readable scenario file", exc.strerror) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(path, "(file)", f"a scenario file of at most {MAX_FILE_BYTES} bytes", "a larger file")
    text = raw.decode("utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
    except RecursionError as exc:
        raise ScenarioError(path, "(document)", "a YAML document nested a sane number of levels", "deeper") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(path, "(document)", f"valid YAML{where}", str(exc).splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ScenarioError(path, "(document)", "a mapping of scenario fields", type(data).__name__)

    for key in data:
        if key not in FILE_FIELDS:
            raise ScenarioError(path, str(key), f"one of {', '.join(sorted(FILE_FIELDS))} (unknown field)")
    if data.get("schema") != SCENARIO_SCHEMA:
        raise ScenarioError(path, "schema", f"{SCENARIO_SCHEMA}", data.get("schema"))
    name = data.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ScenarioError(path, "name", "a non-empty name of letters, digits, '-' and '_'", name)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(path, "description", "a string", description)

    raw_targets = data.get("targets", ["all"])
    if raw_targets == "all":
        raw_targets = ["all"]
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ScenarioError(path, "targets", "'all' or a non-empty list of STACK/HANDLER", raw_targets)
    targets = tuple(_target(path, f"targets[{i}]", t) for i, t in enumerate(raw_targets))

    levels = _str_list(path, "levels", data.get("levels", ["cri"]))
    if not levels:
        raise ScenarioError(path, "levels", f"a non-empty list among {', '.join(LEVELS)}", [])
    for i, level in enumerate(levels):
        if level not in LEVELS:
            raise ScenarioError(path, f"levels[{i}]", f"a level among {', '.join(LEVELS)}", level)

    concurrency = data.get("concurrency", [1])
    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        concurrency = [concurrency]
    if not isinstance(concurrency, list) or not concurrency:
        raise ScenarioError(path, "concurrency", "a positive integer or a non-empty list of them", concurrency)
    conc = tuple(_int(path, f"concurrency[{i}]", c, 1, MAX_CONCURRENCY) for i, c in enumerate(concurrency))

    timeout = data.get("timeout_s", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ScenarioError(path, "timeout_s", "a positive, finite number of seconds up to 3600", timeout)

    schedule = data.get("schedule", "interleaved")
    if schedule not in SCHEDULES:
        raise ScenarioError(path, "schedule", f"one of {', '.join(SCHEDULES)}", schedule)
    control = data.get("control", True)
    if not isinstance(control, bool):
        raise ScenarioError(path, "control", "true or false", control)
    seed = data.get("seed")
    if seed is not None:
        seed = _int(path, "seed", seed, 0, MAX_SEED)
    tracing = data.get("tracing", False)
    if not isinstance(tracing, bool):
        raise ScenarioError(path, "tracing", "true or false", tracing)

    return Scenario(
        name=name,
        path=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        text=text,
        description=description,
        targets=targets,
        levels=levels,
        iterations=_int(path, "iterations", data.get("iterations", 20), 1),
        warmup=_int(path, "warmup", data.get("warmup", 2), 0, 10_000),
        concurrency=conc,
        timeout_s=float(timeout),
        max_failures=_int(path, "max_failures", data.get("max_failures", 5), 1, MAX_ITERATIONS),
        workload=_workload(path, data.get("workload", {})),
        density=_density(path, data.get("density", {})),
        pull=_pull(path, data.get("pull", {})),
        regression=_regression(path, data.get("regression", {})),
        schedule=str(schedule),
        seed=seed,
        control=control,
        tracing=tracing,
    )
