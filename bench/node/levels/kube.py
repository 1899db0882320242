"""The `kube` level: pods through a real kubelet (v1.36) on each stack, standalone.

While the level runs on a target, the agent starts a kubelet for that stack (its own root
dir, node name, cgroup root and loopback ports; the stack's CRI socket) and stops it by its
PID at the end; the kubelet also dies with the agent (parent-death signal), and one a crashed
agent left is stopped by its pid file before the next. Standalone means no API server: pods
are static pods, a manifest per pod in the kubelet's manifest folder; without an API server
there is no RuntimeClass, so only the stack's default handler (runc) applies. This node has
cgroup v1 (hybrid): kubelet >= 1.35 refuses it unless failCgroupV1 is false, which the level
sets there and records with the kubelet's config (artifact kube/<stack>-config.json).

One lifecycle: the pod the `cri` level asks for (same image and workload, BestEffort,
imagePullPolicy Never, grace period from the scenario), written as a manifest; the kubelet's
own pod API (https on loopback, its self-signed certificate pinned) is polled every 10 ms:

  SandboxReady  manifest written -> condition PodReadyToStartContainers true (the sandbox and
                its network are up)
  PodReady      -> every container running and condition Ready true (kubelet sets both in one
                status update when the pod has no readiness probe, so they are one phase)
  PodDelete     manifest removed -> the kubelet no longer has the pod and the runtime has no
                ready sandbox of it (read through CRI)

Each phase is known to the poll interval (10 ms). Untimed: after PodReady the workload's ready
line must be in its log. Kubelet's own view (kubelet_runtime_operations_duration_seconds per
CRI op, kubelet_pod_start_sli_duration_seconds) is scraped from its metrics before and after
(artifacts kube/<stack>-metrics-{before,after}.txt).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri

from bench import stacks
from bench.errors import ComponentError
from bench.messages import Artifact, Info
from bench.node import kubelet, nodeinfo
from bench.node.cri import CriClient, remove_cgroup_tree
from bench.node.levels import READY_MARK, Context, Level, Outcome, Target, Timed, Turn, need_stack
from bench.ops import KUBE_LIFECYCLE_OPS

POLL_S = 0.01
# A container waiting for one of these will not start by waiting longer: the lifecycle fails at once.
FATAL_WAITING = ("CreateContainerError", "CreateContainerConfigError", "ErrImageNeverPull", "RunContainerError")
VAR_LIB_KUBELET = "/var/lib/kubelet"


class KubeletFailed(ComponentError):
    pass


def kube_description(stack: stacks.Stack) -> Path:
    """/etc/hopbench/kube.json, beside the stack descriptions (written by the kubelet role)."""
    return Path(stack.description_path).parent.parent / "kube.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """argv run so that it gets SIGTERM when the agent goes away, however it goes: util-linux's
    setpriv sets the parent-death signal and execs it (no Python code between fork and exec)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def config(
    stack: stacks.Stack, root: Path, port: int, healthz: int, cgroup_root: str, cgroup_v1: bool
) -> dict[str, Any]:
    """The kubelet's configuration for one stack: loopback only, standalone, static pods."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": not cgroup_v1,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": stack.cri_endpoint,
        "staticPodPath": str(root.parent / "manifests"),
        "podLogsDir": str(root.parent / "logs"),
        "fileCheckFrequency": "1s",
        "syncFrequency": "10s",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "failSwapOn": False,
        "enforceNodeAllocatable": [],
        "resolvConf": "",
        # Never collect the images every level uses, never evict the measured pods.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "maxPods": 1000,
    }


class KubeLevel(Level):
    name = "kube"
    ops = KUBE_LIFECYCLE_OPS

    @classmethod
    def applies(cls, target: Target) -> str:
        if target.stack is None:
            return f"level kube runs inside a stack: {target.name}"
        if not kube_description(target.stack).exists():
            return "level kube: no kubelet provisioned (hopbench provision --playbook kube.yml)"
        if target.handler.name != "runc":
            return (
                f"level kube: {target.name}: a standalone kubelet has no RuntimeClass (that needs an API server), "
                "so only the stack's default handler, runc, runs"
            )
        return ""

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> KubeLevel:
        t, stack = need_stack(target, cls.name)
        return cls(t, stack, ctx)

    def __init__(self, target: Target, stack: stacks.Stack, ctx: Context) -> None:
        self.target, self.stack, self.ctx, self.pair = target, stack, ctx, target.name
        desc = json.loads(kube_description(stack).read_text())
        self.binary = str(desc["kubelet"])
        self.ident = stack.name.replace("@", "-")
        self.node_name = f"hb-kube-{self.ident}".lower()
        self.dir = ctx.workdir / f"kube-{self.ident}"
        self.root = self.dir / "root"
        self.manifests = self.dir / "manifests"
        self.pidfile = Path(f"/run/hopbench/kubelet-{self.ident}.pid")
        self.cgroup_root = f"/hopbench-kube-{self.ident}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.local = threading.local()
        self.live: set[Path] = set()
        self.lock = threading.Lock()
        self.run_id = ctx.job.run_id
        self.cri = CriClient(stack.cri_endpoint, ctx.scen.timeout_s)
        # The device manager's socket folder is fixed (/var/lib/kubelet/device-plugins): removed
        # at the end when the kubelet made it.
        self.made_var_lib = not Path(VAR_LIB_KUBELET).exists()
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    # --- the kubelet process ----------------------------------------------------------------
    def _stop_left_kubelet(self) -> None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if cmdline and cmdline[0].endswith(b"kubelet") and self.node_name.encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            self.notes.append(f"stopped kubelet {pid} a crashed run left for {self.pair}")
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)

    def _cgroup_dirs(self) -> list[Path]:
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():  # cgroup v2: one hierarchy
            return [base / self.cgroup_root.lstrip("/")]
        return [h / self.cgroup_root.lstrip("/") for h in sorted(base.iterdir()) if h.is_dir()]

    def start(self) -> None:
        self._stop_left_kubelet()
        for d in (self.root, self.manifests, self.dir / "logs"):
            d.mkdir(parents=True, exist_ok=True)
        for d in self._cgroup_dirs():
            with contextlib.suppress(OSError):
                d.mkdir(parents=True, exist_ok=True)
        cgroup_v1 = nodeinfo.cgroups().get("mode") in ("legacy", "hybrid")
        self.port, healthz = free_port(), free_port()
        conf = config(self.stack, self.root, self.port, healthz, self.cgroup_root, cgroup_v1)
        (self.dir / "config.json").write_text(json.dumps(conf, indent=2))
        self.ctx.emit(Artifact(name=f"kube/{self.ident}-config.json", content=json.dumps(conf, indent=2)))
        if cgroup_v1:
            self.ctx.emit(
                Info(message=f"kube: {self.pair}: failCgroupV1 false (this node has cgroup v1)", target=self.pair)
            )
        argv = [self.binary, "--config", str(self.dir / "config.json"), "--root-dir", str(self.root)]
        argv += ["--cert-dir", str(self.root / "pki"), "--hostname-override", self.node_name, "--v=1"]
        log = open(self.dir / "kubelet.log", "wb")  # noqa: SIM115 - the kubelet writes it while it runs
        self.proc = subprocess.Popen(
            with_parent_death_signal(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KubeletFailed(f"kubelet for {self.pair} exited {self.proc.returncode}: {self._log_tail()}")
            try:
                self.pods()
                break
            except (OSError, http.client.HTTPException, ssl.SSLError, ValueError):
                time.sleep(0.2)
        else:
            raise KubeletFailed(f"kubelet for {self.pair} did not answer within 60 s: {self._log_tail()}")
        self.ctx.emit(Artifact(name=f"kube/{self.ident}-metrics-before.txt", content=self.get("/metrics").decode()))

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join((self.dir / "kubelet.log").read_text(errors="replace").splitlines()[-5:])[-1500:]
        return ""

    # --- the kubelet's API on loopback --------------------------------------------------------
    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            # The kubelet's self-signed serving certificate, pinned: trusted as its own CA.
            tls = ssl.create_default_context(cafile=str(self.root / "pki" / "kubelet.crt"))
            tls.check_hostname = False
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=tls)
            self.local.conn = conn
        return conn

    def get(self, path: str) -> bytes:
        conn = self._conn()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            raise
        if resp.status != 200:
            raise KubeletFailed(f"kubelet GET {path}: HTTP {resp.status}")
        return body

    def pods(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.get("/pods")).get("items") or []
        return {str(p["metadata"]["name"]): p for p in items}

    # --- one lifecycle -----------------------------------------------------------------------
    def manifest(self, name: str) -> dict[str, Any]:
        workload = self.ctx.scen.workload
        container: dict[str, Any] = {
            "name": kubelet.CONTAINER_NAME,
            "image": self.stack.workload_image,
            "imagePullPolicy": "Never",
        }
        if workload.command:
            container["command"] = list(workload.command)
        if workload.args:
            container["args"] = list(workload.args)
        labels = {
            kubelet.MANAGED_LABEL: "true",
            kubelet.RUN_LABEL: self.run_id,
            kubelet.NODE_LABEL: self.ctx.job.node,
            kubelet.AGENT_LABEL: str(os.getpid()),
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {
                "containers": [container],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": workload.stop_timeout_s,
            },
        }

    def lifecycle(self, turn: Turn) -> Outcome:
        name = f"hb-{self.run_id[-8:]}-{turn.tag}".lower()
        key = f"{name}-{self.node_name}"  # a static pod's name on its node
        path = self.manifests / f"{name}.json"
        done: list[Timed[Any]] = []
        deadline_s = self.ctx.scen.timeout_s
        with self.lock:
            self.live.add(path)
        start = time.monotonic_ns()
        path.write_text(json.dumps(self.manifest(name)))
        marks: dict[str, int] = {}
        problem = ""
        try:
            end = time.monotonic() + deadline_s
            while "PodReady" not in marks and time.monotonic() < end:
                pod = self.pods().get(key)
                now = time.monotonic_ns()
                if pod is not None:
                    status = pod.get("status", {})
                    cond = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
                    running = [c for c in status.get("containerStatuses", []) if "running" in c.get("state", {})]
                    if cond.get("PodReadyToStartContainers") == "True":
                        marks.setdefault("SandboxReady", now)
                    if cond.get("Ready") == "True" and len(running) == len(pod["spec"]["containers"]):
                        marks.setdefault("SandboxReady", now)
                        marks["PodReady"] = now
                    if status.get("phase") in ("Failed", "Succeeded"):
                        problem = f"pod {key} phase {status.get('phase')}: {status.get('message', '')}"
                        break
                    waiting = [
                        c["state"]["waiting"]
                        for c in status.get("containerStatuses", [])
                        if "waiting" in c.get("state", {})
                    ]
                    fatal = [w for w in waiting if w.get("reason") in FATAL_WAITING]
                    if fatal:
                        problem = f"{fatal[0]['reason']}: {' '.join(str(fatal[0].get('message', '')).split())[:400]}"
                        break
                time.sleep(POLL_S)
            prev = start
            for op in ("SandboxReady", "PodReady"):
                if op not in marks:
                    why = problem or f"no {op} within {deadline_s:g} s"
                    done.append(Timed(op, prev, time.monotonic_ns() - prev, None, why))
                    break
                done.append(Timed(op, prev, marks[op] - prev, None, None))
                prev = marks[op]
            if len(done) == 2 and done[-1].ok and READY_MARK not in self._log(name):
                problem = f"pod {key}: no {READY_MARK!r} in its container log"
        finally:
            gone = self._delete(path, key)
        if len(done) == 2 and all(t.ok for t in done):
            done.append(gone)
        return Outcome(done, problem, "workload-running" if problem else "workload-ran")

    def _log(self, name: str) -> str:
        for log in (self.dir / "logs").glob(f"default_{name}-{self.node_name}_*/{kubelet.CONTAINER_NAME}/*.log"):
            with contextlib.suppress(OSError):
                return log.read_text(errors="replace")
        return ""

    def _delete(self, path: Path, key: str) -> Timed[None]:
        start = time.monotonic_ns()
        path.unlink(missing_ok=True)
        end = time.monotonic() + self.ctx.scen.workload.stop_timeout_s + self.ctx.scen.timeout_s
        while time.monotonic() < end:
            if key not in self.pods() and not self._ready_sandboxes(key):
                with self.lock:
                    self.live.discard(path)
                return Timed("PodDelete", start, time.monotonic_ns() - start, None, None)
            time.sleep(POLL_S)
        return Timed("PodDelete", start, time.monotonic_ns() - start, None, f"pod {key} still on the kubelet")

    def _ready_sandboxes(self, key: str) -> int:
        ready = cri.PodSandboxState.SANDBOX_READY
        return sum(1 for s in self.cri.sandboxes({"io.kubernetes.pod.name": key}) if s.state == ready)

    # --- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            with self.lock:
                left = list(self.live)
            for path in left:
                self._delete(path, f"{path.stem}-{self.node_name}")
            with contextlib.suppress(OSError, http.client.HTTPException, ssl.SSLError, KubeletFailed):
                self.ctx.emit(
                    Artifact(name=f"kube/{self.ident}-metrics-after.txt", content=self.get("/metrics").decode())
                )
        finally:
            self._stop()
            with contextlib.suppress(OSError):
                log = (self.dir / "kubelet.log").read_bytes()[-200_000:].decode(errors="replace")
                self.ctx.emit(Artifact(name=f"kube/{self.ident}-kubelet.log", content=log))
            self._remove_pods()
            self._unmount()
            shutil.rmtree(self.dir, ignore_errors=True)
            remove_cgroup_tree(self.cgroup_root)
            self.pidfile.unlink(missing_ok=True)
            self.cri.close()
            if self.made_var_lib:
                shutil.rmtree(VAR_LIB_KUBELET, ignore_errors=True)

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.notes.append(f"kubelet for {self.pair} did not stop on SIGTERM within 20 s: killed")

    def _remove_pods(self) -> None:
        """Sandboxes of this run the kubelet left in the runtime (it removes them lazily)."""
        client = CriClient(self.stack.cri_endpoint, self.ctx.scen.timeout_s)
        try:
            mine = {kubelet.RUN_LABEL: self.run_id, kubelet.NODE_LABEL: self.ctx.job.node}
            for sandbox in client.sandboxes(mine):
                errors = client.remove_pod(sandbox.id)
                if errors:
                    self.notes.append(f"kube: clean-up of pod {sandbox.id[:12]} on {self.pair}: {'; '.join(errors)}")
        finally:
            client.close()

    def _unmount(self) -> None:
        """The kubelet mounts its root dir (and pods' volumes) under itself: unmount, deepest first."""
        root = str(self.root)
        points = []
        with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh if line.split()[4].startswith(root)]
        for point in sorted(points, key=len, reverse=True):
            proc = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                self.notes.append(f"kube: umount {point}: {proc.stderr.strip()[-200:]}")
