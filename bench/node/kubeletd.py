"""A real kubelet (v1.36) for one stack, started by the agent while level kube or kubelet runs.

Its own root dir, node name, cgroup root and loopback ports; the stack's CRI socket. The agent
stops it by its PID at the end; it also dies with the agent (parent-death signal), and one a
crashed agent left is stopped by its pid file (after checking the process is that kubelet)
before the next starts. This node has cgroup v1 (hybrid): kubelet >= 1.35 refuses it unless
failCgroupV1 is false, which is set there and recorded with the kubelet's config.

Standalone (no kubeconfig): pods are static pods from its manifest folder. With a kubeconfig
(level kube) it registers its node with the API server and runs the pods bound to it.

Dockershim (level dockershim): a kubelet <= 1.23 that talks to dockerd itself (in-tree
dockershim) instead of to a CRI socket, given the same pod network (CNI, the stack's config)
and pause image as the stack's cri-dockerd. Its configuration leaves out what 1.23 does not
know (failCgroupV1, containerRuntimeEndpoint, podLogsDir: its pod logs are in /var/log/pods).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import stacks
from bench.errors import ComponentError
from bench.node import kubelet as podspec
from bench.node import nodeinfo
from bench.node.cri import CriClient, remove_cgroup_tree

VAR_LIB_KUBELET = "/var/lib/kubelet"
LEGACY_POD_LOGS = Path("/var/log/pods")
START_TIMEOUT_S = 60
LOG_WAIT_S = 10.0


class KubeletFailed(ComponentError):
    pass


def kube_description(stack: stacks.Stack) -> Path:
    """/etc/hopbench/kube.json, beside the stack descriptions (written by the kubelet role)."""
    return Path(stack.description_path).parent.parent / "kube.json"


def ident_of(stack: stacks.Stack) -> str:
    return stack.name.replace("@", "-")


def node_name_of(stack: stacks.Stack) -> str:
    """The kubelet's node name for a stack (its --hostname-override; also a label value)."""
    return stacks.kube_node_name(stack.name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def terminate(proc: subprocess.Popen[bytes], grace_s: float) -> bool:
    """SIGTERM a child we started (by its PID), SIGKILL after `grace_s`: True when it had to be killed."""
    if proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return True


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """argv run so that it gets SIGTERM when the agent goes away, however it goes: util-linux's
    setpriv sets the parent-death signal and execs it (no Python code between fork and exec)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def cgroup_root_of(ident: str, driver: str) -> tuple[str, str]:
    """(the kubelet's cgroupRoot, the cgroup it must find there) for a stack instance.

    The kubelet takes cgroupRoot in cgroupfs form whatever its driver. With the systemd driver it
    looks for it, and puts its kubepods slices under it, as a slice: each '-' becomes '_' (a '-'
    is a step in systemd's slice hierarchy) and '.slice' is appended, so /hopbench-kube-x is
    the slice hopbench_kube_x.slice at /hopbench_kube_x.slice. Characters a unit name cannot
    hold (a '+' of a driver twin's version) become '_' in both forms."""
    name = "hopbench-kube-" + re.sub(r"[^A-Za-z0-9_.-]", "_", ident)
    if driver == "systemd":
        return f"/{name}", "/" + name.replace("-", "_") + ".slice"
    return f"/{name}", f"/{name}"


def config(
    stack: stacks.Stack,
    root: Path,
    port: int,
    healthz: int,
    cgroup_root: str,
    cgroup_v1: bool,
    legacy: bool = False,
    cgroup_driver: str = "cgroupfs",
    tracing_endpoint: str = "",
) -> dict[str, Any]:
    """The kubelet's configuration for one stack: loopback only; static pods from a folder; the
    stack instance's cgroup driver (kubelet and runtime must agree: a kubelet >= 1.34 takes a CRI
    runtime's own, cri-dockerd and dockershim's dockerd are checked against this one).
    `legacy`: for a dockershim kubelet (1.23), without the fields it does not know."""
    conf = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": not cgroup_v1,
        "cgroupDriver": cgroup_driver,
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
    if tracing_endpoint and not legacy:
        # KubeletTracing (GA in 1.34): a syncPod span per pod, a client span per CRI call with its
        # traceparent, every one sampled, to the agent's receiver (scenario tracing).
        conf["tracing"] = {"endpoint": tracing_endpoint, "samplingRatePerMillion": 1_000_000}
    if legacy:
        for newer in ("failCgroupV1", "containerRuntimeEndpoint", "podLogsDir"):
            del conf[newer]
    return conf


LEGACY_CNI_VERSION = "0.4.0"


def legacy_cni_config(conf_dir: Path, out: Path) -> list[str]:
    """The stack's CNI network lists, written to `out` with cniVersion 0.4.0: a 1.23 kubelet's
    libcni (0.8) refuses results of version 1.0.0, the plugins speak both. Same network, bridge,
    subnet and IPAM state. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(conf_dir.glob("*.conflist")):
        try:
            conf = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KubeletFailed(f"dockershim: {path}: not a CNI network list ({exc})") from exc
        conf["cniVersion"] = LEGACY_CNI_VERSION
        for plugin in conf.get("plugins", []):
            if "cniVersion" in plugin:
                plugin["cniVersion"] = LEGACY_CNI_VERSION
        (out / path.name).write_text(json.dumps(conf, indent=2))
        written.append(path.name)
    if not written:
        raise KubeletFailed(f"dockershim: no CNI network list (*.conflist) in {conf_dir}")
    return written


def dockershim_args(stack: stacks.Stack, root: Path) -> list[str]:
    """A 1.23 kubelet's flags for its in-tree dockershim on the stack's dockerd, with the pod
    network (the stack's CNI config, at CNI version 0.4.0) and pause image of its cri-dockerd."""
    endpoint = str(stack.extra.get("docker_endpoint") or "")
    cni = stack.extra.get("cni") or {}
    if not endpoint or not cni.get("conf_dir"):
        raise KubeletFailed(f"dockershim: {stack.name} names no docker_endpoint or CNI config in its description")
    conf_dir = root / "cni-conf"
    legacy_cni_config(Path(cni["conf_dir"]), conf_dir)
    return [
        "--container-runtime=docker",
        f"--docker-endpoint={endpoint}",
        f"--experimental-dockershim-root-directory={root / 'dockershim'}",
        # Its own socket: the default /var/run/dockershim.sock would be shared by two 1.23 kubelets
        # interleaved on two docker instances (and by any dockershim the node runs).
        f"--container-runtime-endpoint=unix://{root / 'dockershim.sock'}",
        f"--image-service-endpoint=unix://{root / 'dockershim.sock'}",
        f"--pod-infra-container-image={stack.pause_image}",
        "--network-plugin=cni",
        f"--cni-conf-dir={conf_dir}",
        f"--cni-bin-dir={stack.extra.get('cni_bin_dir') or '/usr/local/lib/hopbench/cni'}",
        f"--cni-cache-dir={root / 'cni-cache'}",
    ]


class Kubelet:
    """One kubelet process for one stack; `close()` stops it and removes what it made."""

    def __init__(
        self,
        stack: stacks.Stack,
        workdir: Path,
        run_id: str,
        node: str,
        timeout_s: float,
        kubeconfig: Path | None = None,
        dockershim: bool = False,
        tracing_endpoint: str = "",
    ) -> None:
        desc = json.loads(kube_description(stack).read_text())
        self.stack, self.run_id, self.node, self.timeout_s = stack, run_id, node, timeout_s
        self.dockershim = dockershim
        self.tracing_endpoint = tracing_endpoint
        if dockershim:
            desc = desc.get("dockershim") or {}
            if not desc.get("kubelet"):
                raise KubeletFailed(
                    f"{kube_description(stack)}: no dockershim kubelet (kubelet_dockershim in kube.yml)"
                )
        self.binary = str(desc["kubelet"])
        self.version = str(desc.get("version", ""))
        self.ident = ident_of(stack)
        self.node_name = node_name_of(stack)
        self.dir = workdir / f"kube-{self.ident}"
        self.root = self.dir / "root"
        self.manifests = self.dir / "manifests"
        self.logs = self.dir / "logs"
        self.kubeconfig = kubeconfig
        self.pidfile = Path(f"/run/hopbench/kubelet-{self.ident}.pid")
        self.cgroup_driver = stack.cgroup_driver
        # cgroup_root in the kubelet's config; cgroup_dir where it is in the hierarchies.
        self.cgroup_root, self.cgroup_dir = cgroup_root_of(self.ident, self.cgroup_driver)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.conf: dict[str, Any] = {}
        self.cgroup_v1 = False
        self.notes: list[str] = []
        self.local = threading.local()
        # The device manager's socket folder is fixed (/var/lib/kubelet/device-plugins): removed
        # at the end when the kubelet made it.
        self.made_var_lib = not Path(VAR_LIB_KUBELET).exists()

    # --- the process --------------------------------------------------------------------------
    def _stop_left_kubelet(self) -> None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if cmdline and cmdline[0].endswith(b"kubelet") and self.node_name.encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            self.notes.append(f"stopped kubelet {pid} a crashed run left for {self.stack.name}")
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)

    def _cgroup_dirs(self) -> list[Path]:
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():  # cgroup v2: one hierarchy
            return [base / self.cgroup_dir.lstrip("/")]
        return [h / self.cgroup_dir.lstrip("/") for h in sorted(base.iterdir()) if h.is_dir()]

    @property
    def slice(self) -> str:
        """The systemd slice of its cgroup root ('' with the cgroupfs driver)."""
        return self.cgroup_dir.lstrip("/") if self.cgroup_driver == "systemd" else ""

    def _make_cgroup_root(self) -> None:
        """The cgroup root the kubelet checks before it starts. With the systemd driver it is a
        slice systemd owns (started, so that the kubelet's kubepods slices and the runtime's pod
        scopes go below a unit systemd knows), then made in the hierarchies systemd does not
        manage (cpuset, hugetlb on cgroup v1), which the kubelet checks too."""
        if self.slice:
            proc = subprocess.run(
                ["systemctl", "start", self.slice], capture_output=True, text=True, check=False, timeout=30
            )
            if proc.returncode != 0:
                raise KubeletFailed(
                    f"kubelet for {self.stack.name}: systemctl start {self.slice}: {proc.stderr.strip()[-300:]}"
                )
        for d in self._cgroup_dirs():
            with contextlib.suppress(OSError):
                d.mkdir(parents=True, exist_ok=True)

    def _remove_cgroup_root(self) -> None:
        """Stop the slice (systemd stops what is left below it and removes the cgroups it made),
        then remove what is left in every hierarchy."""
        if self.slice:
            proc = subprocess.run(
                ["systemctl", "stop", self.slice], capture_output=True, text=True, check=False, timeout=60
            )
            if proc.returncode != 0:
                self.notes.append(f"kube: systemctl stop {self.slice}: {proc.stderr.strip()[-200:]}")
        remove_cgroup_tree(self.cgroup_dir)

    def start(self) -> None:
        self._stop_left_kubelet()
        for d in (self.root, self.manifests, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self._make_cgroup_root()
        self.cgroup_v1 = nodeinfo.cgroups().get("mode") in ("legacy", "hybrid")
        self.port, healthz = free_port(), free_port()
        self.conf = config(
            self.stack,
            self.root,
            self.port,
            healthz,
            self.cgroup_root,
            self.cgroup_v1,
            legacy=self.dockershim,
            cgroup_driver=self.cgroup_driver,
            tracing_endpoint=self.tracing_endpoint,
        )
        (self.dir / "config.json").write_text(json.dumps(self.conf, indent=2))
        argv = [self.binary, "--config", str(self.dir / "config.json"), "--root-dir", str(self.root)]
        argv += ["--cert-dir", str(self.root / "pki"), "--hostname-override", self.node_name, "--v=1"]
        if self.kubeconfig is not None:
            argv += ["--kubeconfig", str(self.kubeconfig)]
        if self.dockershim:
            argv += dockershim_args(self.stack, self.root)
        log = open(self.dir / "kubelet.log", "wb")  # noqa: SIM115 - the kubelet writes it while it runs
        self.proc = subprocess.Popen(
            with_parent_death_signal(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KubeletFailed(f"kubelet for {self.stack.name} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                self.pods()
                return
            except (OSError, http.client.HTTPException, ssl.SSLError, ValueError):
                time.sleep(0.2)
        raise KubeletFailed(
            f"kubelet for {self.stack.name} did not answer within {START_TIMEOUT_S} s: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = (self.dir / "kubelet.log").read_text(errors="replace")
            return " | ".join(text.splitlines()[-lines:])[-1500:]
        return ""

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "kubelet.log").read_bytes()[-200_000:].decode(errors="replace")
        return ""

    # --- its API on loopback ------------------------------------------------------------------
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

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    def container_log(self, namespace: str, name: str) -> str:
        """The workload container's log of a pod this kubelet ran (its podLogsDir)."""
        logs = LEGACY_POD_LOGS if self.dockershim else self.logs
        for log in logs.glob(f"{namespace}_{name}_*/{podspec.CONTAINER_NAME}/*.log"):
            with contextlib.suppress(OSError):
                return log.read_text(errors="replace")
        return ""

    def ready_line(self, namespace: str, name: str, mark: str, deadline_s: float = LOG_WAIT_S) -> str:
        """Wait (untimed) until the pod's workload log holds `mark`: '' or why not. The runtime
        writes the log on its own schedule, so a pod can be Ready a moment before its line is there."""
        end = time.monotonic() + deadline_s
        while True:
            if mark in self.container_log(namespace, name):
                return ""
            if time.monotonic() >= end:
                return f"pod {name}: no {mark!r} in its container log within {deadline_s:g} s of Ready"
            time.sleep(0.02)

    # --- the end ------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.proc is not None and terminate(self.proc, 20):
            self.notes.append(f"kubelet for {self.stack.name} did not stop on SIGTERM within 20 s: killed")

    def close(self) -> None:
        """Stop it, then remove the sandboxes of this run it left, its mounts, folders and cgroups."""
        try:
            self.stop()
        finally:
            self._remove_pods()
            self._unmount()
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.dockershim:  # its pods' logs, in the fixed folder of a 1.23 kubelet
                for d in LEGACY_POD_LOGS.glob(f"*_*-{self.node_name}_*"):
                    shutil.rmtree(d, ignore_errors=True)
            self._remove_cgroup_root()
            self.pidfile.unlink(missing_ok=True)
            if self.made_var_lib:
                shutil.rmtree(VAR_LIB_KUBELET, ignore_errors=True)

    def _remove_pods(self) -> None:
        """Sandboxes of this run the kubelet left in the runtime (it removes them lazily)."""
        client = CriClient(self.stack.cri_endpoint, self.timeout_s)
        try:
            mine = {podspec.RUN_LABEL: self.run_id, podspec.NODE_LABEL: self.node}
            for sandbox in client.sandboxes(mine):
                errors = client.remove_pod(sandbox.id)
                if errors:
                    self.notes.append(
                        f"kube: clean-up of pod {sandbox.id[:12]} on {self.stack.name}: {'; '.join(errors)}"
                    )
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
