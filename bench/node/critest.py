"""critest, the reference tool, and the requests it sends: what levels critest, cri-critest and null use.

critest (cri-tools v1.37.0, `critest -benchmark`, built by the crictl role) times two
sequences per sample: its pod benchmark (RunPodSandbox, PodSandboxStatus, StopPodSandbox,
RemovePodSandbox on a pod without containers) and its container benchmark (in a pod created
and removed untimed: CreateContainer, StartContainer, ContainerStatus, StopContainer,
RemoveContainer). `run` runs it once with one sample of each and returns them as Timed ops under
the CRI names (its own names in CRITEST_OPS), keeping its raw JSON.

The request builders copy critest's own (pkg/framework/util.go, pkg/benchmark/*.go at v1.37.0):
a pod with only metadata (name prefix, uid "cri-test-uid<uuid>", namespace
"cri-test-namespace<uuid>", attempt 2) and the cgroup parent critest derives from the runtime's
cgroup driver ("" for cgroupfs), no labels, no annotations, no log directory, no DNS, no
security context; a container with metadata, the image (and its user-specified name), command
`top`, an empty Linux config; StopContainer with critest's 60 s grace period. The pods carry
no run label, so leftovers are found by critest's namespace prefix (`leftovers`): the stacks are
hopbench's own instances, nothing else puts such pods there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri

from bench.errors import ComponentError
from bench.node.levels import Timed
from bench.ops import CRITEST_OPS

CRITEST = "/usr/local/lib/hopbench/bin/critest"
UID_PREFIX = "cri-test-uid"
NAMESPACE_PREFIX = "cri-test-namespace"
ATTEMPT = 2
STOP_TIMEOUT_S = 60
COMMAND = ("top",)
SYSTEMD_SLICE = "/test.slice"  # critest's DefaultSystemdCgroupSlice
POD_OPS = ("RunPodSandbox", "PodSandboxStatus", "StopPodSandbox", "RemovePodSandbox")
CONTAINER_OPS = ("CreateContainer", "StartContainer", "ContainerStatus", "StopContainer", "RemoveContainer")
OPS = POD_OPS + CONTAINER_OPS


def cgroup_parent(runtime_config: cri.RuntimeConfigResponse | None) -> str:
    """critest's common.GetCgroupParent: '' for a cgroupfs runtime, else its systemd slice."""
    cgroupfs = (
        runtime_config is not None
        and runtime_config.HasField("linux")
        and runtime_config.linux.cgroup_driver == cri.CgroupDriver.CGROUPFS
    )
    return "" if cgroupfs else SYSTEMD_SLICE


def pod_config(prefix: str, parent: str) -> cri.PodSandboxConfig:
    """The pod critest's benchmarks run: metadata and cgroup parent only."""
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(
            name=prefix + str(uuid.uuid4()),
            uid=UID_PREFIX + str(uuid.uuid4()),
            namespace=NAMESPACE_PREFIX + str(uuid.uuid4()),
            attempt=ATTEMPT,
        ),
        linux=cri.LinuxPodSandboxConfig(cgroup_parent=parent),
    )


def container_config(image_ref: str) -> cri.ContainerConfig:
    """critest's default container: its image, `top`, nothing else."""
    name = image_ref if ":" in image_ref.rsplit("/", 1)[-1] else image_ref + ":latest"
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="Benchmark-container-" + str(uuid.uuid4()), attempt=ATTEMPT),
        image=cri.ImageSpec(image=image_ref, user_specified_image=name),
        command=list(COMMAND),
        linux=cri.LinuxContainerConfig(),
    )


@dataclass(frozen=True)
class Result:
    """One critest invocation: its ops as Timed (CRI names, OPS order), its raw JSON, its log tail."""

    timed: list[Timed[None]]
    raw: dict[str, Any]
    log: str
    problem: str


def run(
    binary: str,
    endpoint: str,
    handler: str,
    image_ref: str,
    workdir: Path,
    timeout_s: float,
    tag: str,
) -> Result:
    """critest -benchmark with one pod sample and one container sample; never raises for a failed run."""
    here = workdir / f"critest-{tag}"
    out = here / "out"
    out.mkdir(parents=True, exist_ok=True)
    params = here / "params.yaml"
    params.write_text(
        "containersNumber: 1\ncontainersNumberParallel: 1\npodsNumber: 1\npodsNumberParallel: 1\n"
        f"containerBenchmarkTimeoutSeconds: {int(timeout_s)}\npodBenchmarkTimeoutSeconds: {int(timeout_s)}\n"
    )
    images = here / "images.yaml"
    images.write_text(f"defaultTestContainerImage: {json.dumps(image_ref)}\n")
    argv = [
        binary,
        "-benchmark",
        f"-runtime-endpoint={endpoint}",
        f"-image-endpoint={endpoint}",
        f"-runtime-handler={handler}",
        f"-benchmarking-params-file={params}",
        f"-benchmarking-output-dir={out}",
        f"-test-images-file={images}",
        # Only the pod and container lifecycles: not the image pulls (no registry) nor "from scratch".
        "-ginkgo.skip=from scratch|Image",
        "-ginkgo.no-color",
        f"-config={here / 'crictl.yaml'}",
    ]
    (here / "crictl.yaml").write_text(f"runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\n")
    offset = time.monotonic_ns() - time.time_ns()
    began = time.monotonic_ns()
    try:
        proc = subprocess.run(argv, cwd=here, capture_output=True, text=True, timeout=timeout_s * 4, check=False)
        log, code = (proc.stdout + proc.stderr)[-4000:], proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, code = f"critest timed out after {exc.timeout:.0f} s", -1
    raw, timed = parse(out, offset)
    problem = "" if code == 0 else f"critest exited {code}: {_why(log)}"
    missing = [op for op in OPS if op not in timed]
    if missing and not problem:
        problem = f"critest wrote no figure for {', '.join(missing)}"
    ordered = [timed[op] for op in OPS if op in timed]
    if problem and len(ordered) == len(OPS):
        ordered[-1] = Timed(ordered[-1].op, ordered[-1].start_ns, ordered[-1].duration_ns, None, problem)
    elif problem:
        # The op critest did not report fails, timed as the whole invocation (never a zero).
        nxt = OPS[len(ordered)] if len(ordered) < len(OPS) else OPS[-1]
        ordered.append(Timed(nxt, began, time.monotonic_ns() - began, None, problem))
    return Result(ordered, raw, log, problem)


def parse(out: Path, offset_ns: int = 0) -> tuple[dict[str, Any], dict[str, Timed[None]]]:
    """critest's benchmark JSON in `out` (pod_ and container_benchmark_data.json): the raw data and
    each op's figure under its CRI name. critest gives each sample's wall-clock start and the ops'
    durations in order; an op's start is the sample's plus the durations before it, moved onto the
    monotonic clock by `offset_ns`."""
    raw: dict[str, Any] = {}
    timed: dict[str, Timed[None]] = {}
    for kind in ("pod", "container"):
        path = out / f"{kind}_benchmark_data.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        raw[kind] = data
        for point in data.get("datapoints") or []:
            start = int(point["startTime"]) + offset_ns
            for name, ns in zip(data["operationsNames"], point["operationsDurationsNs"], strict=False):
                op = CRITEST_OPS.get(name, name)
                timed[op] = Timed(op, start, int(ns), None, None)
                start += int(ns)
    return raw, timed


def _why(log: str) -> str:
    """The line of critest's output that says what failed, else its last words."""
    for line in log.splitlines():
        if "rpc error" in line or "Expected" in line or "timed out" in line:
            return " ".join(line.split())[:400]
    return " ".join(log.split()[-40:])


def running(status: cri.ContainerStatus) -> bool:
    return bool(status.state == cri.ContainerState.CONTAINER_RUNNING)


def exited(status: cri.ContainerStatus) -> bool:
    return bool(status.state == cri.ContainerState.CONTAINER_EXITED)


def leftovers(sandboxes: list[cri.PodSandbox]) -> list[str]:
    """Pods critest (or level cri-critest) left: critest's namespace prefix."""
    return [s.id for s in sandboxes if s.metadata.namespace.startswith(NAMESPACE_PREFIX)]


def find_binary() -> str:
    path = os.environ.get("HOPBENCH_CRITEST", CRITEST)
    if not os.access(path, os.X_OK):
        raise ComponentError(f"critest not found at {path}: provision the node (hopbench provision)")
    return path
