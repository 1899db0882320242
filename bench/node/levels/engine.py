"""The `engine` level: the Docker Engine API over dockerd's unix socket (docker stack).

What cri-dockerd asks dockerd for, without cri-dockerd: a pod is a pause container
(network "none": cri-dockerd sets the pod network up itself through CNI, so no network
happens at this level) and the workload container joining its network and IPC
namespaces. The host configs are the ones cri-dockerd derives from the kubelet requests of
bench/node/kubelet.py (read back from dockerd with `docker inspect`): pod cgroup parent, CPU
shares 2, oom_score_adj -998 for the pause container and 1000 for the BestEffort workload,
no-new-privileges on the pause container, seccomp unconfined on the workload, the pod's
/etc/hosts and termination-log bind mounts, 64 MiB /dev/shm. Leaving one out changes the
work (docker's default seccomp profile alone added ~20 ms to each start here), so all are kept.
One lifecycle, each op one HTTP request on a kept-alive connection:

  PauseCreate, PauseStart, ContainerCreate, ContainerStart, ContainerStop (SIGTERM, then
  dockerd waits for the exit, up to the grace period), ContainerDelete, PauseStop, PauseDelete

Untimed between ops: after ContainerStart the workload's ready line must be in its log;
after ContainerStop it must have exited 0 with its stop line. Every container carries the
run's labels, so a crashed run's leftovers are found and removed (sweep).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from bench.errors import ComponentError
from bench.node import kubelet
from bench.node.cri import remove_pod_files
from bench.node.levels import (
    READY_MARK,
    STOP_MARK,
    Context,
    Level,
    Outcome,
    StopLifecycle,
    Target,
    Timed,
    Turn,
    need_stack,
    timed,
    wait_for,
)
from bench.ops import ENGINE_LIFECYCLE_OPS
from bench.scenario import Workload

LEVEL_LABEL = "io.hopbench/level"


class EngineError(ComponentError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class EngineClient:
    """Docker Engine API over a unix socket; one kept-alive connection per thread (as the docker CLI keeps one)."""

    def __init__(self, endpoint: str, timeout_s: float = 60.0) -> None:
        if not endpoint.startswith("unix://"):
            raise ValueError(f"docker endpoint {endpoint!r}: expected unix:///path/to/docker.sock")
        self.path = endpoint[len("unix://") :]
        self.timeout = timeout_s
        self.local = threading.local()
        self.conns: list[_UnixHTTPConnection] = []
        self.lock = threading.Lock()
        self.prefix = ""
        self.prefix = "/v" + str(self.request("GET", "/version")["ApiVersion"])

    def _conn(self) -> _UnixHTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = _UnixHTTPConnection(self.path, self.timeout)
            with self.lock:
                self.conns.append(conn)
        return conn

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        conn = self._conn()
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # next request reconnects
            raise

    def request(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204, 304)) -> Any:
        status, data = self.raw(method, path, body)
        if status not in ok:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")[:300]
            raise EngineError(f"{method} {path}: HTTP {status}: {message}")
        return json.loads(data) if data and data[:1] in (b"{", b"[") else None

    def close(self) -> None:
        with self.lock:
            for conn in self.conns:
                conn.close()
            self.conns.clear()

    def containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        result: list[dict[str, Any]] = self.request(
            "GET", "/containers/json?all=1&filters=" + urllib.parse.quote(filters)
        )
        return result

    def logs(self, cid: str) -> bytes:
        status, data = self.raw("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
        if status != 200:
            raise EngineError(f"logs of {cid[:12]}: HTTP {status}")
        return data

    def remove(self, cid: str) -> str:
        """Force-remove one container; '' or the error."""
        try:
            self.request("DELETE", f"/containers/{cid}?force=1", ok=(204, 404))
            return ""
        except (EngineError, OSError) as exc:
            return f"remove {cid[:12]}: {exc}"


class EngineLevel(Level):
    """Pod-shaped lifecycles through dockerd alone, for one run."""

    name = "engine"
    ops = ENGINE_LIFECYCLE_OPS

    def __init__(
        self,
        endpoint: str,
        pause_image: str,
        workload: Workload,
        workload_image: str,
        run_id: str,
        timeout_s: float,
        cgroup_driver: str = "cgroupfs",
        runtime: str = "",
    ) -> None:
        self.client = EngineClient(endpoint, timeout_s)
        # dockerd's runtime for both containers ('' = its default, the role's runc).
        self.runtime = runtime
        self.cgroup_driver = cgroup_driver  # dockerd's native.cgroupdriver: CgroupParent is a slice with systemd
        self.pause_image, self.workload_image = pause_image, workload_image
        self.command, self.args = list(workload.command), list(workload.args)
        self.grace = workload.stop_timeout_s
        self.run_id = run_id
        self.labels = {
            kubelet.MANAGED_LABEL: "true",
            kubelet.RUN_LABEL: run_id,
            LEVEL_LABEL: "engine",
            kubelet.NODE_LABEL: kubelet.node_name(),
        }

    @classmethod
    def applies(cls, target: Target) -> str:
        stack = target.stack
        if stack is None or not stack.extra.get("docker_endpoint"):
            return f"level engine needs dockerd: stack {stack.name if stack else 'none'} has no Docker Engine API"
        return ""

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> EngineLevel:
        t, stack = need_stack(target, cls.name)
        level = cls(
            str(stack.extra["docker_endpoint"]),
            stack.pause_image,
            ctx.scen.workload,
            stack.workload_image,
            ctx.job.run_id,
            ctx.scen.timeout_s,
            stack.cgroup_driver,
            # A handler other than runc is one of dockerd's runtimes by its own name (daemon.json).
            "" if t.handler.name == "runc" else t.handler.name,
        )
        level.target = t
        return level

    def lifecycle(self, turn: Turn) -> Outcome:
        """Timed ops of one lifecycle and the check failure ('' when the workload behaved)."""
        tag = turn.tag
        c = self.client
        results: list[Timed[Any]] = []
        made: list[str] = []

        def op(name: str, call: Any) -> Any:
            t = timed(name, call)
            results.append(t)
            if not t.ok:
                raise StopLifecycle
            return t.value

        name = f"hb-engine-{self.run_id[-8:]}-{tag}".lower()
        pod = kubelet.Pod(name=name, run_id=self.run_id, grace_period_s=self.grace, cgroup_driver=self.cgroup_driver)
        pod.prepare()
        common: dict[str, Any] = {"CgroupParent": pod.cgroup_parent, "CpuShares": 2, "ShmSize": 64 << 20}
        if self.runtime:
            common["Runtime"] = self.runtime
        pause_body = {
            "Image": self.pause_image,
            "Labels": self.labels,
            "HostConfig": {
                **common,
                "NetworkMode": "none",
                "IpcMode": "shareable",
                "SecurityOpt": ["no-new-privileges"],
                "OomScoreAdj": -998,
            },
        }
        state = Path(pod.state_directory)
        binds = [
            f"{state / 'etc-hosts'}:/etc/hosts",
            f"{state / 'containers' / kubelet.CONTAINER_NAME / 'termination-log'}:/dev/termination-log",
        ]
        try:
            pause = op("PauseCreate", lambda: c.request("POST", f"/containers/create?name={name}-pause", pause_body))[
                "Id"
            ]
            made.append(pause)
            op("PauseStart", lambda: c.request("POST", f"/containers/{pause}/start"))
            body: dict[str, Any] = {
                "Image": self.workload_image,
                "Labels": self.labels,
                "StopTimeout": self.grace,
                "HostConfig": {
                    **common,
                    "NetworkMode": f"container:{pause}",
                    "IpcMode": f"container:{pause}",
                    "SecurityOpt": ["seccomp=unconfined"],
                    "OomScoreAdj": 1000,
                    "Binds": binds,
                },
            }
            if self.command:
                body["Entrypoint"] = self.command
            if self.args:
                body["Cmd"] = self.args
            cid = op("ContainerCreate", lambda: c.request("POST", f"/containers/create?name={name}", body))["Id"]
            made.append(cid)
            op("ContainerStart", lambda: c.request("POST", f"/containers/{cid}/start"))
            problem = wait_for(lambda: READY_MARK.encode() in c.logs(cid), "ready line in the container log")
            op("ContainerStop", lambda: c.request("POST", f"/containers/{cid}/stop?t={self.grace}"))
            if not problem:
                state = c.request("GET", f"/containers/{cid}/json")["State"]
                if state.get("Running") or state.get("ExitCode") != 0:
                    problem = f"after ContainerStop: running={state.get('Running')} exit code {state.get('ExitCode')}"
                elif STOP_MARK.encode() not in c.logs(cid):
                    problem = "the workload did not print its stop line after SIGTERM"
            op("ContainerDelete", lambda: c.request("DELETE", f"/containers/{cid}", ok=(204,)))
            made.remove(cid)
            op("PauseStop", lambda: c.request("POST", f"/containers/{pause}/stop?t={self.grace}"))
            op("PauseDelete", lambda: c.request("DELETE", f"/containers/{pause}", ok=(204,)))
            made.remove(pause)
            return Outcome(results, problem)
        except StopLifecycle:
            return Outcome(results)
        finally:
            for cid in reversed(made):
                c.remove(cid)
            remove_pod_files(pod)

    def cleanup(self) -> tuple[int, list[str]]:
        """Force-remove this run's containers on this node: (how many, errors)."""
        mine = {kubelet.RUN_LABEL: self.run_id, LEVEL_LABEL: "engine", kubelet.NODE_LABEL: kubelet.node_name()}
        found = self.client.containers(mine)
        errors = [e for e in (self.client.remove(str(x["Id"])) for x in found) if e]
        return len(found), errors

    def close(self) -> None:
        try:
            n, errors = self.cleanup()
            if n or errors:
                self.notes.append(f"engine level: removed {n} container(s) at the end {'; '.join(errors)}".strip())
        finally:
            self.client.close()
