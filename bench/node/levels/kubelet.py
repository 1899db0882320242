"""The `kubelet` level: pods through a real kubelet (v1.36) on each stack, standalone.

The kubelet (bench.node.kubeletd) runs without an API server: pods are static pods, a
manifest per pod in its manifest folder. This is how a lab without a control plane uses a
kubelet, and the way a dockershim kubelet (<= 1.23, too old for a 1.36 API server) is
compared with today's. Without an API server there is no RuntimeClass, so only the stack's
default handler (runc) applies.

One lifecycle: the pod of bench.node.kubepod, written as a manifest; the kubelet's own pod API
(https on loopback, its self-signed certificate pinned) is polled every 10 ms:

  SandboxReady  manifest written -> condition PodReadyToStartContainers true (the sandbox and
                its network are up)
  PodReady      -> every container running and condition Ready true (one status update
                when the pod has no readiness probe, so they are one phase)
  PodDelete     manifest removed -> the kubelet no longer has the pod and the runtime has no
                ready sandbox of it (read through CRI)

Each phase is known to the poll interval (10 ms). Untimed: after PodReady the workload's ready
line must be in its log. Kubelet's own view (kubelet_runtime_operations_duration_seconds per
CRI op, kubelet_pod_start_sli_duration_seconds) is scraped from its metrics before and after
(artifacts kube/<level>-<stack>-metrics-{before,after}.txt), its memory sampled while pods run.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import http.client
import json
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from cri_api.v1 import api_pb2 as cri

from bench import stacks
from bench.messages import Artifact, Info, Memory, SamplerStats, Setting, Tool
from bench.node import kubepod, ladder, memory
from bench.node.cri import CriClient
from bench.node.kubeletd import Kubelet, KubeletFailed, kube_description
from bench.node.levels import READY_MARK, Context, Level, Outcome, Target, Timed, Turn, need_stack
from bench.node.levels import image as image_level
from bench.ops import DOCKERSHIM_LIFECYCLE_OPS, KUBELET_LIFECYCLE_OPS

POLL_S = 0.01
MEMORY_INTERVAL_S = 1.0


class KubeletMemory(memory.Classifier):
    """The stack's processes (daemons, shims, pods) and its kubelet (role kubelet)."""

    def __init__(self, stack: stacks.Stack, kubelet: Kubelet) -> None:
        super().__init__([stack])
        self.kubelet, self.stack_name = kubelet, stack.name

    def classify(self) -> list[memory.Proc]:
        found = super().classify()
        if self.kubelet.proc is not None and self.kubelet.proc.poll() is None:
            found.append(memory.Proc(self.kubelet.proc.pid, "kubelet", self.stack_name, "kubelet"))
        return found


class SharedKubelets:
    """The kubelet of one stack instance, shared by that stack's targets (its handlers: runc,
    crun, runsc through RuntimeClasses at level kube) at one level of one run. A node runs one
    kubelet per node name: a second kubelet for the same stack would replace the first (its pid
    file, its folder, its Node object). The first target to open starts it, the last to close
    stops it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[tuple[str, str, str], tuple[Kubelet, list[str]]] = {}

    def acquire(self, key: tuple[str, str, str], user: str, make: Callable[[], Kubelet]) -> tuple[Kubelet, list[str]]:
        """The kubelet of `key` (run, level, stack) and the targets already using it."""
        with self.lock:  # the targets open one after the other: holding it while one is made costs nothing
            if key in self.users:
                kubelet, users = self.users[key]
                others = list(users)
                users.append(user)
                return kubelet, others
            kubelet = make()  # reads the stack's description (and issues a node certificate): no process yet
            self.users[key] = (kubelet, [user])
            return kubelet, []

    def release(self, key: tuple[str, str, str], user: str) -> bool:
        """Whether `user` was the kubelet's last: the caller stops it then."""
        with self.lock:
            entry = self.users.get(key)
            if entry is None:
                return True
            users = entry[1]
            if user in users:
                users.remove(user)
            if users:
                return False
            del self.users[key]
            return True


SHARED = SharedKubelets()


class KubeletLevelBase(Level):
    """What levels kube, kubelet and dockershim share: a kubelet per stack (shared by the stack's
    targets, SharedKubelets), its metrics, its memory."""

    per = "target"
    dockershim: ClassVar[bool] = False
    # A kubelet removes the pods on its runtime that it does not know: each of these levels runs
    # interleaved across targets only with itself (group = its name).
    group: ClassVar[str | None] = None

    def __init__(self, target: Target, stack: stacks.Stack, ctx: Context) -> None:
        self.target, self.stack, self.ctx, self.pair = target, stack, ctx, target.name
        self.handler_name = target.handler.name
        self.run_id = ctx.job.run_id
        self.lock = threading.Lock()
        self.cri = CriClient(stack.cri_endpoint, ctx.scen.timeout_s)
        # Scenario tracing on a traced stack instance: the kubelet's own spans go where the stack's do.
        tracing = (stack.extra.get("tracing") or {}).get("endpoint", "") if ctx.scen.tracing else ""
        self.shared_key = (self.run_id, self.name, stack.name)
        self.kubelet, self.shared_with = SHARED.acquire(
            self.shared_key,
            self.pair,
            lambda: Kubelet(
                stack,
                ctx.workdir,
                self.run_id,
                ctx.job.node,
                ctx.scen.timeout_s,
                self.kubeconfig(),
                self.dockershim,
                tracing_endpoint=str(tracing),
            ),
        )
        self.released = False
        self.ident = self.kubelet.ident
        self.sampler: memory.Sampler | None = None
        self.pods_in_flight = 0
        self.node_name = self.kubelet.node_name
        # The pull in pod start (scenario pull.in_pod_start): the ladder's first rung, a copy per worker.
        self.registry: dict[str, Any] = {}
        self.pull_images: dict[int, ladder.Image] = {}
        if ctx.scen.pull.in_pod_start and not self.dockershim:
            self.registry = image_level.registry_description()
            rung = ladder.Rung.of(ctx.scen.pull.rungs[0])
            copies = max(ctx.scen.concurrency)
            built = image_level.Ladder.images(self.run_id, str(self.registry["address"]), [rung], copies, ctx.workdir)
            self.pull_images = {copy: im for (r, copy), im in built.items() if r == rung}

    def pod_image(self, turn: Turn) -> tuple[str, str, ladder.Image | None]:
        """The pod's image, its pull policy and, when the pull is in pod start, the ladder's image."""
        if not self.pull_images:
            return self.stack.workload_image, "Never", None
        image = self.pull_images[turn.worker % len(self.pull_images)]
        return f"{self.registry['address']}/{image.reference}", "Always", image

    def kubeconfig(self) -> Path | None:
        return None

    def start_kubelet(self) -> None:
        k = self.kubelet
        first = k.proc is None
        if first:
            k.start()
            self.notes.extend(k.notes)
            k.notes.clear()
            self.ctx.emit(
                Artifact(name=f"kube/{self.name}-{self.ident}-config.json", content=json.dumps(k.conf, indent=2))
            )
        shared = f"; shared with {', '.join(self.shared_with)} (one kubelet per stack)" if self.shared_with else ""
        self.ctx.emit(
            Info(message=f"{self.name}: {self.pair}: kubelet {k.version} ({k.binary}){shared}", target=self.pair)
        )
        self.ctx.emit(Tool(name="kubelet (dockershim)" if k.dockershim else "kubelet", version=k.version))
        self.ctx.emit(
            Setting(
                target=self.pair,
                name=f"{self.name}.cgroupDriver",
                value=k.cgroup_driver,
                why=f"the stack instance's driver; cgroupRoot {k.cgroup_root}"
                + (f" is the slice {k.slice}" if k.slice else ""),
            )
        )
        if self.pull_images:
            for name, default in (("serializeImagePulls", True), ("maxParallelImagePulls", None)):
                value = k.conf.get(name, default)
                why = "set in the kubelet's config" if name in k.conf else "kubelet's default"
                self.ctx.emit(Setting(target=self.pair, name=f"{self.name}.{name}", value=value, why=why))
        if k.cgroup_v1 and not k.dockershim:
            why = "this node has cgroup v1 (hybrid); kubelet >= 1.35 refuses it otherwise"
            self.ctx.emit(Setting(target=self.pair, name=f"{self.name}.failCgroupV1", value=False, why=why))
            self.ctx.emit(Info(message=f"{self.name}: {self.pair}: failCgroupV1 false ({why})", target=self.pair))
        if first:
            self.ctx.emit(Artifact(name=f"kube/{self.name}-{self.ident}-metrics-before.txt", content=k.metrics()))

    def begin(self) -> None:
        """The kubelet's memory (and its stack's) sampled every second while the lifecycles run."""
        where = {
            "run_id": self.run_id,
            "node": self.ctx.job.node,
            "target": self.pair,
            "handler": self.handler_name,
        }

        def on_sweep(rows: list[dict[str, Any]]) -> None:
            self.ctx.emit(Memory(rows=tuple({**where, **r} for r in rows)))

        self.sampler = memory.Sampler(KubeletMemory(self.stack, self.kubelet), MEMORY_INTERVAL_S, on_sweep)
        self.in_flight(0)
        self.sampler.start()

    def end(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.ctx.emit(SamplerStats(target=f"{self.name} {self.pair}", stats=self.sampler.stats()))

    def in_flight(self, change: int, concurrency: int = 0) -> None:
        """Pods being started or running now: a label of the memory rows (phase = the level's name)."""
        with self.lock:
            self.pods_in_flight += change
            if self.sampler is not None:
                self.sampler.set_labels(phase=self.name, step=concurrency, pods_running=self.pods_in_flight)

    def lifecycle(self, turn: Turn) -> Outcome:
        ref, _, image = self.pod_image(turn)
        # Untimed: with the pull in pod start, nothing of the pod's image is in the store.
        cold = image_level.make_absent(self.cri, self.stack, ref, image, self.ctx.scen.timeout_s) if image else ""
        self.in_flight(+1, turn.concurrency)
        try:
            out = self.one_pod(turn)
        finally:
            self.in_flight(-1, turn.concurrency)
        return dataclasses.replace(out, problem=cold, check="image-cold") if cold and not out.problem else out

    @abc.abstractmethod
    def one_pod(self, turn: Turn) -> Outcome:
        """One pod's lifecycle (the memory rows count it while it runs)."""

    def _ready_sandboxes(self, key: str) -> int:
        ready = cri.PodSandboxState.SANDBOX_READY
        return sum(1 for s in self.cri.sandboxes({"io.kubernetes.pod.name": key}) if s.state == ready)

    def close_kubelet(self) -> bool:
        """Let go of the stack's kubelet; the last of its targets stops it. Whether this was the last."""
        if self.released:
            return False
        self.released = True
        if not SHARED.release(self.shared_key, self.pair):
            try:
                self.release_images()
            finally:
                self.cri.close()
            return False
        try:
            try:
                self.ctx.emit(
                    Artifact(name=f"kube/{self.name}-{self.ident}-metrics-after.txt", content=self.kubelet.metrics())
                )
            except (OSError, http.client.HTTPException, ssl.SSLError, KubeletFailed) as e:
                # The kube view reads the kubelet's own figures from this scrape: say why there is none.
                self.notes.append(f"{self.name}: the metrics of {self.stack.name}'s kubelet after the run: {e!r}")
        finally:
            try:
                self.kubelet.stop()
                self.ctx.emit(Artifact(name=f"kube/{self.name}-{self.ident}-kubelet.log", content=self.kubelet.log()))
            finally:
                self.kubelet.close()
                self.notes.extend(self.kubelet.notes)
                self.release_images()
                self.cri.close()
        return True

    def release_images(self) -> None:
        """The pull in pod start: remove the run's images from the store, let go of the ladder."""
        if not self.pull_images:
            return
        for image in self.pull_images.values():
            ref = f"{self.registry['address']}/{image.reference}"
            try:
                image_level.remove_if_present(self.cri, ref)
            except Exception as e:  # noqa: BLE001 - clean-up reports, never raises
                self.notes.append(f"{self.name}: could not remove {ref} from {self.stack.name}: {e}")
        self.notes.extend(image_level.Ladder.release(self.run_id, self.registry))


class KubeletLevel(KubeletLevelBase):
    name = "kubelet"
    group: ClassVar[str | None] = "kubelet"
    ops: tuple[str, ...] = KUBELET_LIFECYCLE_OPS

    @classmethod
    def applies(cls, target: Target) -> str:
        if target.stack is None:
            return f"level {cls.name} runs inside a stack: {target.name}"
        if not kube_description(target.stack).exists():
            return f"level {cls.name}: no kubelet provisioned (hopbench provision --playbook kube.yml)"
        if target.handler.name != "runc":
            return (
                f"level kubelet: {target.name}: a standalone kubelet has no RuntimeClass (that needs an API server), "
                "so only the stack's default handler, runc, runs"
            )
        return ""

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> KubeletLevel:
        t, stack = need_stack(target, cls.name)
        return cls(t, stack, ctx)

    def __init__(self, target: Target, stack: stacks.Stack, ctx: Context) -> None:
        super().__init__(target, stack, ctx)
        self.live: set[Path] = set()
        try:
            self.start_kubelet()
        except BaseException:
            self.close()
            raise

    def one_pod(self, turn: Turn) -> Outcome:
        name = f"hb-{self.run_id[-8:]}-{turn.tag}".lower()
        key = f"{name}-{self.node_name}"  # a static pod's name on its node
        path = self.kubelet.manifests / f"{name}.json"
        done: list[Timed[Any]] = []
        deadline_s = self.ctx.scen.timeout_s
        with self.lock:
            self.live.add(path)
        ref, policy, _ = self.pod_image(turn)
        body = kubepod.manifest(self.ctx.scen, ref, name, "default", self.run_id, self.ctx.job.node, pull_policy=policy)
        start = time.monotonic_ns()
        path.write_text(json.dumps(body))
        marks: dict[str, int] = {}
        problem = ""
        try:
            end = time.monotonic() + deadline_s
            while "PodReady" not in marks and time.monotonic() < end:
                pod = self.kubelet.pods().get(key)
                now = time.monotonic_ns()
                if pod is not None:
                    seen, problem = kubepod.reached(pod)
                    for op in seen:
                        marks.setdefault(op, now)
                    if problem:
                        break
                time.sleep(POLL_S)
            prev = start
            for op in self.ops[:-1]:
                if op not in marks:
                    why = problem or f"no {op} within {deadline_s:g} s"
                    done.append(Timed(op, prev, time.monotonic_ns() - prev, None, why))
                    break
                done.append(Timed(op, prev, marks[op] - prev, None, None))
                prev = marks[op]
            if len(done) == len(self.ops) - 1 and done[-1].ok:
                problem = self.kubelet.ready_line("default", key, READY_MARK)
        finally:
            gone = self._delete(path, key)
        if len(done) == len(self.ops) - 1 and all(t.ok for t in done):
            done.append(gone)
        return Outcome(done, problem, "workload-running" if problem else "workload-ran")

    def _delete(self, path: Path, key: str) -> Timed[None]:
        start = time.monotonic_ns()
        path.unlink(missing_ok=True)
        end = time.monotonic() + self.ctx.scen.workload.stop_timeout_s + self.ctx.scen.timeout_s
        while time.monotonic() < end:
            if key not in self.kubelet.pods() and not self._ready_sandboxes(key):
                with self.lock:
                    self.live.discard(path)
                return Timed("PodDelete", start, time.monotonic_ns() - start, None, None)
            time.sleep(POLL_S)
        return Timed("PodDelete", start, time.monotonic_ns() - start, None, f"pod {key} still on the kubelet")

    def close(self) -> None:
        try:
            with self.lock:
                left = list(self.live)
            for path in left:
                with contextlib.suppress(OSError, http.client.HTTPException, ssl.SSLError, KubeletFailed):
                    self._delete(path, f"{path.stem}-{self.node_name}")
        finally:
            self.close_kubelet()


class DockershimLevel(KubeletLevel):
    """Level `dockershim`: level kubelet's static pod through a kubelet 1.23 whose in-tree
    dockershim talks to the stack's dockerd itself (no cri-dockerd), for the question of what
    moving dockershim out of kubelet costs per pod. A 1.23 kubelet has no
    PodReadyToStartContainers condition, so the pod start is one phase, PodReady (manifest
    written -> containers running and Ready), which level kubelet's SandboxReady + PodReady
    equal on the same pod."""

    name = "dockershim"
    group: ClassVar[str | None] = "dockershim"
    ops = DOCKERSHIM_LIFECYCLE_OPS
    dockershim = True

    @classmethod
    def applies(cls, target: Target) -> str:
        why = super().applies(target)
        if why or target.stack is None:
            return why.replace("level kubelet", "level dockershim")
        if target.stack.kind != "docker":
            return f"level dockershim: {target.name}: dockershim drives dockerd, only a docker stack has one"
        desc = json.loads(kube_description(target.stack).read_text())
        if not (desc.get("dockershim") or {}).get("kubelet"):
            return "level dockershim: no dockershim kubelet provisioned (kube.yml with kubelet_dockershim: true)"
        return ""
