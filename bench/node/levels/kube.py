"""The `kube` level: pods through a real API server, scheduler and kubelet (v1.36) per stack.

The control plane (etcd, kube-apiserver, kube-scheduler on loopback; control_plane role) runs
as the stacks' daemons do. While the level runs on a target the agent starts a kubelet for
that stack (bench.node.kubeletd) with its own node identity: a client certificate
system:node:hb-kube-<stack>, made with the control plane's CA, so the Node authorizer and
NodeRestriction apply as on a real node. Pods of one stack go to its node through the
scheduler (a nodeSelector on kubernetes.io/hostname, not a nodeName that would skip it).
A handler other than runc (crun, runsc, kata) runs through a RuntimeClass `hopbench-<handler>`
naming the stack's CRI runtime handler, which the level creates and each pod names in
runtimeClassName; runc is the stack's default handler and its pods name none, as most pods do.
cri-dockerd serves one handler, so Docker runs runc only.

One lifecycle, the pod of bench.node.kubepod in namespace hopbench, each phase observed by a
pod watch (the way clusterloader2 and kube-burner observe pod startup: what a client of the
API sees, not the seconds-resolution timestamps in the status):

  PodScheduled  before the create request -> the watch shows spec.nodeName (API server
                admission and storage, the scheduler's binding, the watch's delivery)
  SandboxReady  -> condition PodReadyToStartContainers true (kubelet saw the pod, the
                runtime's sandbox and network are up, kubelet's status reached the API)
  PodReady      -> every container running and condition Ready true
  PodDelete     before the delete request -> the watch shows the pod DELETED (kubelet
                stopped the containers within the grace period and finished the deletion)

The upstream pod startup SLI (creation to all containers started, observed by a watch) is
the sum of the first three. Untimed: after PodReady the workload's ready line must be in its
container log. The kubelet's own view is scraped as for level kubelet.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench import stacks
from bench.messages import Info, Tool
from bench.node import kubepod
from bench.node.apiserver import ApiClient, ApiError, ControlPlane, PodWatch, description_path, issue_node_cert
from bench.node.apiserver import kubeconfig as make_kubeconfig
from bench.node.kubeletd import ident_of, kube_description, node_name_of
from bench.node.levels import READY_MARK, Context, Outcome, Target, Timed, Turn, need_stack
from bench.node.levels.kubelet import KubeletLevelBase
from bench.ops import KUBE_LIFECYCLE_OPS

NAMESPACE = "hopbench"
NODE_READY_TIMEOUT_S = 60.0
START_PHASES = KUBE_LIFECYCLE_OPS[:3]


@dataclass
class Track:
    """What the watch has seen of one pod: the first time of each phase, and its end."""

    marks: dict[str, int] = field(default_factory=dict)
    problem: str = ""
    pending: str = ""
    gone_ns: int = 0


class KubeLevel(KubeletLevelBase):
    name = "kube"
    group: ClassVar[str | None] = "kube"
    ops = KUBE_LIFECYCLE_OPS

    @classmethod
    def applies(cls, target: Target) -> str:
        if target.stack is None:
            return f"level kube runs inside a stack: {target.name}"
        if not kube_description(target.stack).exists() or not description_path(target.stack).exists():
            return "level kube: no kubelet and control plane provisioned (hopbench provision --playbook kube.yml)"
        if target.handler.name != "runc" and target.stack.kind == "docker":
            return f"level kube: {target.name}: cri-dockerd serves one runtime handler, so Docker runs runc only"
        return ""

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> KubeLevel:
        t, stack = need_stack(target, cls.name)
        return cls(t, stack, ctx)

    def __init__(self, target: Target, stack: stacks.Stack, ctx: Context) -> None:
        self.cp = ControlPlane.load(description_path(stack))
        self.api = ApiClient(self.cp, ctx.scen.timeout_s)
        self.tracks: dict[str, Track] = {}
        self.changed = threading.Condition()
        self.watch: PodWatch | None = None
        self.client_dir = ctx.workdir / f"kube-client-{ident_of(stack)}"
        # The RuntimeClass of a handler other than the stack's default (runc): its pods name it.
        self.runtime_handler = target.handler.runtime_handler
        self.runtime_class = "" if target.handler.name == "runc" else f"hopbench-{self.runtime_handler}"
        super().__init__(target, stack, ctx)
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def kubeconfig(self) -> Path:
        node = node_name_of(self.stack)
        cert, key = issue_node_cert(self.cp, node, self.client_dir)
        path = self.client_dir / "kubelet.kubeconfig"
        path.write_text(make_kubeconfig(self.cp, cert, key, f"system:node:{node}"))
        path.chmod(0o600)
        return path

    def _prepare(self) -> None:
        api, node = self.api, self.node_name
        for tool, version in (
            ("kube-apiserver", self.cp.version),
            ("kube-scheduler", self.cp.version),
            ("etcd", self.cp.etcd_version),
        ):
            self.ctx.emit(Tool(name=tool, version=version))
        api.ensure("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        # No controller-manager makes the namespace's default service account: the level does.
        api.ensure(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default"},
                "automountServiceAccountToken": False,
            },
        )
        if self.runtime_class:
            api.ensure(
                "/apis/node.k8s.io/v1/runtimeclasses",
                {
                    "apiVersion": "node.k8s.io/v1",
                    "kind": "RuntimeClass",
                    "metadata": {"name": self.runtime_class},
                    "handler": self.runtime_handler,
                },
            )
            self.ctx.emit(
                Info(
                    message=f"kube: {self.pair}: pods name RuntimeClass {self.runtime_class}"
                    f" (CRI runtime handler {self.runtime_handler})",
                    target=self.pair,
                )
            )
        self._remove_left_pods()
        selector = f"{kubepod.KUBE_NODE_LABEL}={node}"
        self.watch = PodWatch(api, NAMESPACE, selector, self._on_event)
        self.watch.start()
        self.start_kubelet()
        why = self._wait_node_ready()
        if why:
            raise ApiError(f"kube: node {node} of {self.pair}: {why}; kubelet: {self.kubelet.log_tail()}")
        self.ctx.emit(
            Info(message=f"kube: {self.pair}: node {node} Ready on API server {self.cp.server}", target=self.pair)
        )

    def _remove_left_pods(self) -> None:
        """Pods an earlier (crashed) run bound to this stack's node: deleted at once."""
        sel = urllib.parse.quote(f"{kubepod.KUBE_NODE_LABEL}={self.node_name}")
        out = self.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={sel}")
        for pod in out.get("items") or []:
            name = pod["metadata"]["name"]
            with contextlib.suppress(ApiError):
                self.api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}?gracePeriodSeconds=0")
                self.notes.append(f"kube: removed pod {name} an earlier run left on {self.node_name}")

    def _wait_node_ready(self) -> str:
        end = time.monotonic() + NODE_READY_TIMEOUT_S
        last = "not registered"
        while time.monotonic() < end:
            try:
                node = self.api.request("GET", f"/api/v1/nodes/{self.node_name}")
                cond = {c.get("type"): c for c in node.get("status", {}).get("conditions", [])}
                ready = cond.get("Ready") or {}
                if ready.get("status") == "True":
                    self._untaint(node)
                    return ""
                last = f"Ready {ready.get('status')}: {ready.get('message', '')}"
            except ApiError as exc:
                last = str(exc)
            time.sleep(0.2)
        return f"not Ready within {NODE_READY_TIMEOUT_S:g} s ({last})"

    def _untaint(self, node: dict[str, Any]) -> None:
        """Kubelet registers its node with the not-ready taint; the node lifecycle controller of
        kube-controller-manager (not run here) takes it off once the node is Ready. The level
        does that one step, so the scheduler places pods on the node."""
        taints = node.get("spec", {}).get("taints") or []
        keep = [t for t in taints if t.get("key") != "node.kubernetes.io/not-ready"]
        if len(keep) != len(taints):
            patch = {"spec": {"taints": keep or None}}
            path = f"/api/v1/nodes/{self.node_name}"
            self.api.request("PATCH", path, patch, content_type="application/merge-patch+json")

    # --- the watch ---------------------------------------------------------------------------
    def _on_event(self, kind: str, pod: dict[str, Any], now: int) -> None:
        name = pod["metadata"]["name"]
        with self.changed:
            track = self.tracks.get(name)
            if track is None:
                return
            if kind in ("DELETED", "GONE"):
                track.gone_ns = track.gone_ns or now
            else:
                seen, problem = kubepod.reached(pod)
                for op in seen:
                    track.marks.setdefault(op, now)
                track.problem = track.problem or problem
                track.pending = kubepod.pending(pod)
            self.changed.notify_all()

    def _wait(self, track: Track, done: Any, deadline_s: float) -> bool:
        with self.changed:
            return bool(self.changed.wait_for(lambda: done(track), timeout=deadline_s))

    # --- one lifecycle -----------------------------------------------------------------------
    def one_pod(self, turn: Turn) -> Outcome:
        name = f"hb-{self.run_id[-8:]}-{turn.tag}".lower()
        ref, policy, _ = self.pod_image(turn)
        body = kubepod.manifest(
            self.ctx.scen, ref, name, NAMESPACE, self.run_id, self.ctx.job.node,
            {kubepod.KUBE_NODE_LABEL: self.node_name}, pull_policy=policy,
        )  # fmt: skip
        body["spec"]["nodeSelector"] = {"kubernetes.io/hostname": self.node_name}
        if self.runtime_class:
            body["spec"]["runtimeClassName"] = self.runtime_class
        track = Track()
        with self.changed:
            self.tracks[name] = track
        deadline_s = self.ctx.scen.timeout_s
        done: list[Timed[Any]] = []
        problem = ""
        created = False
        start = time.monotonic_ns()
        try:
            try:
                self.api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", body)
                created = True
            except ApiError as exc:
                done.append(Timed(START_PHASES[0], start, time.monotonic_ns() - start, None, str(exc)))
                return Outcome(done, "", "workload-ran")
            self._wait(track, lambda t: "PodReady" in t.marks or t.problem or t.gone_ns, deadline_s)
            with self.changed:
                marks, problem, last = dict(track.marks), track.problem, track.pending
            prev = start
            for op in START_PHASES:
                if op not in marks:
                    why = problem or f"no {op} within {deadline_s:g} s" + (f" ({last})" if last else "")
                    done.append(Timed(op, prev, time.monotonic_ns() - prev, None, why))
                    break
                # A status update can show two phases at once: never a negative phase.
                at = max(marks[op], prev)
                done.append(Timed(op, prev, at - prev, None, None))
                prev = at
            if len(done) == len(START_PHASES) and done[-1].ok:
                problem = self.kubelet.ready_line(NAMESPACE, name, READY_MARK)
        finally:
            gone = self._delete(name, track) if created else None
            with self.changed:
                self.tracks.pop(name, None)
        if gone is not None and len(done) == len(START_PHASES) and all(t.ok for t in done):
            done.append(gone)
        return Outcome(done, problem, "workload-running" if problem else "workload-ran")

    def _delete(self, name: str, track: Track) -> Timed[None]:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"
        start = time.monotonic_ns()
        try:
            self.api.request("DELETE", path)
        except ApiError as exc:
            if exc.status != 404:
                return Timed("PodDelete", start, time.monotonic_ns() - start, None, str(exc))
        deadline_s = self.ctx.scen.workload.stop_timeout_s + self.ctx.scen.timeout_s
        if not self._wait(track, lambda t: t.gone_ns, deadline_s):
            return Timed(
                "PodDelete", start, time.monotonic_ns() - start, None, f"pod {name} not gone in {deadline_s:g} s"
            )
        return Timed("PodDelete", start, max(track.gone_ns - start, 0), None, None)

    # --- the end -------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.watch is not None:
                if self.watch.relists:
                    self.notes.append(
                        f"kube: the pod watch of {self.pair} broke and listed again {self.watch.relists} time(s)"
                    )
                with contextlib.suppress(ApiError):
                    self._remove_left_pods()
                self.watch.stop()
        finally:
            last = True
            try:
                last = self.close_kubelet()
            finally:
                if last:  # the Node is the shared kubelet's: the stack's last target removes it
                    with contextlib.suppress(ApiError):
                        self.api.request("DELETE", f"/api/v1/nodes/{self.node_name}")
                self.api.close()
                shutil.rmtree(self.client_dir, ignore_errors=True)
