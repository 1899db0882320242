"""Node metadata, each fact from one small function (pyperf's way), collected on the node.

Runs whose kernel, CPU or component versions differ should not be compared silently;
these facts go into meta.json so the analysis can refuse or warn.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

CAP_SYS_RESOURCE = 24


def kernel() -> dict[str, str]:
    u = os.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def cpu() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    governor = None
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as fh:
            governor = fh.read().strip()
    except OSError:
        pass
    return {
        "model": model,
        "logical": psutil.cpu_count(logical=True),
        "physical": psutil.cpu_count(logical=False),
        "governor": governor,
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def memory() -> dict[str, int]:
    vm = psutil.virtual_memory()
    return {"total_bytes": vm.total, "available_bytes": vm.available}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def os_release() -> dict[str, str]:
    try:
        return dict(platform.freedesktop_os_release())
    except OSError:
        return {}


def cgroups() -> dict[str, Any]:
    """The cgroup mode (unified = v2, hybrid, legacy) and each cgroup mount's options: cgroup2's
    favordynmods, nsdelegate and memory_recursiveprot change what a driver's calls cost."""
    mounts = []
    options: dict[str, str] = {}
    with open("/proc/mounts") as fh:
        for line in fh:
            parts = line.split()
            if parts[2] in ("cgroup", "cgroup2"):
                mounts.append(parts[2])
                options[parts[1]] = parts[3]
    if mounts == ["cgroup2"]:
        mode = "unified"
    elif "cgroup2" in mounts:
        mode = "hybrid"
    elif mounts:
        mode = "legacy"
    else:
        mode = "none"
    return {"mode": mode, "version": 2 if mode == "unified" else 1 if mounts else 0, "mounts": options}


def stack_conditions() -> dict[str, Any]:
    """Per stack instance of this node: its cgroup driver, whether the OCI wrapper in its timed
    path clamps oom_score_adj (a node without CAP_SYS_RESOURCE), the settings that change an
    image pull (pull_settings), and where it exports its own spans, if it does."""
    from bench import stacks

    out: dict[str, Any] = {}
    for stack in stacks.discover():
        out[stack.name] = {
            "cgroup_driver": stack.cgroup_driver,
            # The roles register the wrapper in place of runc and crun (handler field `wrapper`).
            "oci_wrapper_in_timed_path": any(h.extra.get("wrapper") for h in stack.handlers.values()),
            "oom_score_adj_clamped": bool(stack.extra.get("oom_score_adj_restricted", False)),
            # Handlers whose shim the stack starts through an adapter of ours (CRI-O's runsc: one
            # exec per shim start, in RunPodSandbox's and CreateContainer's time).
            "shim_adapter_in_timed_path": sorted(n for n, h in stack.handlers.items() if h.extra.get("shim_adapter")),
            "pull": pull_settings(stack),
            # Where the instance exports its own spans ('' when it does not: bench.node.traces).
            "tracing_endpoint": str((stack.extra.get("tracing") or {}).get("endpoint", "")),
        }
    return out


# Parallel gzip decompressors containerd (and dockerd's containerd) uses when the daemon finds
# one on its PATH, in containerd's order of preference.
DECOMPRESSORS = ("igzip", "unpigz")


def _launch(pidfile: str) -> dict[str, Any]:
    """How the daemon role started a daemon (<pidfile>.launch.json: exec, args, env)."""
    try:
        launch: dict[str, Any] = json.loads(Path(pidfile + ".launch.json").read_text())
    except (OSError, ValueError):
        return {}
    return launch


def pull_settings(stack: Any) -> dict[str, Any]:
    """What changes an image pull on this stack instance, as configured: the gzip decompressor its
    daemon finds on its PATH (containerd and dockerd's containerd), containerd's transfer limits,
    dockerd's download limit and image store, CRI-O's layer parallelism."""
    settings: dict[str, Any] = {}
    daemons = {d.name: d for d in stack.daemons}
    main = daemons.get({"docker": "dockerd"}.get(stack.kind, stack.kind))
    launch = _launch(main.pidfile) if main is not None else {}
    path = str((launch.get("env") or {}).get("PATH", ""))
    if stack.kind in ("containerd", "docker"):
        found = [d for d in DECOMPRESSORS if any(Path(p, d).is_file() for p in path.split(":") if p)]
        settings["gzip_decompressor"] = found[0] if found else "Go's compress/gzip (no igzip or unpigz on its PATH)"
    args = [str(a) for a in launch.get("args", [])]
    if stack.kind == "containerd" and "--config" in args and main is not None:
        settings.update(containerd_pull_config(main.exec, args[args.index("--config") + 1]))
    if stack.kind == "docker":
        conf = args[args.index("--config-file") + 1] if "--config-file" in args else ""
        try:
            daemon_json = json.loads(Path(conf).read_text()) if conf else {}
        except (OSError, ValueError):
            daemon_json = {}
        settings["max_concurrent_downloads"] = daemon_json.get("max-concurrent-downloads", 3)
        store = (daemon_json.get("features") or {}).get("containerd-snapshotter")
        settings["image_store"] = "containerd" if store else "graph driver (overlay2)"
    if stack.kind == "crio":
        settings["layers_in_parallel"] = "6 (containers/image's default: CRI-O has no setting for it)"
    return settings


def containerd_pull_config(binary: str, config: str) -> dict[str, Any]:
    """containerd's own view (`config dump`) of what limits a CRI pull: the transfer service's
    downloads and unpacks, and whether the CRI pulls through it at all (use_local_image_pull)."""
    try:
        proc = subprocess.run(
            [binary, "--config", config, "config", "dump"], capture_output=True, text=True, timeout=20, check=False
        )
        dump = tomllib.loads(proc.stdout) if proc.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, tomllib.TOMLDecodeError):
        return {}
    plugins = dump.get("plugins", {})
    transfer = plugins.get("io.containerd.transfer.v1.local", {})
    images = plugins.get("io.containerd.cri.v1.images", {})
    out: dict[str, Any] = {}
    for key in ("max_concurrent_downloads", "max_concurrent_uploaded_layers"):
        if key in transfer:
            out[f"transfer.{key}"] = transfer[key]
    for key in ("max_concurrent_downloads", "use_local_image_pull", "image_pull_progress_timeout"):
        if key in images:
            out[f"cri.{key}"] = images[key]
    unpack = transfer.get("unpack_config") or []
    if unpack:
        out["transfer.unpack_platforms"] = len(unpack)
    return out


# The registry host's description (roles/registry): level image needs it, the run records it.
REGISTRY_DESCRIPTION = Path("/etc/hopbench/registry.json")


def registry() -> dict[str, Any]:
    """The node's registry host (registry.yml), for level image: its version, address and link shape."""
    try:
        desc: dict[str, Any] = json.loads(REGISTRY_DESCRIPTION.read_text())
    except (OSError, ValueError):
        return {}
    return {k: desc.get(k) for k in ("address", "version", "module", "shape")}


def capabilities() -> dict[str, Any]:
    eff = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
    return {"effective": format(eff, "x"), "cap_sys_resource": bool(eff >> CAP_SYS_RESOURCE & 1)}


def init_system() -> str:
    try:
        with open("/proc/1/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


# What systemd-detect-virt --vm names a guest whose CPU QEMU emulates in software (TCG): `qemu`
# (under KVM it says `kvm`). Figures from such a node show what works, not how fast.
EMULATED_VMS = ("qemu", "bochs")
EMULATED = "emulated: functional, not for comparison"


def virtualization() -> dict[str, Any]:
    """The node's hypervisor and container manager as systemd-detect-virt names them, and
    whether the node's CPU is emulated (its figures then say so: EMULATED)."""
    out: dict[str, Any] = {}
    for what in ("vm", "container"):
        try:
            proc = subprocess.run(
                ["systemd-detect-virt", f"--{what}"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"vm": "unknown", "container": "unknown", "emulated": False, "why": f"systemd-detect-virt: {exc}"}
        out[what] = proc.stdout.strip() or "none"
    out["emulated"] = out["vm"] in EMULATED_VMS
    if out["emulated"]:
        out["label"] = EMULATED
    return out


def debian_package_versions(
    names: tuple[str, ...] = ("containerd", "runc", "containernetworking-plugins"),
) -> dict[str, str]:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *names],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def clock(rounds: int = 20_000) -> dict[str, Any]:
    """The clock every op is timed with: its stated resolution, the smallest step seen between
    two readings, and what timing an empty call costs (bench.node.levels.timed around a no-op):
    the floor under every sample. rounds=0: the readings only (the run's end)."""
    from bench.node.levels import timed

    now = {
        "monotonic_ns": time.monotonic_ns(),
        "wall_ns": time.time_ns(),
        "monotonic_resolution_ns": int(time.get_clock_info("monotonic").resolution * 1e9),
    }
    if not rounds:
        return now
    steps = []
    for _ in range(rounds // 10):
        a = time.monotonic_ns()
        b = time.monotonic_ns()
        while b == a:
            b = time.monotonic_ns()
        steps.append(b - a)
    empty = sorted(timed("empty", _nothing).duration_ns for _ in range(rounds))
    return {
        **now,
        "monotonic_implementation": time.get_clock_info("monotonic").implementation,
        "observed_step_ns": min(steps),
        "timer_overhead_ns": {
            "rounds": rounds,
            "min": empty[0],
            "p50": empty[len(empty) // 2],
            "p99": empty[int(len(empty) * 0.99)],
        },
    }


def _nothing() -> None:
    return None


COLLECTORS: dict[str, Callable[[], Any]] = {
    "hostname": socket.gethostname,
    "kernel": kernel,
    "os": os_release,
    "cpu": cpu,
    "memory": memory,
    "loadavg": load,
    "cgroups": cgroups,
    "capabilities": capabilities,
    "init": init_system,
    "virtualization": virtualization,
    "stacks": stack_conditions,
    "registry": registry,
    "packages": debian_package_versions,
    "python": lambda: sys.version.split()[0],
    "clock": clock,
}


def collect() -> dict[str, Any]:
    """Every fact; a collector that fails records its error instead of stopping the run."""
    facts: dict[str, Any] = {}
    for name, fn in COLLECTORS.items():
        try:
            facts[name] = fn()
        except Exception as exc:  # noqa: BLE001 - metadata must never abort a run
            facts[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return facts
