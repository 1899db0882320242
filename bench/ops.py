"""The names of what is timed at each level, and of the parts of the in-situ split.

Plain tuples shared by the node (which times these ops) and the controller (which orders and
maps them): importing them costs nothing, no gRPC and no pandas.
"""

from __future__ import annotations

# One pod lifecycle through CRI, in order: the kubelet's requests (bench.node.cri).
POD_LIFECYCLE_OPS = (
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
)
# What kubelet waits for to start a pod, and to tear it down.
POD_START_OPS = POD_LIFECYCLE_OPS[:3]
POD_TEARDOWN_OPS = POD_LIFECYCLE_OPS[3:]

# The Docker Engine API requests cri-dockerd makes for one pod (bench.node.levels.engine).
ENGINE_LIFECYCLE_OPS = (
    "PauseCreate",
    "PauseStart",
    "ContainerCreate",
    "ContainerStart",
    "ContainerStop",
    "ContainerDelete",
    "PauseStop",
    "PauseDelete",
)

# containerd's API calls for one container (bench.node.levels.containerd).
CONTAINERD_LIFECYCLE_OPS = (
    "ContainerCreate",
    "TaskCreate",
    "TaskStart",
    "TaskKill",
    "TaskWait",
    "TaskDelete",
    "ContainerDelete",
)

# One pod through the API server, scheduler and kubelet, phase by phase as a watch sees it
# (bench.node.levels.kube).
KUBE_LIFECYCLE_OPS = ("PodScheduled", "SandboxReady", "PodReady", "PodDelete")
# One static pod through a standalone kubelet, phase by phase (bench.node.levels.kubelet).
KUBELET_LIFECYCLE_OPS = ("SandboxReady", "PodReady", "PodDelete")
# The same static pod through a kubelet 1.23 with its in-tree dockershim, which has no sandbox
# condition to observe (bench.node.levels.kubelet.DockershimLevel).
DOCKERSHIM_LIFECYCLE_OPS = ("PodReady", "PodDelete")

# The OCI runtime binary's commands for one container (bench.node.levels.oci).
OCI_LIFECYCLE_OPS = ("create", "start", "kill", "delete")

# The parts one CRI op is cut into by the in-situ split (bench.node.split).
PARTS = ("before", "network", "runtime", "between", "after")

# critest's op names in its benchmark JSON -> the CRI call each one times (bench.node.critest,
# bench.controller.importer).
CRITEST_OPS = {
    "CreatePod": "RunPodSandbox",
    "StatusPod": "PodSandboxStatus",
    "StopPod": "StopPodSandbox",
    "RemovePod": "RemovePodSandbox",
    "CreateContainer": "CreateContainer",
    "StartContainer": "StartContainer",
    "StatusContainer": "ContainerStatus",
    "StopContainer": "StopContainer",
    "RemoveContainer": "RemoveContainer",
}
