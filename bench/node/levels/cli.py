"""The `cli` level: each stack's own command line, timed whole by hyperfine.

What an operator types, process start-up included:
  - `crictl run CONTAINER.json POD.json` on every CRI stack: RunPodSandbox, CreateContainer and
    StartContainer in one process. The JSON files are the very requests of the `cri` level
    (bench.node.kubelet), written in crictl's format, so the CLI cost is the only difference;
  - `ctr run --rm` on the containerd stack (containerd's API, no CRI, no CNI);
  - `docker run --rm --network none` on the docker stack (Docker Engine API);
  - `RUNTIME run` on a prepared bundle for each available OCI runtime (level `oci` through
    its CLI; these samples belong to no stack: stack is "none").
Every command runs the workload with `exit 0`, so a run ends when the container has run.
Pods that `crictl run` leaves are removed before each run and after the last (by label).
The level runs once per node, after the others, over every available target; one failing
command is reported and the rest go on.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.messages import Artifact, Error, Lifecycle, PlanAdd, Tool
from bench.node import hyperfine, kubelet, ociprobe
from bench.node.cri import CriClient, remove_pod_files
from bench.node.hyperfine import Benchmark
from bench.node.levels import Context, Level, Outcome, Target, Timed, Turn, UnsupportedOp
from bench.node.schedule import sample as schedule_sample
from bench.node.targets import sweep_pods
from bench.scenario import Scenario

CLI_RUN_LABEL = kubelet.RUN_LABEL


@dataclass(frozen=True)
class CliCommand:
    stack: str
    handler: str
    bench: Benchmark
    pod: kubelet.Pod | None = None  # the pod whose files (log dir, hosts file) to remove afterwards


def go_json(message: Any) -> Any:
    """A CRI message as crictl reads it: Go's encoding/json into the CRI structs wants
    snake_case field names, enums as numbers and 64-bit integers as numbers (protobuf's own
    JSON mapping writes those as strings)."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {k: _go_value(v, value_fd) for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.name] = [_go_value(v, fd) for v in value]
        else:
            out[fd.name] = _go_value(value, fd)
    return out


def _go_value(value: Any, fd: Any) -> Any:
    if fd.type == fd.TYPE_MESSAGE:
        return go_json(value)
    if fd.type == fd.TYPE_ENUM:
        return int(value)
    return value


def crictl_files(
    workdir: Path, run_id: str, image_id: str, image_ref: str, cgroup_driver: str = "cgroupfs"
) -> tuple[Path, Path, kubelet.Pod]:
    pod = kubelet.Pod(name=f"hb-cli-{run_id[-8:]}".lower(), run_id=f"{run_id}-cli", cgroup_driver=cgroup_driver)
    pod.prepare()
    pod_json = workdir / "pod.json"
    ctr_json = workdir / "container.json"
    pod_json.write_text(json.dumps(go_json(kubelet.sandbox_config(pod)), indent=1))
    config = kubelet.container_config(pod, image_id, image_ref, [], ["exit", "0"])
    ctr_json.write_text(json.dumps(go_json(config), indent=1))
    return ctr_json, pod_json, pod


def remove_labelled_pods(crictl: str, config: str, run_label: str) -> str:
    """Shell text (for hyperfine's prepare/cleanup) removing this run's crictl pods."""
    base = [crictl, "--config", config]
    listing = shlex.join([*base, "pods", "-q", "--label", f"{CLI_RUN_LABEL}={run_label}"])
    removal = shlex.join([*base, "rmp", "-f"])
    # A pod whose container is still exiting can refuse removal for a moment (seen once in CI
    # with containerd 1.6): try a few times, then fail loudly.
    once = f"{listing} | xargs -r {removal} >/dev/null 2>&1"
    return f"for attempt in 1 2 3 4 5; do {once} && exit 0; sleep 0.2; done; {once}"


def stack_commands(stack: Any, handler: Any, run_id: str, workdir: Path, image_id: str) -> list[CliCommand]:
    """The CLI commands of one target (stack/handler) on this node."""
    commands = []
    crictl = stack.extra.get("crictl", "/usr/local/lib/hopbench/bin/crictl")
    crictl_config = stack.extra.get("crictl_config", f"/etc/hopbench/{stack.name}/crictl.yaml")
    target_dir = workdir / f"{stack.name}-{handler.name}"
    target_dir.mkdir(parents=True, exist_ok=True)
    ctr_json, pod_json, pod = crictl_files(target_dir, run_id, image_id, stack.workload_image, stack.cgroup_driver)
    clean = remove_labelled_pods(crictl, crictl_config, pod.run_id)
    # --no-pull: the images are in the store; nothing may reach for a registry.
    argv = [crictl, "--config", crictl_config, "run", "--no-pull", "--runtime", handler.runtime_handler]
    argv += [str(ctr_json), str(pod_json)]
    commands.append(CliCommand(stack.name, handler.name, Benchmark("crictl run", tuple(argv), clean, clean), pod))

    if stack.kind == "containerd":
        address = stack.cri_endpoint.removeprefix("unix://")
        cid = f"hopbench-cli-{uuid.uuid4().hex[:8]}"
        runtime = "io.containerd.runc.v2" if handler.name in ("runc", "crun") else f"io.containerd.{handler.name}.v1"
        # The instance's own ctr (containerd 2.x ships its own; Debian's is 1.6).
        base = [stack.extra.get("ctr", "ctr"), "--address", address, "--namespace", "k8s.io"]
        argv = [*base, "run", "--rm", "--runtime", runtime]
        if handler.name in ("runc", "crun") and handler.binary:
            argv += ["--runc-binary", handler.binary]
        argv += [stack.workload_image, cid, "/hopbench-workload", "exit", "0"]
        leftover = f"{shlex.join([*base, 'containers', 'rm', cid])} >/dev/null 2>&1 || true"
        commands.append(CliCommand(stack.name, handler.name, Benchmark("ctr run", tuple(argv), leftover, leftover)))

    if stack.kind == "docker":
        endpoint = stack.extra.get("docker_endpoint", "")
        client = stack.extra.get("docker_client", "/usr/bin/docker")
        argv = [client, "-H", endpoint, "run", "--rm", "--network", "none", stack.workload_image, "exit", "0"]
        commands.append(CliCommand(stack.name, handler.name, Benchmark("docker run", tuple(argv))))
    return commands


def oci_command(handler: Any, workdir: Path, image_archive: str) -> CliCommand:
    """`RUNTIME run` of the workload on a bundle prepared from the same image."""
    bundle = workdir / f"bundle-{handler.name}"
    rootfs = bundle / "rootfs"
    if not rootfs.exists():
        rootfs.mkdir(parents=True)
        ociprobe.unpack_rootfs(image_archive, str(rootfs))
        (bundle / "config.json").write_text(json.dumps(ociprobe.spec(str(rootfs))))
    state = workdir / f"state-{handler.name}"
    cid = f"hopbench-cli-{uuid.uuid4().hex[:8]}"
    args = list(handler.extra.get("args", []))
    argv = [handler.binary, *args, "--root", str(state), "run", "--bundle", str(bundle), cid]
    delete = shlex.join([handler.binary, *args, "--root", str(state), "delete", "--force", cid])
    leftover = f"{delete} >/dev/null 2>&1 || true"
    name = f"{os.path.basename(handler.binary)} run"
    return CliCommand("none", handler.name, Benchmark(name, tuple(argv), leftover, leftover))


class CliLevel(Level):
    name = "cli"
    ops = ()
    per = "node"
    group: ClassVar[str | None] = None  # its own run: hyperfine, one command at a time

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.commands: list[CliCommand] = []

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> CliLevel:
        return cls(ctx)

    @classmethod
    def planned(cls, scen: Scenario) -> int:
        return 0  # known once the commands are: added then (PlanAdd)

    def build(self) -> list[CliCommand]:
        """The cli-level commands of every target, then one `RUNTIME run` per available OCI runtime."""
        ctx = self.ctx
        handlers: dict[str, Any] = {}
        for target in ctx.targets:
            if target.stack is None:
                continue
            client = CriClient(target.stack.cri_endpoint, ctx.scen.timeout_s)
            try:
                image_id = client.image_id(target.stack.workload_image)
            finally:
                client.close()
            self.commands += stack_commands(target.stack, target.handler, ctx.job.run_id, ctx.workdir, image_id)
            if target.handler.binary:
                handlers.setdefault(target.handler.name, target.handler)
        self.commands += [oci_command(h, ctx.workdir, ctx.job.workload_archive) for h in handlers.values()]
        return self.commands

    def lifecycle(self, turn: Turn) -> Outcome:
        raise UnsupportedOp("level cli times whole commands with hyperfine; it has no lifecycle of its own")

    def run(self, schedule: Any) -> None:
        """Time each command with hyperfine."""
        ctx = self.ctx
        ctx.emit(Tool(name="hyperfine", version=hyperfine.version(hyperfine.find())))
        commands = self.build()
        ctx.emit(PlanAdd(lifecycles=len(commands)))
        for cmd in commands:
            if ctx.stopped:
                return
            target = f"{cmd.stack}/{cmd.handler}"
            start = time.monotonic_ns()
            try:
                result, raw = hyperfine.run(cmd.bench, ctx.scen.iterations, ctx.scen.warmup, stop=ctx.stop)
            except hyperfine.HyperfineError as exc:
                ctx.emit(Error(message=f"cli {cmd.bench.name}: {exc}", target=target))
                ctx.emit(Lifecycle(target=target, concurrency=1, iteration=-1, ok=False))
                continue
            name = f"hyperfine/{cmd.stack}-{cmd.handler}-{cmd.bench.name.replace(' ', '-')}.json"
            ctx.emit(Artifact(name=name, content=raw))
            where = (cmd.stack, cmd.handler, self.name)
            for i, (seconds, code) in enumerate(zip(result.times_s, result.exit_codes, strict=False)):
                error = None if code in (0, None) else f"exit status {code}"
                t: Timed[None] = Timed(cmd.bench.name, start, round(seconds * 1e9), None, error)
                ctx.emit(schedule_sample(ctx, where, t, Turn(i)))
            ctx.emit(Lifecycle(target=target, concurrency=1, iteration=-1, ok=True))

    def close(self) -> None:
        for target in self.ctx.targets:
            sweep_pods(target, self.ctx.scen.timeout_s, self.ctx.emit)
        for cmd in self.commands:
            if cmd.pod is not None:
                remove_pod_files(cmd.pod)
