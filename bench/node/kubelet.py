"""The CRI requests kubelet sends for an ordinary pod, built in one place.

Every stack is asked exactly the same thing, so differences in the numbers come from the
stacks, not from the requests. The model is kubelet (1.28 to 1.31, cgroupfs driver,
default feature gates) creating a BestEffort pod of one container with
`automountServiceAccountToken: false`, `enableServiceLinks: false`, no ports, no volumes:

RunPodSandbox (kuberuntime_sandbox.go, generatePodSandboxConfig):
  - metadata name/namespace/uid/attempt 0; hostname = pod name;
  - labels: io.kubernetes.pod.{name,namespace,uid} plus the pod's labels;
  - annotations: kubernetes.io/config.seen and kubernetes.io/config.source=api;
  - log_directory /var/log/pods/<ns>_<name>_<uid> (hopbench uses its own root, default
    /var/log/hopbench/pods, created before the call as kubelet does);
  - dns_config: the node's resolv.conf servers/searches/options (dnsPolicy Default; no
    cluster DNS here);
  - linux.cgroup_parent /kubepods/besteffort/pod<uid> with the cgroupfs driver, or the slice
    kubepods-besteffort-pod<uid, '-' as '_'>.slice with the systemd driver (kubelet's
    cgroupName.ToSystemd), whichever driver the stack instance is configured with;
  - linux.security_context: namespace_options network=POD, pid=CONTAINER (kubelet's
    default: a PID namespace per container unless shareProcessNamespace), ipc=POD;
    seccomp Unconfined (kubelet's default without --seccomp-default); not privileged.

CreateContainer (kuberuntime_container.go, generateContainerConfig):
  - image: the image *id* as kubelet passes it after ImageStatus, with
    user_specified_image set to the reference from the pod spec (CRI-O requires it);
  - labels io.kubernetes.container.name, io.kubernetes.pod.{name,namespace,uid};
  - annotations io.kubernetes.container.{hash,restartCount,terminationMessagePath,
    terminationMessagePolicy}, io.kubernetes.pod.terminationGracePeriod;
  - log_path <container>/0.log; mounts /etc/hosts and /dev/termination-log from files the
    harness writes per pod (kubelet writes them under /var/lib/kubelet/pods/<uid>);
  - linux.resources for BestEffort: cpu_period 100000, cpu_shares 2, oom_score_adj 1000;
  - linux.security_context: same namespace options, kubelet's default masked and
    read-only /proc and /sys paths, seccomp Unconfined.

StopContainer's timeout is the pod's terminationGracePeriodSeconds (30 by default).

Every pod also carries the label io.hopbench/run=<run id>, so leftovers of a crashed run
can be found and removed.
"""

from __future__ import annotations

import os
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cri_api.v1 import api_pb2 as cri

POD_NAMESPACE = "hopbench"
CONTAINER_NAME = "workload"
MANAGED_LABEL = "io.hopbench/managed"
RUN_LABEL = "io.hopbench/run"
# The PID of the agent that made the pod: a sweep leaves alone the pods of an agent still alive
# (two agents on one machine, as the tests' network-namespace nodes are).
AGENT_LABEL = "io.hopbench/agent-pid"
# The node (inventory host) the pod was made for: one run spans several nodes, and nodes may
# share a machine (the tests' network-namespace nodes do).
NODE_LABEL = "io.hopbench/node"
_NODE = {"name": "local"}


def set_node(name: str) -> None:
    """The node name every later pod is labelled with (the agent sets it from its job)."""
    _NODE["name"] = name


def node_name() -> str:
    return _NODE["name"]


DEFAULT_LOG_ROOT = "/var/log/hopbench/pods"
DEFAULT_POD_STATE_ROOT = "/var/lib/hopbench/pods"
CGROUP_ROOT = "/kubepods/besteffort"

# kubelet's defaults (k8s.io/kubernetes/pkg/securitycontext): paths masked and made
# read-only in every container that is not privileged.
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass
class Pod:
    """One pod of the benchmark, with the files kubelet would prepare on the node for it."""

    name: str
    run_id: str
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_root: str = DEFAULT_LOG_ROOT
    state_root: str = DEFAULT_POD_STATE_ROOT
    grace_period_s: int = 30
    cgroup_driver: str = "cgroupfs"  # the stack instance's driver: cgroupfs or systemd

    @property
    def log_directory(self) -> str:
        return os.path.join(self.log_root, f"{POD_NAMESPACE}_{self.name}_{self.uid}")

    @property
    def state_directory(self) -> str:
        return os.path.join(self.state_root, self.uid)

    @property
    def cgroup_parent(self) -> str:
        if self.cgroup_driver == "systemd":
            return f"kubepods-besteffort-pod{self.uid.replace('-', '_')}.slice"
        return f"{CGROUP_ROOT}/pod{self.uid}"

    def container_log_path(self) -> str:
        return os.path.join(self.log_directory, CONTAINER_NAME, "0.log")

    def prepare(self) -> None:
        """What kubelet does on the node before RunPodSandbox (pod log dir, hosts file) and before
        CreateContainer (the container's log dir and termination-log file)."""
        (Path(self.log_directory) / CONTAINER_NAME).mkdir(parents=True, exist_ok=True)
        state = Path(self.state_directory)
        (state / "containers" / CONTAINER_NAME).mkdir(parents=True, exist_ok=True)
        (state / "etc-hosts").write_text(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"\t{self.name}\n"
        )
        (state / "containers" / CONTAINER_NAME / "termination-log").touch()


def _resolv_conf(path: str = "/etc/resolv.conf") -> cri.DNSConfig:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    try:
        with open(path) as fh:
            for line in fh:
                words = line.split()
                if not words or words[0].startswith(("#", ";")):
                    continue
                if words[0] == "nameserver" and len(words) > 1:
                    servers.append(words[1])
                elif words[0] in ("search", "domain"):
                    searches = words[1:]
                elif words[0] == "options":
                    options.extend(words[1:])
    except FileNotFoundError:
        pass
    return cri.DNSConfig(servers=servers, searches=searches, options=options)


def _namespaces() -> cri.NamespaceOption:
    return cri.NamespaceOption(
        network=cri.NamespaceMode.POD, pid=cri.NamespaceMode.CONTAINER, ipc=cri.NamespaceMode.POD
    )


def _pod_labels(pod: Pod) -> dict[str, str]:
    return {
        "io.kubernetes.pod.name": pod.name,
        "io.kubernetes.pod.namespace": POD_NAMESPACE,
        "io.kubernetes.pod.uid": pod.uid,
        "app": "hopbench",
        MANAGED_LABEL: "true",
        RUN_LABEL: pod.run_id,
        AGENT_LABEL: str(os.getpid()),
        NODE_LABEL: node_name(),
    }


def agent_alive(pid_label: str) -> bool:
    """Is the agent that labelled a pod with its PID another agent still running here?"""
    try:
        pid = int(pid_label)
        if pid == os.getpid():
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"bench.node" in fh.read()
    except (ValueError, OSError):
        return False


def sandbox_config(pod: Pod) -> cri.PodSandboxConfig:
    """The PodSandboxConfig of RunPodSandbox (and of CreateContainer's sandbox_config)."""
    seen = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=pod.name, uid=pod.uid, namespace=POD_NAMESPACE, attempt=0),
        hostname=pod.name,
        log_directory=pod.log_directory,
        dns_config=_resolv_conf(),
        labels=_pod_labels(pod),
        annotations={"kubernetes.io/config.seen": seen, "kubernetes.io/config.source": "api"},
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=pod.cgroup_parent,
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=_namespaces(),
                seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.ProfileType.Unconfined),
                privileged=False,
            ),
        ),
    )


def container_config(
    pod: Pod, image_id: str, image_ref: str, command: list[str], args: list[str]
) -> cri.ContainerConfig:
    """The ContainerConfig of CreateContainer for the pod's single workload container."""
    spec_hash = format(zlib.crc32(f"{image_ref}|{command}|{args}".encode()), "x")
    state = Path(pod.state_directory)
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=CONTAINER_NAME, attempt=0),
        image=cri.ImageSpec(image=image_id, user_specified_image=image_ref),
        command=command,
        args=args,
        labels={
            "io.kubernetes.container.name": CONTAINER_NAME,
            "io.kubernetes.pod.name": pod.name,
            "io.kubernetes.pod.namespace": POD_NAMESPACE,
            "io.kubernetes.pod.uid": pod.uid,
        },
        annotations={
            "io.kubernetes.container.hash": spec_hash,
            "io.kubernetes.container.restartCount": "0",
            "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
            "io.kubernetes.container.terminationMessagePolicy": "File",
            "io.kubernetes.pod.terminationGracePeriod": str(pod.grace_period_s),
        },
        mounts=[
            cri.Mount(container_path="/etc/hosts", host_path=str(state / "etc-hosts")),
            cri.Mount(
                container_path="/dev/termination-log",
                host_path=str(state / "containers" / CONTAINER_NAME / "termination-log"),
            ),
        ],
        log_path=f"{CONTAINER_NAME}/0.log",
        linux=cri.LinuxContainerConfig(
            resources=cri.LinuxContainerResources(cpu_period=100000, cpu_shares=2, oom_score_adj=1000),
            security_context=cri.LinuxContainerSecurityContext(
                namespace_options=_namespaces(),
                masked_paths=list(DEFAULT_MASKED_PATHS),
                readonly_paths=list(DEFAULT_READONLY_PATHS),
                seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.ProfileType.Unconfined),
            ),
        ),
    )
