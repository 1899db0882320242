"""The `image` level: image pulls over CRI from the node's registry host, as kubelet asks for them.

The images are the scenario's ladder (section `pull`, bench.node.ladder): written and pushed
once per run and node with the run's salt, so no store has seen them, the same images for every
stack. At concurrency above 1 each worker pulls its own copy (distinct images that share no
layer), or, for a rung with `same: true`, the workers of a round pull one image together (the
coalescing path: does the stack fetch it once?).

One lifecycle, for each link shape of the scenario (`links`; none: the link as provisioned) and
each rung of the ladder in the scenario's order (a step, `<rung>[ at <link>][ same]`):

    PullImage cold <step>   nothing of the image in the stack's store
    ImageStatus <step>
    PullImage warm <step>   every layer there, the manifest resolved again (imagePullPolicy:
                            Always on an unchanged tag)
    RemoveImage <step>      by image id, as kubelet's image garbage collection asks (cri-dockerd
                            answers a removal by tag with success and removes nothing); not for
                            a `same` step, whose image one worker removes untimed

With `modes: [warm]` the image is pulled untimed before its warm pull; with `modes: [cold]`
there is no warm pull. The requests are kubelet's: an ImageSpec with the reference alone, no
auth, no sandbox config. Untimed, before each cold pull: the image removed if the store has it,
and the check that the store is empty of the image's own layers (containerd's content store, CRI-O's containers-storage,
dockerd's image list), so the next cold pull starts from nothing; a layer still there after
10 s fails the lifecycle's check ("image-cold"). Each timed PullImage also gives a Pull event:
bytes the node received on the registry link (during the pull, and during the round's pulls of
that kind), the node's busy CPU seconds, the image's layers and compressed bytes, the link's shape.

The workers of a round meet before each step and around its pulls (a barrier per round): the
link is reshaped there (bench's registry_link.py --shape-only, untimed, once per shape), a
`same` image is made absent there by one worker, and the round's wire bytes are read there. A
worker whose lifecycle fails breaks its round's barrier, so the others stop instead of waiting.
When the level closes, the link gets its provisioned shape back.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import psutil
from cri_api.v1 import api_pb2 as cri

from bench import stacks
from bench.errors import ComponentError
from bench.messages import Event, Pull
from bench.node import ladder
from bench.node.cri import CriClient
from bench.node.levels import (
    Context,
    Level,
    Outcome,
    Record,
    StopLifecycle,
    Target,
    Timed,
    Turn,
    need_stack,
    timed,
    traced_fields,
)
from bench.node.nodeinfo import REGISTRY_DESCRIPTION
from bench.scenario import PullLink

IMAGES_BIN = Path("/var/lib/hopbench/images/bin")
GONE_WITHIN_S = 10.0


def registry_description(path: Path = REGISTRY_DESCRIPTION) -> dict[str, Any]:
    try:
        desc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ComponentError(
            f"level image needs the node's registry host: {path} is missing"
            " (hopbench provision --playbook registry.yml)"
        ) from None
    except (OSError, ValueError) as e:
        raise ComponentError(f"level image: {path}: {e}") from e
    if not isinstance(desc.get("address"), str):
        raise ComponentError(f"level image: {path}: field 'address': expected host:port")
    return desc


@dataclass(frozen=True)
class Step:
    """One rung of the ladder under one link shape (None: as provisioned), distinct images per
    worker or the `same` one."""

    rung: ladder.Rung
    same: bool = False
    link: PullLink | None = None

    @property
    def label(self) -> str:
        """How ops name it: 100mb-1l-one-gzip, 100mb-1l-one-gzip at 1gbit same."""
        at = f" at {self.link.label}" if self.link is not None else ""
        return f"{self.rung.label}{at}{' same' if self.same else ''}"


def steps_of(pull: Any) -> list[Step]:
    """A scenario's pull section as steps: every rung under the first link shape, then under the next."""
    links: list[PullLink | None] = list(pull.links) or [None]
    return [Step(ladder.Rung.of(r), r.same, link) for link in links for r in pull.rungs]


def ops_of(steps: list[Step], modes: tuple[str, ...]) -> tuple[str, ...]:
    """The ops of one lifecycle, in order."""
    ops: list[str] = []
    for step in steps:
        if "cold" in modes:
            ops.append(f"PullImage cold {step.label}")
        ops.append(f"ImageStatus {step.label}")
        if "warm" in modes:
            ops.append(f"PullImage warm {step.label}")
        if not step.same:
            ops.append(f"RemoveImage {step.label}")
    return tuple(ops)


def busy_cpu_s() -> float:
    """The node's busy CPU seconds so far, every core (user, nice, system, irq, softirq, steal)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


def rx_bytes(link: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{link}/statistics/rx_bytes").read_text())
    except (OSError, ValueError):
        return -1


class RoundBroken(Exception):
    """Another worker of the round left its lifecycle, or the round's untimed work failed."""


class Round:
    """The workers of one round: a barrier, and what its leader found (wire bytes at the start)."""

    def __init__(self, parties: int, timeout_s: float) -> None:
        self.barrier = threading.Barrier(parties)
        self.timeout_s = timeout_s
        self.wire_start = -1
        self.wire_bytes = -1
        self.problem = ""

    def meet(self, action: Any = None) -> None:
        """Every worker of the round here; then one of them runs `action` while the others wait."""
        try:
            leader = self.barrier.wait(self.timeout_s) == 0
            if leader and action is not None:
                try:
                    action()
                except BaseException:
                    self.barrier.abort()
                    raise
            self.barrier.wait(self.timeout_s)
        except threading.BrokenBarrierError:
            raise RoundBroken("another worker of the round stopped") from None


class Ladder:
    """The run's images on one node, written and pushed once (the first target to open builds
    them; the others wait on the lock): {(rung, copy): Image}. The last level of the run to let
    go deletes them from the registry and has the registry collect their blobs."""

    _lock = threading.Lock()
    _built: ClassVar[dict[tuple[str, str], dict[tuple[ladder.Rung, int], ladder.Image]]] = {}
    _users: ClassVar[dict[tuple[str, str], int]] = {}

    @classmethod
    def images(
        cls, run_id: str, address: str, rungs: list[ladder.Rung], copies: int, workdir: Path
    ) -> dict[tuple[ladder.Rung, int], ladder.Image]:
        with cls._lock:
            key = (run_id, address)
            if key not in cls._built:
                cls._built[key] = cls._push(run_id, address, rungs, copies, workdir)
            cls._users[key] = cls._users.get(key, 0) + 1
            return cls._built[key]

    @staticmethod
    def _push(
        run_id: str, address: str, rungs: list[ladder.Rung], copies: int, workdir: Path
    ) -> dict[tuple[ladder.Rung, int], ladder.Image]:
        # A tag starts with a letter or digit (the distribution spec): the random part goes first.
        salt = uuid.uuid4().hex[:8] + "-" + re.sub(r"[^a-z0-9.-]", "-", run_id.lower())[-24:]
        where = workdir / "ladder"
        workload = [(IMAGES_BIN / "workload", "/hopbench-workload", 0o755)]
        # Each copy (a worker's images) has a base of its own, shared by its rungs: a worker's
        # RemoveImage must not take a layer another worker's pull is building on.
        bases = [
            ladder.write_base(where / f"c{c}" / "base.tar.gz", workload, salt=f"{salt}-c{c}") for c in range(copies)
        ]
        registry = ladder.Registry(address)
        built: dict[tuple[ladder.Rung, int], ladder.Image] = {}
        for rung in rungs:
            for copy in range(copies):
                image = ladder.build(rung, f"{salt}-c{copy}", where / f"c{copy}", base=bases[copy])
                registry.push(image)
                built[(rung, copy)] = image
                # The registry has them: the layers on this disk are not needed any more.
                for blob in image.layers[1:]:
                    if blob.path is not None:
                        blob.path.unlink(missing_ok=True)
        return built

    @classmethod
    def release(cls, run_id: str, desc: dict[str, Any]) -> list[str]:
        """One level is done with the run's images; the last one deletes them from the registry
        and runs its garbage collection (untimed, after the run's last pull). What it did or could not do."""
        key = (run_id, str(desc["address"]))
        with cls._lock:
            cls._users[key] = cls._users.get(key, 1) - 1
            if cls._users[key] > 0:
                return []
            del cls._users[key]
            images = cls._built.pop(key, {})
        notes: list[str] = []
        registry = ladder.Registry(str(desc["address"]))
        for image in images.values():
            try:
                registry.delete(image)
            except ladder.RegistryError as e:
                notes.append(f"image: could not delete {image.reference} from the registry: {e}")
        gc = [str(desc.get("binary", "")), "garbage-collect", "--delete-untagged", str(desc.get("config", ""))]
        if images and all(gc):
            proc = subprocess.run(gc, capture_output=True, text=True, check=False, timeout=600)
            if proc.returncode != 0:
                notes.append(f"image: registry garbage-collect: {proc.stderr.strip()[-300:]}")
        return notes


class ImageLevel(Level):
    name = "image"
    ops: tuple[str, ...] = ()

    def __init__(self, target: Target, ctx: Context) -> None:
        self.target, self.ctx = target, ctx
        _, self.stack = need_stack(target, self.name)
        self.desc = registry_description()
        self.address = str(self.desc["address"])
        self.link = str(self.desc.get("link", ""))
        pull = ctx.scen.pull
        self.steps = steps_of(pull)
        self.modes = pull.modes
        self.ops = ops_of(self.steps, self.modes)
        self.rounds: dict[tuple[int, int], Round] = {}
        self.rounds_lock = threading.Lock()
        if pull.links:
            # Every shape once now, so one this node cannot give fails the level at its start.
            for link in pull.links:
                self.shape(link)
            self.shape(None)
        rungs = list(dict.fromkeys(step.rung for step in self.steps))
        copies = max(ctx.scen.concurrency)
        self.images = Ladder.images(ctx.job.run_id, self.address, rungs, copies, ctx.workdir)
        self.client = CriClient(self.stack.cri_endpoint, ctx.scen.timeout_s, ctx.tracer)

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> ImageLevel:
        t, _ = need_stack(target, cls.name)
        return cls(t, ctx)

    def calls(self) -> dict[str, tuple[float, float]] | None:
        return self.client.log.snapshot()

    # --- the link and the round -----------------------------------------------------------
    def shape(self, link: PullLink | None) -> dict[str, Any]:
        """Give the registry link `link`'s shape (None: the provisioned one): untimed, between rounds."""
        if link is None:
            provisioned = self.desc.get("shape") or {}
            link = PullLink(rate=str(provisioned.get("rate") or ""), rtt_ms=float(provisioned.get("rtt_ms") or 0))
        tool = [str(self.desc.get(k, "")) for k in ("link_tool", "netns", "link", "host_link")]
        if not all(tool):
            raise ComponentError(
                f"level image: {REGISTRY_DESCRIPTION} names no link_tool, netns, link or host_link:"
                " the registry host predates link shapes (hopbench provision --playbook registry.yml)"
            )
        argv = ["python3", tool[0], "--netns", tool[1], "--link", tool[2], "--host-link", tool[3], "--shape-only"]
        argv += ["--rate", link.rate, "--rtt-ms", f"{link.rtt_ms:g}"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise ComponentError(f"level image: link shape {link.label}: {(proc.stderr or proc.stdout).strip()[-400:]}")
        out: dict[str, Any] = json.loads(proc.stdout)
        return out

    def round_of(self, turn: Turn) -> Round:
        """The round of `turn` (its workers: the iterations of round iteration // concurrency)."""
        c = turn.concurrency
        r = turn.iteration // c
        total = self.ctx.scen.warmup + self.ctx.scen.iterations
        with self.rounds_lock:
            if (c, r) not in self.rounds:
                self.rounds[(c, r)] = Round(min(c, total - r * c), self.ctx.scen.timeout_s * 2)
            return self.rounds[(c, r)]

    def wire_start(self, rnd: Round) -> None:
        rnd.wire_start = rx_bytes(self.link)

    def wire_end(self, rnd: Round) -> None:
        end = rx_bytes(self.link)
        rnd.wire_bytes = end - rnd.wire_start if end >= 0 and rnd.wire_start >= 0 else -1

    # --- the calls ----------------------------------------------------------------------------
    def ref(self, image: ladder.Image) -> str:
        return f"{self.address}/{image.reference}"

    def _pull(self, ref: str) -> str:
        spec = cri.ImageSpec(image=ref)
        resp = self.client.images.PullImage(cri.PullImageRequest(image=spec), timeout=self.ctx.scen.timeout_s)
        return str(resp.image_ref)

    def _status(self, ref: str) -> str:
        req = cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))
        image_id = str(self.client.images.ImageStatus(req, timeout=self.ctx.scen.timeout_s).image.id)
        if not image_id:
            raise LookupError(f"{ref} is not in the store after its pull")
        return image_id

    def _remove(self, image_id: str) -> None:
        req = cri.RemoveImageRequest(image=cri.ImageSpec(image=image_id))
        self.client.images.RemoveImage(req, timeout=self.ctx.scen.timeout_s)

    def timed_pull(self, mode: str, ref: str, image: ladder.Image, step: Step, turn: Turn) -> tuple[Timed[str], Pull]:
        op = f"PullImage {mode} {step.label}"
        wire, cpu = rx_bytes(self.link), busy_cpu_s()
        t = timed(op, lambda: self._pull(ref))
        wire_after, cpu_after = rx_bytes(self.link), busy_cpu_s()
        stack, handler, _ = self.where()
        event = Pull(
            **traced_fields(self.ctx, stack, handler, turn),
            op=op,
            image=ref,
            rung=step.rung.label,
            mode=mode,
            layers=len(image.layers),
            blob_bytes=image.bytes_compressed,
            wire_bytes=wire_after - wire if wire >= 0 and wire_after >= 0 else -1,
            cpu_s=round(cpu_after - cpu, 3),
            start_ns=t.start_ns,
            duration_ns=t.duration_ns,
            ok=t.ok,
            link=step.link.label if step.link is not None else "",
            same=step.same,
        )
        return t, event

    # --- the store ----------------------------------------------------------------------------
    def make_absent(self, ref: str, image: ladder.Image) -> str:
        return make_absent(self.client, self.stack, ref, image, self.ctx.scen.timeout_s)

    def lifecycle(self, turn: Turn) -> Outcome:
        record = Record()
        events: list[Event] = []
        problem, check = "", "image-cold"
        rnd = self.round_of(turn)
        shaped: object = False  # the link shape this lifecycle set last (False: none yet)
        try:
            for step in self.steps:
                image = self.images[(step.rung, 0 if step.same else turn.worker)]
                ref = self.ref(image)
                if step.link != shaped:
                    rnd.meet(partial(self.shape, step.link))
                    shaped = step.link
                if "cold" in self.modes:
                    if step.same:
                        rnd.meet(partial(self._absent_for_round, rnd, ref, image))
                        problem = problem or rnd.problem
                    else:
                        problem = problem or self.make_absent(ref, image)
                    events.append(self.pull_in_round(rnd, record, "cold", ref, image, step, turn))
                else:
                    self._pull(ref)  # untimed: the warm pull needs every layer there
                image_id = record(timed(f"ImageStatus {step.label}", partial(self._status, ref)))
                if "warm" in self.modes:
                    events.append(self.pull_in_round(rnd, record, "warm", ref, image, step, turn))
                if step.same:
                    rnd.meet(partial(remove_if_present, self.client, ref, self.ctx.scen.timeout_s))
                else:
                    record(timed(f"RemoveImage {step.label}", partial(self._remove, image_id)))
        except StopLifecycle:
            rnd.barrier.abort()  # the other workers of the round stop too, instead of waiting
        except RoundBroken as e:
            if not problem:
                problem, check = f"round {turn.iteration // turn.concurrency}: {e}", "image-round"
        except Exception as e:  # noqa: BLE001 - untimed work failed: the samples taken so far are kept
            rnd.barrier.abort()
            if not problem:
                problem, check = f"{type(e).__name__}: {e}", "image-round"
        except BaseException:
            rnd.barrier.abort()
            raise
        return Outcome(record.done, problem, check=check, events=events)

    def pull_in_round(
        self, rnd: Round, record: Record, mode: str, ref: str, image: ladder.Image, step: Step, turn: Turn
    ) -> Pull:
        """The round's workers start their pulls together and wait for the last; the Pull event
        carries what the link received from the first start to the last end."""
        rnd.meet(partial(self.wire_start, rnd))
        t, event = self.timed_pull(mode, ref, image, step, turn)
        if not t.ok:
            record(t)  # raises StopLifecycle: the round's barrier breaks
        rnd.meet(partial(self.wire_end, rnd))
        record(t)
        return dataclasses.replace(event, round_wire_bytes=rnd.wire_bytes)

    def _absent_for_round(self, rnd: Round, ref: str, image: ladder.Image) -> None:
        rnd.problem = self.make_absent(ref, image)

    def close(self) -> None:
        """Remove this run's images from the stack's store (a failed lifecycle may leave one) and,
        once, from the registry."""
        for image in {im.reference: im for im in self.images.values()}.values():
            ref = self.ref(image)
            try:
                if remove_if_present(self.client, ref):
                    self.notes.append(f"image: removed {ref} a failed lifecycle left in {self.stack.name}")
            except Exception as e:  # noqa: BLE001 - clean-up reports, never raises
                self.notes.append(f"image: could not remove {ref} from {self.stack.name}: {e}")
        self.client.close()
        if self.ctx.scen.pull.links:
            try:
                self.shape(None)
            except Exception as e:  # noqa: BLE001 - clean-up reports, never raises
                self.notes.append(f"image: could not give the registry link its provisioned shape back: {e}")
        self.notes.extend(Ladder.release(self.ctx.job.run_id, self.desc))


def make_absent(client: CriClient, stack: stacks.Stack, ref: str, image: ladder.Image, timeout_s: float) -> str:
    """Untimed, before a cold pull: remove the image if the store has it (by id, as kubelet does)
    and wait until none of its own layers is left (the base layer the ladder shares may stay
    while another image holds it); '' or why not."""
    remove_if_present(client, ref, timeout_s)
    own = dataclasses.replace(image, layers=image.layers[1:], diff_ids=image.diff_ids[1:])
    deadline = time.monotonic() + GONE_WITHIN_S
    while (left := len(stored_layers(stack, own, ref))) and time.monotonic() < deadline:
        time.sleep(0.1)
    return f"{left} layer(s) of {ref} still in the store {GONE_WITHIN_S:.0f} s after RemoveImage" if left else ""


def remove_if_present(client: CriClient, ref: str, timeout_s: float = 30) -> bool:
    """Remove the image of `ref` by its id if the store has it: True when it had."""
    req = cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))
    image_id = str(client.images.ImageStatus(req, timeout=timeout_s).image.id)
    if image_id:
        client.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=image_id)), timeout=timeout_s)
    return bool(image_id)


def stored_layers(stack: stacks.Stack, image: ladder.Image, ref: str) -> set[str]:
    """The digests of the image's layers the stack's store holds: compressed digests in
    containerd's content store, compressed and diff digests in CRI-O's containers-storage, diff
    ids in dockerd's image of that reference (`ref`, with its registry)."""
    kind = stack.kind
    if kind == "containerd":
        ctr = str(stack.extra.get("ctr", ""))
        sock = stack.cri_endpoint.removeprefix("unix://")
        proc = subprocess.run(
            [ctr, "--address", sock, "--namespace", "k8s.io", "content", "ls", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            raise ComponentError(f"{stack.name}: ctr content ls: {proc.stderr.strip()[-300:]}")
        return {b.digest for b in image.layers} & set(proc.stdout.split())
    if kind == "crio":
        path = Path(str(stack.extra["state_dirs"][0])) / "storage" / "overlay-layers" / "layers.json"
        try:
            layers = json.loads(path.read_text())
        except FileNotFoundError:
            return set()
        found = {layer.get(k) for layer in layers for k in ("compressed-diff-digest", "diff-digest")}
        return ({b.digest for b in image.layers} | set(image.diff_ids)) & found
    from bench.node.levels.engine import EngineClient

    client = EngineClient(str(stack.extra["docker_endpoint"]), 30)
    try:
        status, body = client.raw("GET", f"/images/{ref}/json")
    finally:
        client.close()
    if status == 404:
        return set()  # no image of that reference: dockerd removed it with the layers only it held
    if status != 200:
        raise ComponentError(f"{stack.name}: GET /images/{ref}/json: HTTP {status}: {body[:300]!r}")
    return set(json.loads(body)["RootFS"]["Layers"]) & set(image.diff_ids)
