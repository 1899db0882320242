"""Every level by name, and where its class lives: what the scenario allows and the node loads.

A leaf both sides import: scenario validation (bench.scenario, on the controller) checks names
against it without importing node code, and the node's scheduler (bench.node.levels.load)
imports the class a name points at. The order is the order a target runs its levels. A new
level is one module in bench/node/levels/ and one line here.
"""

from __future__ import annotations

REGISTRY: dict[str, str] = {
    "cri": "bench.node.levels.cri:CriLevel",
    "cri-critest": "bench.node.levels.critest:CriCritestLevel",
    "critest": "bench.node.levels.critest:CritestLevel",
    "split": "bench.node.levels.split:SplitLevel",
    "engine": "bench.node.levels.engine:EngineLevel",
    "containerd": "bench.node.levels.containerd:ContainerdLevel",
    "density": "bench.node.levels.density:DensityLevel",
    "kube": "bench.node.levels.kube:KubeLevel",
    "kubelet": "bench.node.levels.kubelet:KubeletLevel",
    "dockershim": "bench.node.levels.kubelet:DockershimLevel",
    "image": "bench.node.levels.image:ImageLevel",
    "oci": "bench.node.levels.oci:OciLevel",
    "control": "bench.node.levels.control:ControlLevel",
    "nullcri": "bench.node.levels.critest:NullLevel",
    "cli": "bench.node.levels.cli:CliLevel",
}

LEVELS: tuple[str, ...] = tuple(REGISTRY)

# The levels that run a kubelet: their memory samples are the kubelet's (phase = the level's
# name), not the density level's sweeps, and their artifacts are the kubelet's metric scrapes.
KUBE_LEVELS: tuple[str, ...] = ("kube", "kubelet", "dockershim")
