"""The pod levels kube and kubelet hand to a kubelet, and how far a pod has got.

The pod is the one the `cri` level asks for (bench.node.kubelet): same image and workload,
one container, BestEffort, imagePullPolicy Never (Always with an image of the ladder when the
scenario puts the pull in pod start), no service account token, no service links, the
scenario's grace period. Its labels carry the run, node and agent, and kubelet
passes pod labels on to the sandbox, so a crashed run's pods are found as the cri level's are.
"""

from __future__ import annotations

import os
from typing import Any

from bench.node import kubelet as podspec
from bench.scenario import Scenario

# A container waiting for one of these will not start by waiting longer: the lifecycle fails at once.
FATAL_WAITING = ("CreateContainerError", "CreateContainerConfigError", "ErrImageNeverPull", "RunContainerError")
# Level kube's pods carry their kubelet's node name here, so one watch per stack sees its own.
KUBE_NODE_LABEL = "io.hopbench/kube-node"


def manifest(
    scen: Scenario,
    image: str,
    name: str,
    namespace: str,
    run_id: str,
    node: str,
    extra_labels: dict[str, str] | None = None,
    pull_policy: str = "Never",
) -> dict[str, Any]:
    workload = scen.workload
    container: dict[str, Any] = {"name": podspec.CONTAINER_NAME, "image": image, "imagePullPolicy": pull_policy}
    if workload.command:
        container["command"] = list(workload.command)
    if workload.args:
        container["args"] = list(workload.args)
    labels = {
        podspec.MANAGED_LABEL: "true",
        podspec.RUN_LABEL: run_id,
        podspec.NODE_LABEL: node,
        podspec.AGENT_LABEL: str(os.getpid()),
        **(extra_labels or {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [container],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": workload.stop_timeout_s,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        },
    }


def reached(pod: dict[str, Any]) -> tuple[set[str], str]:
    """The phases a pod object shows (PodScheduled, SandboxReady, PodReady) and, when it can no
    longer get to Ready, why."""
    spec, status = pod.get("spec", {}), pod.get("status", {})
    marks: set[str] = set()
    if spec.get("nodeName"):
        marks.add("PodScheduled")
    cond = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    statuses = status.get("containerStatuses", [])
    running = [c for c in statuses if "running" in c.get("state", {})]
    if cond.get("PodReadyToStartContainers") == "True":
        marks.add("SandboxReady")
    # Without a readiness probe kubelet sets the containers running and Ready in one status update.
    if cond.get("Ready") == "True" and len(running) == len(spec.get("containers", [])):
        marks |= {"SandboxReady", "PodReady"}
    problem = ""
    if status.get("phase") in ("Failed", "Succeeded"):
        why = status.get("message") or status.get("reason") or ended_containers(statuses)
        problem = f"pod {pod['metadata']['name']} phase {status.get('phase')}: {why}"
    for c in statuses:
        waiting = c.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING:
            problem = f"{waiting['reason']}: {' '.join(str(waiting.get('message', '')).split())[:400]}"
    return marks, problem


def ended_containers(statuses: list[dict[str, Any]]) -> str:
    """Why the pod's containers ended, as their terminated states say (a pod whose container
    failed to start ends with no message of its own: the runtime's error is here)."""
    said = []
    for c in statuses:
        ended = c.get("state", {}).get("terminated") or c.get("lastState", {}).get("terminated") or {}
        if ended:
            message = " ".join(str(ended.get("message", "")).split())[:400]
            said.append(
                f"container {c.get('name', '?')} terminated: {ended.get('reason', '')} (exit {ended.get('exitCode')})"
                + (f": {message}" if message else "")
            )
    return "; ".join(said)


def pending(pod: dict[str, Any]) -> str:
    """Why a pod is not further yet, as its status says (a condition that is False, a waiting
    container): for the error of a phase that timed out."""
    status = pod.get("status", {})
    for c in status.get("conditions", []):
        if c.get("status") == "False" and (c.get("reason") or c.get("message")):
            return f"{c.get('type')} False: {c.get('reason', '')} {c.get('message', '')}".strip()[:400]
    for c in status.get("containerStatuses", []):
        waiting = c.get("state", {}).get("waiting") or {}
        if waiting:
            return f"container waiting: {waiting.get('reason', '')} {waiting.get('message', '')}".strip()[:400]
    return ""
