"""A CRI v1 client over a stack's unix socket: the calls kubelet makes, each one timed (level cri)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc as cri_grpc

from bench.errors import ComponentError
from bench.node import kubelet
from bench.node.levels import READY_MARK, STOP_MARK, Timed, timed

if TYPE_CHECKING:
    from bench.node.traces import Tracer

T = TypeVar("T")


class CheckFailed(ComponentError):
    """The workload did not behave as it must (not running, no output, bad exit code)."""


class CallLog:
    """Every call the client makes, timed or not: {method: [count, seconds]}, the client's side of
    what a daemon's own counters see (bench.node.metrics). Kept outside the timed interval."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[str, list[float]] = {}

    def add(self, method: str, ns: int) -> None:
        with self.lock:
            slot = self.totals.setdefault(method, [0.0, 0.0])
            slot[0] += 1
            slot[1] += ns / 1e9

    def snapshot(self) -> dict[str, tuple[float, float]]:
        with self.lock:
            return {k: (v[0], v[1]) for k, v in self.totals.items()}


class CriClient:
    """A CRI v1 client for one stack's socket; thread-safe (one gRPC channel)."""

    def __init__(self, endpoint: str, timeout_s: float = 60.0, tracer: Tracer | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout_s
        self.channel = grpc.insecure_channel(endpoint)
        self.log = CallLog()
        # Tracing (scenario `tracing`): every call in a lifecycle carries its traceparent.
        calls = tracer.intercept(self.channel) if tracer is not None else self.channel
        self.runtime = cri_grpc.RuntimeServiceStub(calls)
        self.images = cri_grpc.ImageServiceStub(calls)

    def close(self) -> None:
        self.channel.close()

    def _timed(self, op: str, call: Callable[[], T]) -> Timed[T]:
        t = timed(op, call)
        self.log.add(op, t.duration_ns)
        return t

    def _untimed(self, op: str, call: Callable[[], T]) -> T:
        start = time.monotonic_ns()
        try:
            return call()
        finally:
            self.log.add(op, time.monotonic_ns() - start)

    def version(self) -> cri.VersionResponse:
        return self._untimed(
            "Version", lambda: self.runtime.Version(cri.VersionRequest(version="v1"), timeout=min(self.timeout, 10))
        )

    def image_id(self, ref: str) -> str:
        req = cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))
        status = self._untimed("ImageStatus", lambda: self.images.ImageStatus(req, timeout=self.timeout))
        if not status.image.id:
            raise LookupError(f"image {ref} is not in the stack's store (provision the node)")
        return str(status.image.id)

    # --- the timed ops -------------------------------------------------------------
    def run_pod_sandbox(self, config: cri.PodSandboxConfig, handler: str) -> Timed[str]:
        req = cri.RunPodSandboxRequest(config=config, runtime_handler=handler)
        return self._timed(
            "RunPodSandbox", lambda: self.runtime.RunPodSandbox(req, timeout=self.timeout).pod_sandbox_id
        )

    def create_container(
        self, sandbox_id: str, config: cri.ContainerConfig, sandbox: cri.PodSandboxConfig
    ) -> Timed[str]:
        req = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox)
        return self._timed(
            "CreateContainer", lambda: self.runtime.CreateContainer(req, timeout=self.timeout).container_id
        )

    def create_container_as_critest(
        self, sandbox_id: str, config: cri.ContainerConfig, sandbox: cri.PodSandboxConfig, image_ref: str
    ) -> Timed[str]:
        """critest's CreateContainer figure: ImageStatus of the image, then CreateContainer, both
        inside the timed window, as cri-tools' CreateContainerWithError does (the call log keeps
        each call apart)."""
        ireq = cri.ImageStatusRequest(image=cri.ImageSpec(image=image_ref))
        req = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox)

        def call() -> str:
            self._untimed("ImageStatus", lambda: self.images.ImageStatus(ireq, timeout=self.timeout))
            return str(
                self._untimed(
                    "CreateContainer", lambda: self.runtime.CreateContainer(req, timeout=self.timeout)
                ).container_id
            )

        return timed("CreateContainer", call)

    def start_container(self, container_id: str) -> Timed[object]:
        req = cri.StartContainerRequest(container_id=container_id)
        return self._timed("StartContainer", lambda: self.runtime.StartContainer(req, timeout=self.timeout))

    def stop_container(self, container_id: str, grace_s: int) -> Timed[object]:
        req = cri.StopContainerRequest(container_id=container_id, timeout=grace_s)
        return self._timed("StopContainer", lambda: self.runtime.StopContainer(req, timeout=self.timeout + grace_s))

    def remove_container(self, container_id: str) -> Timed[object]:
        req = cri.RemoveContainerRequest(container_id=container_id)
        return self._timed("RemoveContainer", lambda: self.runtime.RemoveContainer(req, timeout=self.timeout))

    def stop_pod_sandbox(self, sandbox_id: str) -> Timed[object]:
        req = cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        return self._timed("StopPodSandbox", lambda: self.runtime.StopPodSandbox(req, timeout=self.timeout))

    def remove_pod_sandbox(self, sandbox_id: str) -> Timed[object]:
        req = cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        return self._timed("RemovePodSandbox", lambda: self.runtime.RemovePodSandbox(req, timeout=self.timeout))

    def pod_sandbox_status(self, sandbox_id: str, verbose: bool = False) -> Timed[cri.PodSandboxStatusResponse]:
        req = cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return self._timed("PodSandboxStatus", lambda: self.runtime.PodSandboxStatus(req, timeout=self.timeout))

    def timed_container_status(self, container_id: str, verbose: bool = False) -> Timed[cri.ContainerStatusResponse]:
        req = cri.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self._timed("ContainerStatus", lambda: self.runtime.ContainerStatus(req, timeout=self.timeout))

    def runtime_config(self) -> cri.RuntimeConfigResponse | None:
        """The runtime's cgroup driver (CRI RuntimeConfig); None where the runtime has no such call."""
        try:
            req = cri.RuntimeConfigRequest()
            return self._untimed(
                "RuntimeConfig", lambda: self.runtime.RuntimeConfig(req, timeout=min(self.timeout, 10))
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise

    # --- untimed checks and clean-up -----------------------------------------------
    def container_status(self, container_id: str) -> cri.ContainerStatus:
        req = cri.ContainerStatusRequest(container_id=container_id)
        return self._untimed("ContainerStatus", lambda: self.runtime.ContainerStatus(req, timeout=self.timeout)).status

    def wait_running_with_output(self, container_id: str, deadline_s: float = 10.0) -> str:
        """Check through CRI that the workload runs and has printed its ready line."""
        end = time.monotonic() + deadline_s
        status = self.container_status(container_id)
        while time.monotonic() < end:
            status = self.container_status(container_id)
            if status.state == cri.ContainerState.CONTAINER_RUNNING and READY_MARK in _read(status.log_path):
                return status.log_path
            if status.state == cri.ContainerState.CONTAINER_EXITED:
                break
            time.sleep(0.005)
        raise CheckFailed(
            f"container {container_id[:12]} state {cri.ContainerState.Name(status.state)}, exit {status.exit_code}, "
            f"log {status.log_path or '-'} without {READY_MARK!r}"
        )

    def check_exited_cleanly(self, container_id: str) -> None:
        """After StopContainer: exited with status 0 after printing its stop line."""
        status = self.container_status(container_id)
        log = _read(status.log_path)
        if status.state != cri.ContainerState.CONTAINER_EXITED or status.exit_code != 0 or STOP_MARK not in log:
            raise CheckFailed(
                f"container {container_id[:12]} after stop: state {cri.ContainerState.Name(status.state)}, "
                f"exit {status.exit_code}, stop line {'present' if STOP_MARK in log else 'missing'}"
            )

    def sandboxes(self, labels: dict[str, str]) -> list[cri.PodSandbox]:
        req = cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(label_selector=labels))
        return list(
            self._untimed("ListPodSandbox", lambda: self.runtime.ListPodSandbox(req, timeout=self.timeout)).items
        )

    def known_ids(self) -> set[str]:
        """Every sandbox and container id the runtime knows, whatever its state."""
        sandboxes = self.sandboxes({})
        req = cri.ListContainersRequest()
        listed = self._untimed("ListContainers", lambda: self.runtime.ListContainers(req, timeout=self.timeout))
        return {s.id for s in sandboxes} | {c.id for c in listed.containers}

    def remove_pod(self, sandbox_id: str) -> list[str]:
        """Untimed clean-up of one pod and its containers; returns the errors met."""
        errors = []
        try:
            req = cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=sandbox_id))
            listed = self._untimed("ListContainers", lambda: self.runtime.ListContainers(req, timeout=self.timeout))
            for c in listed.containers:
                for t in (self.stop_container(c.id, 0), self.remove_container(c.id)):
                    if not t.ok:
                        errors.append(f"{t.op} {c.id[:12]}: {t.error}")
        except grpc.RpcError as exc:
            errors.append(f"ListContainers: {exc}")
        for t in (self.stop_pod_sandbox(sandbox_id), self.remove_pod_sandbox(sandbox_id)):
            if not t.ok:
                errors.append(f"{t.op} {sandbox_id[:12]}: {t.error}")
        return errors


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read(65536)
    except OSError:
        return ""


def remove_pod_files(pod: kubelet.Pod) -> None:
    """Remove what kubelet would remove after a pod: its log dir, state dir and cgroups."""
    shutil.rmtree(pod.log_directory, ignore_errors=True)
    shutil.rmtree(pod.state_directory, ignore_errors=True)
    if pod.cgroup_driver == "systemd":
        # systemd owns the slice (made when the runtime put the pod's first scope in it): it is
        # stopped as kubelet stops it, never removed behind systemd's back.
        subprocess.run(["systemctl", "stop", pod.cgroup_parent], capture_output=True, check=False, timeout=30)
    else:
        remove_cgroup_tree(pod.cgroup_parent)


def remove_cgroup_tree(path: str) -> None:
    """Remove cgroup `path` and the cgroups below it, deepest first, in every hierarchy; one
    that still holds a process stays."""
    root = Path("/sys/fs/cgroup")
    if root.is_dir():
        for hierarchy in root.iterdir():
            target = hierarchy / path.lstrip("/")
            if target.is_dir():
                for sub in sorted(target.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):  # not empty: a process still in it
                        os.rmdir(sub)
