"""Lab nodes on this machine: pristine Debian machines with systemd as PID 1, reached over SSH.

`hopbench lab up --nodes N` gives N nodes that are like a lab's nodes, not like this machine:

- **Pristine.** Each node's root is an overlay of one cached image (debootstrap's minbase of a
  Debian release plus systemd, dbus, openssh-server, python3 and iproute2, nothing else) and
  the node's own upper folder: the node has only what provisioning installs. The image is cached
  by release and package list (`/var/cache/hopbench-lab/images/<release>-<hash>`); its SSH host
  keys are removed and the services that reach out on their own (timesyncd, apt's timers) are
  masked.
- **systemd is PID 1** in the node's own PID, mount, UTS, IPC, cgroup and network namespaces
  (`lab_boot.py`). The node's cgroups are folders the lab makes under its own subtree of each
  hierarchy (`<this process's cgroup>/hopbench-lab/<node>`), writable inside the node, so the
  node's systemd, runc and kubelet drive them as on a real node. Nothing is shared with the
  host but the kernel: the node's state folder (`/var/lib/hopbench`, on the host's disk, not on
  the overlay, so the runtimes' own overlay mounts work) is the node's alone.
- **Its own network.** Each node has a network namespace on the bridge `hb-lab0`, in a /24 that
  no route of this machine covers (checked when the lab is made, and `ip route get` must go
  through the bridge before any connection). Nodes have no route out: they reach the controller
  and each other, nothing else.
- **Packages as an air-gapped lab gets them**: apt-cacher-ng runs on the controller, bound to
  the bridge address only, and each node's apt uses it as its proxy. Python wheels and the
  built binaries come from the controller through provisioning.
- **SSH as on lab hardware**: sshd in each node with a host key generated for that node,
  pinned in the generated inventory `ansible/inventories/lab/` (hosts.yml and known_hosts;
  `hopbench provision -i ansible/inventories/lab`). The lab's client key is
  `/var/lib/hopbench-lab/id_ed25519`.

`lab status` prints each node's state (systemd's own `is-system-running`, over SSH),
`lab poweroff NODE` powers a node off as its power button would (systemd's SIGRTMIN+4), or
with `--cut` as a power cut would (its link down first, then every process killed at once),
`lab reboot NODE` powers it off and boots it again with the same disk, and `lab down` stops
everything the lab started, by PID, and removes the nodes, their cgroups, namespaces, links,
disks and the inventory. The image cache stays.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.controller import lab_vm
from bench.controller.lab_boot import cgroup_hierarchies
from bench.errors import HopbenchError, InputError

REPO = Path(__file__).resolve().parents[2]
IMAGE_CACHE = Path("/var/cache/hopbench-lab/images")


# A second lab beside the first (the tests' own) sets HOPBENCH_LAB_DIR (state, keys and its
# inventory), HOPBENCH_LAB_bridge() and HOPBENCH_LAB_PREFIX (node names <prefix>1, ...).
def state_dir() -> Path:
    return Path(os.environ.get("HOPBENCH_LAB_DIR") or "/var/lib/hopbench-lab")


def inventory_dir() -> Path:
    if os.environ.get("HOPBENCH_LAB_DIR"):
        return state_dir() / "inventory"
    return REPO / "ansible" / "inventories" / "lab"


def acng_cache() -> Path:
    """apt-cacher-ng's cache: one per lab (two proxies never share a cache folder)."""
    if os.environ.get("HOPBENCH_LAB_DIR"):
        return state_dir() / "apt-cacher-ng-cache"
    return Path("/var/cache/hopbench-lab/apt-cacher-ng")


def bridge() -> str:
    name = os.environ.get("HOPBENCH_LAB_BRIDGE") or "hb-lab0"
    # The nodes' network namespaces are named after it; a node's leftover count skips hopbench's
    # own (bench.node.leftovers.OWN_NETNS_PREFIX), and a link name has at most 15 characters.
    if not name.startswith("hb-") or len(name) > 10:
        raise InputError(f"HOPBENCH_LAB_BRIDGE {name!r}: expected a name starting with 'hb-', at most 10 characters")
    return name


def prefix() -> str:
    return os.environ.get("HOPBENCH_LAB_PREFIX") or "lab"


# Candidate lab subnets, first free one wins; none may overlap a route of this machine.
CANDIDATE_SUBNETS = [ipaddress.ip_network(f"10.{n}.0.0/24") for n in range(232, 240)]
ACNG_PORT = 3142
RELEASES = ("bookworm", "trixie")
# The image: Debian's minbase and what a node needs to be reached and provisioned at all.
IMAGE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2")
# Services of a fresh Debian that reach out on their own or wait for a console: masked.
MASKED_UNITS = (
    "systemd-timesyncd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "console-getty.service",
    "getty@tty1.service",
    "systemd-networkd-wait-online.service",
)
CONTROLLER_CACHE = Path("/var/cache/hopbench")  # gobuild_cache_dir: toolchains, modules, binaries, downloads
HOST_PACKAGES = {"debootstrap": "/usr/sbin/debootstrap", "apt-cacher-ng": "/usr/sbin/apt-cacher-ng"}
MIRROR = "http://deb.debian.org/debian"
IMAGE_FORMAT = 1  # bump when the image's configuration below changes


class LabError(HopbenchError):
    pass


@dataclass
class LabNode:
    name: str
    index: int
    address: str
    netns: str
    veth: str
    pid: int | None  # unshare's PID on the host (its child is the node's systemd)
    cgroups: list[str]  # the node's cgroup folders, one per hierarchy of the host
    caches: bool = False  # the controller's build and download caches under the node's own (see up)
    kind: str = "ns"  # ns: namespaces on this kernel; vm: a QEMU guest with its own kernel (lab_vm)
    release: str = ""  # a VM node's own release ("" for namespace nodes: the lab's)
    accel: str = ""  # a VM node's accelerator: kvm or tcg (emulated)
    mac: str = ""


def sh(*argv: str, check: bool = True, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


# --- the controller's own packages -------------------------------------------------------------


def ensure_host_packages(packages: dict[str, str] = HOST_PACKAGES) -> None:
    """debootstrap and apt-cacher-ng (a VM node: QEMU) from Debian, installed without starting a
    distribution daemon."""
    missing = [pkg for pkg, path in packages.items() if not Path(path).exists()]
    if not missing:
        return
    guard = Path("/usr/sbin/policy-rc.d")
    made_guard = not guard.exists()
    if made_guard:  # the packages' scripts must not start a system-wide apt-cacher-ng
        guard.write_text("#!/bin/sh\nexit 101\n")
        guard.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env, timeout=900)
    finally:
        if made_guard:
            guard.unlink()


# --- the image ---------------------------------------------------------------------------------


def image_dir(release: str, packages: tuple[str, ...] = IMAGE_PACKAGES) -> Path:
    key = hashlib.sha256(json.dumps([release, sorted(packages), MASKED_UNITS, IMAGE_FORMAT]).encode())
    return IMAGE_CACHE / f"{release}-{key.hexdigest()[:12]}"


def build_image(release: str, log: Callable[[str], None], packages: tuple[str, ...] = IMAGE_PACKAGES) -> Path:
    """The cached pristine root of a release, built once (into a temporary folder, then renamed);
    `packages`: what debootstrap adds to minbase (a VM node's image adds Debian's kernel)."""
    final = image_dir(release, packages)
    if (final / "etc" / "os-release").exists():
        return final
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    log(f"building the {release} image with debootstrap (once; cached in {final})")
    t0 = time.monotonic()
    sh(
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        release,
        str(tmp),
        MIRROR,
        timeout=1800,
    )
    configure_image(tmp, release)
    tmp.rename(final)
    log(f"image ready in {time.monotonic() - t0:.0f} s")
    return final


def configure_image(root: Path, release: str) -> None:
    sh("chroot", str(root), "systemctl", "mask", *MASKED_UNITS)
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()  # every node gets its own
    (root / "etc" / "ssh" / "sshd_config.d").mkdir(exist_ok=True)
    (root / "etc" / "ssh" / "sshd_config.d" / "hopbench-lab.conf").write_text(
        "# hopbench lab node: root by key only, the node's own host key.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n"
    )
    security = f"{release}-security" if release != "bookworm" else "bookworm-security"
    (root / "etc" / "apt" / "sources.list").write_text(
        f"deb {MIRROR} {release} main\ndeb {MIRROR} {release}-updates main\n"
        f"deb http://deb.debian.org/debian-security {security} main\n"
    )
    # The mirror this lab's controller reaches may serve an archive whose Release files are past
    # their Valid-Until date (as on this machine): apt is told what the controller's apt is told.
    (root / "etc" / "apt" / "apt.conf.d" / "99hopbench-lab-validity").write_text(
        'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n'
    )
    (root / "etc" / "machine-id").write_text("")  # each node gets its own (prepare_node)


# --- the lab network ---------------------------------------------------------------------------


def pick_subnet() -> ipaddress.IPv4Network:
    routes = sh("ip", "-4", "route", "show").stdout.splitlines()
    nets = [ipaddress.ip_network(line.split()[0], strict=False) for line in routes if line.split()[0] != "default"]
    for candidate in CANDIDATE_SUBNETS:
        if not any(candidate.overlaps(net) for net in nets):
            return candidate  # type: ignore[return-value]
    tried = ", ".join(str(c) for c in CANDIDATE_SUBNETS)
    raise LabError(f"every candidate lab subnet overlaps a route of this machine: {tried}")


def check_route(address: str) -> None:
    """Before any connection: the node's address must go through the lab bridge, nowhere else."""
    out = sh("ip", "-4", "route", "get", address).stdout
    if f"dev {bridge()}" not in out:
        raise LabError(f"{address} would not go through {bridge()} ({out.strip()!r}): refusing to connect")


def make_bridge(subnet: ipaddress.IPv4Network, new_lab: bool) -> str:
    controller = str(subnet[1])
    exists = sh("ip", "link", "show", bridge(), check=False).returncode == 0
    if exists and new_lab:
        raise LabError(
            f"the link {bridge()} exists but no lab state knows it ({state_dir() / 'lab.json'}): "
            f"a lab whose state was removed; `ip link del {bridge()}` once its nodes are gone"
        )
    if not exists:
        sh("ip", "link", "add", bridge(), "type", "bridge")
        sh("ip", "addr", "add", f"{controller}/{subnet.prefixlen}", "dev", bridge())
    sh("ip", "link", "set", bridge(), "up")
    return controller


# --- apt-cacher-ng on the bridge address -------------------------------------------------------


def start_acng(address: str) -> int:
    conf = state_dir() / "apt-cacher-ng"
    conf.mkdir(parents=True, exist_ok=True)
    acng_cache().mkdir(parents=True, exist_ok=True)
    pidfile, logdir = state_dir() / "apt-cacher-ng.pid", state_dir() / "apt-cacher-ng-log"
    logdir.mkdir(exist_ok=True)
    (conf / "acng.conf").write_text(
        "# hopbench lab: the nodes' apt proxy, reachable from the lab bridge only.\n"
        f"CacheDir: {acng_cache()}\nLogDir: {logdir}\nSupportDir: /usr/lib/apt-cacher-ng\n"
        f"Port: {ACNG_PORT}\nBindAddress: {address}\nPidFile: {pidfile}\n"
        "ReportPage: acng-report.html\nExThreshold: 4\nLocalDirs: acng-doc /usr/share/doc/apt-cacher-ng\n"
        # Only Debian's archive: the proxy is no way out for anything else.
        "PassThroughPattern: ^$\n"
    )
    sh("/usr/sbin/apt-cacher-ng", "-c", str(conf), "ForeGround=0")
    end = time.monotonic() + 15
    while time.monotonic() < end:
        try:
            pid = int(pidfile.read_text().split()[0])
            with socket.create_connection((address, ACNG_PORT), timeout=1):
                return pid
        except (OSError, ValueError, IndexError):
            time.sleep(0.2)
    raise LabError(f"apt-cacher-ng did not answer on {address}:{ACNG_PORT} within 15 s (log: {logdir})")


# --- cgroups the lab owns ------------------------------------------------------------------------


def host_cgroup_folders(node: str) -> list[str]:
    """One folder per cgroup hierarchy: <this process's cgroup>/hopbench-lab/<lab bridge>/<node>."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    folders = []
    for fstype, name, opts in cgroup_hierarchies():  # the mounts lab_boot mounts again in the node
        names = sorted(opts.split(",")) if fstype == "cgroup" else []
        key = next((k for k in own if sorted(k.split(",")) == names), "") if names else ""
        base = own.get(key, "/")
        folders.append(f"/sys/fs/cgroup/{name}{base.rstrip('/')}/hopbench-lab/{bridge()}/{node}")
    return folders


def make_cgroups(folders: list[str]) -> None:
    for folder in folders:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        if (path / "cpuset.cpus").exists():
            # cpuset v1: a new folder has no CPUs or memory nodes until given its parent's, and a
            # process cannot join it (ENOSPC); every folder the lab made on the way needs them.
            chain = [p for p in (path, *path.parents) if (p / "cpuset.cpus").exists()]
            for made in reversed(chain[:-1]):  # from the highest made folder down
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (made / f).read_text().strip():
                        (made / f).write_text((made.parent / f).read_text())


def remove_cgroups(folders: list[str]) -> list[str]:
    """rmdir bottom-up; returns folders that could not be removed (a process still in them)."""
    left = []
    for folder in folders:
        root = Path(folder)
        if not root.exists():
            continue
        subs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for sub in [*subs, root]:
            try:
                sub.rmdir()
            except OSError:
                left.append(str(sub))
    return left


# --- nodes -----------------------------------------------------------------------------------


def node_dir(name: str) -> Path:
    return state_dir() / "nodes" / name


def load_state() -> dict[str, Any] | None:
    f = state_dir() / "lab.json"
    return json.loads(f.read_text()) if f.exists() else None


def save_state(state: dict[str, Any]) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    tmp = state_dir() / "lab.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.rename(state_dir() / "lab.json")


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A PID handed on to another program is not our node: unshare's command line names the node.
    try:
        return b"lab_boot.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def running(node: LabNode) -> bool:
    """The node is up: its namespaces' first process, or its QEMU."""
    return lab_vm.alive(node.pid, node.name) if node.kind == "vm" else alive(node.pid)


def systemd_pid(node: LabNode) -> int | None:
    if not alive(node.pid):
        return None
    try:
        kids = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def prepare_node(node: LabNode, controller_ip: str, client_pub: str) -> str:
    """The node's disk (upper folder) with its identity; returns its host public key."""
    d = node_dir(node.name)
    for sub in ("upper", "work", "root", "lib"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    upper = d / "upper"
    etc = upper / "etc"
    (etc / "ssh").mkdir(parents=True, exist_ok=True)
    key = etc / "ssh" / "ssh_host_ed25519_key"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{node.name}", "-f", str(key))
    (etc / "hostname").write_text(node.name + "\n")
    machine_id = etc / "machine-id"
    if not machine_id.exists() or not machine_id.read_text().strip():
        # Its own, kept across reboots. Left empty, systemd would take the host's DMI product
        # UUID (it runs on KVM here), the same on every node.
        machine_id.write_text(uuid.uuid4().hex + "\n")
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{node.address} {node.name}\n")
    (etc / "apt" / "apt.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "apt" / "apt.conf.d" / "01hopbench-lab-proxy").write_text(
        f'Acquire::http::Proxy "http://{controller_ip}:{ACNG_PORT}";\n'
    )
    if node.caches:
        wheels = f"/var/cache/hopbench/wheels/setup-cp{sys.version_info.major}{sys.version_info.minor}"
        (etc / "pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {wheels}\n")
    ssh_dir = upper / "root" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (ssh_dir / "authorized_keys").write_text(client_pub)
    return key.with_suffix(".pub").read_text().strip()


def make_netns(node: LabNode, subnet: ipaddress.IPv4Network, controller_ip: str) -> None:
    if Path(f"/run/netns/{node.netns}").exists():
        return
    remove_netns(node)  # a link of that name can outlive its namespace for a while (see remove_netns)
    sh("ip", "netns", "add", node.netns)
    try:
        sh("ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
        sh("ip", "link", "set", node.veth, "master", bridge(), "up")
        inside = ("ip", "-n", node.netns)
        sh(*inside, "addr", "add", f"{node.address}/{subnet.prefixlen}", "dev", "eth0")
        sh(*inside, "link", "set", "eth0", "up")
        sh(*inside, "link", "set", "lo", "up")
    except BaseException:
        remove_netns(node)  # nothing half made stays behind
        raise
    # No default route: the node reaches the lab's /24 (the controller, the other nodes), nothing else.


def remove_netns(node: LabNode) -> None:
    """The node's link, then its network namespace. The link goes first, by name: the kernel tears
    a deleted namespace down later, in the background, and its veth pair with it, so a lab made
    again at once found the old link still there ("File exists")."""
    sh("ip", "link", "del", node.veth, check=False)
    sh("ip", "netns", "del", node.netns, check=False)


def boot_node(node: LabNode, image: Path) -> None:
    d = node_dir(node.name)
    make_cgroups(node.cgroups)
    spec = {
        "netns": node.netns,
        "hostname": node.name,
        "root": str(d / "root"),
        "image": str(image),
        "upper": str(d / "upper"),
        "work": str(d / "work"),
        "binds": [[str(d / "lib"), "/var/lib/hopbench"]],
        "console": str(d / "console.log"),
        # The controller's caches as the lower layer of the node's /var/cache/hopbench: the node
        # reads them and writes only into its own upper layer.
        "overlays": [[str(CONTROLLER_CACHE), "/var/cache/hopbench", str(d / "cache-upper"), str(d / "cache-work")]]
        if node.caches
        else [],
        "cgroup_procs": [f"{c}/cgroup.procs" for c in node.cgroups],
    }
    with open(d / "console.log", "ab") as console:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("lab_boot.py")), "enter", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    node.pid = proc.pid


def ssh_argv(node_address: str, *command: str, connect_timeout: int = 5) -> list[str]:
    return [
        "ssh",
        "-i",
        str(state_dir() / "id_ed25519"),
        "-o",
        f"UserKnownHostsFile={inventory_dir() / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        f"root@{node_address}",
        "--",
        shlex.join(command),  # sshd hands the node's shell one string: each word quoted
    ]


def stopped_why(node: LabNode) -> str:
    """What a node that stopped while booting left: a VM's QEMU log (its own errors), its guest
    resets (qemu-debug.log: a reset before the console opened ends QEMU silently) and its console;
    each said missing or empty when it is."""
    d = node_dir(node.name)
    files = (("qemu.log", 3000), ("qemu-debug.log", 1500)) if node.kind == "vm" else ()
    parts = []
    for name, tail in (*files, ("console.log", 3000)):
        f = d / name
        if not f.exists():
            parts.append(f"{f}: missing" + ("" if d.is_dir() else f" (its folder {d} is gone)"))
            continue
        text = f.read_text(errors="replace")
        parts.append(f"{f}: " + (f"\n{text[-tail:]}" if text.strip() else "empty"))
    return "\n".join(parts)


def wait_running(node: LabNode, deadline_s: float = 90) -> str:
    check_route(node.address)
    end = time.monotonic() + deadline_s
    state = "no answer"
    while time.monotonic() < end:
        if not running(node):
            raise LabError(f"node {node.name} stopped while booting:\n{stopped_why(node)}")
        proc = subprocess.run(
            ssh_argv(node.address, "systemctl", "is-system-running", "--wait"),
            capture_output=True,
            text=True,
            timeout=max(5, end - time.monotonic()),
            check=False,
        )
        state = proc.stdout.strip() or proc.stderr.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise LabError(f"node {node.name} did not finish booting within {deadline_s:.0f} s: {state}")


def write_inventory(state: dict[str, Any]) -> Path:
    inventory_dir().mkdir(parents=True, exist_ok=True)
    known = "".join(f"{n['address']} {n['host_key']}\n" for n in state["nodes"].values())
    (inventory_dir() / "known_hosts").write_text(known)
    hosts = {}
    for n in state["nodes"].values():
        hosts[n["name"]] = {
            "ansible_host": n["address"],
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(state_dir() / "id_ed25519"),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={inventory_dir() / 'known_hosts'} "
            "-o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
            "hopbench_known_hosts": str(inventory_dir() / "known_hosts"),
            # Host variables: they outrank the playbook's group_vars/all, inventory group variables do not.
            # The lab's nodes have no route out: Python wheels come from the controller.
            "hopbench_offline_wheels": True,
            # systemd nodes: each stack with the systemd driver (the default) and a cgroupfs twin;
            # a VM node shows what runs on its kernel, one instance per stack.
            "hopbench_cgroup_driver_twins": n.get("kind", "ns") != "vm",
        }
        if n.get("kind") == "vm":
            hosts[n["name"]].update(hopbench_lab_vm=True, hopbench_lab_accel=n.get("accel", ""))
    names = sorted(hosts)
    inv = {
        "all": {
            "hosts": hosts,
            "children": {g: {"hosts": {n: None for n in names}} for g in ("containerd", "docker", "crio")},
        }
    }
    header = (
        "# Generated by `hopbench lab up` (bench/controller/lab.py); `hopbench lab down` removes it.\n"
        "# Host keys are pinned in known_hosts beside this file.\n"
    )
    (inventory_dir() / "hosts.yml").write_text(header + json.dumps(inv, indent=2) + "\n")
    return inventory_dir()


def new_node(index: int, subnet: ipaddress.IPv4Network) -> LabNode:
    name = f"{prefix()}{index}"
    return LabNode(
        name=name,
        index=index,
        address=str(subnet[10 + index]),
        netns=f"{bridge()}-{name}",
        veth=f"{bridge()[:10]}v{index}",
        pid=None,
        cgroups=host_cgroup_folders(name),
    )


def _nodes(state: dict[str, Any]) -> dict[str, LabNode]:
    fields = LabNode.__dataclass_fields__
    return {name: LabNode(**{k: v for k, v in n.items() if k in fields}) for name, n in state["nodes"].items()}


def _store(state: dict[str, Any], node: LabNode, **extra: Any) -> None:
    state["nodes"][node.name] = {**state["nodes"].get(node.name, {}), **asdict(node), **extra}
    save_state(state)


def setup_wheelhouse(repo: Path = REPO) -> Path:
    """The wheels `scripts/setup` installs (hopbench[dev] and its build backend), downloaded on the
    controller into its cache, for a node whose pip has no index (its /etc/pip.conf, see up)."""
    dest = CONTROLLER_CACHE / "wheels" / f"setup-cp{sys.version_info.major}{sys.version_info.minor}"
    dest.mkdir(parents=True, exist_ok=True)
    sh(sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest), f"{repo}[dev]", "setuptools>=68",
       "wheel", timeout=1800)  # fmt: skip
    return dest


def _base(release: str | None, log: Callable[[str], None]) -> tuple[dict[str, Any], str]:
    """The lab's shared parts, made or found: the client key, the bridge in a free /24, the
    package proxy. `release`: the namespace nodes' release, for a new lab (None: not chosen yet).
    Returns the state and the client's public key."""
    if os.geteuid() != 0:
        raise LabError("lab up needs root (namespaces, mounts, cgroups, tap devices)")
    state = load_state()
    ensure_host_packages()
    state_dir().mkdir(parents=True, exist_ok=True)
    key = state_dir() / "id_ed25519"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hopbench-lab-controller", "-f", str(key))
    new_lab = state is None
    if state is None:
        subnet = pick_subnet()
        state = {"release": release, "subnet": str(subnet), "nodes": {}, "acng_pid": None}
    subnet = ipaddress.IPv4Network(state["subnet"])
    state["controller_ip"] = make_bridge(subnet, new_lab)
    if not alive_acng(state.get("acng_pid")):
        state["acng_pid"] = start_acng(state["controller_ip"])
    save_state(state)
    return state, key.with_suffix(".pub").read_text()


def up(nodes: int, release: str, log: Callable[[str], None] = print, controller_caches: bool = False) -> dict[str, Any]:
    """Make or complete the lab. `controller_caches`: new nodes see the controller's build and
    download caches (read-only, under an upper layer of their own) and install Python wheels
    from them only, to test README command 1 in a pristine node within CI's time."""
    if release not in RELEASES:
        raise InputError(f"--release {release!r}: expected one of {', '.join(RELEASES)}")
    if not 1 <= nodes <= 16:
        raise InputError(f"--nodes {nodes}: expected 1 to 16")
    state = load_state()
    if state and state.get("release") not in (None, release):
        raise LabError(f"the lab runs {state['release']}; `hopbench lab down` first to change the release")
    state, client_pub = _base(release, log)
    image = build_image(release, log)
    state.update(release=release, image=str(image))
    subnet = ipaddress.IPv4Network(state["subnet"])
    known = _nodes(state)
    t0 = time.monotonic()
    booting = []
    for index in range(1, nodes + 1):
        node = known.get(f"{prefix()}{index}") or new_node(index, subnet)
        if node.name not in known:
            node.caches = controller_caches
        host_key = prepare_node(node, state["controller_ip"], client_pub)
        make_netns(node, subnet, state["controller_ip"])
        if not running(node):
            boot_node(node, image)
            booting.append(node)
        _store(state, node, host_key=host_key)
    write_inventory(state)
    for node in booting:
        result = wait_running(node)
        log(f"{node.name} {node.address}: systemd {result}")
    if booting:
        log(f"{len(booting)} node(s) booted in {time.monotonic() - t0:.1f} s; inventory: {inventory_dir()}")
    return state


# An emulated guest (TCG) boots in tens of seconds to minutes on a busy 2-core machine.
VM_BOOT_S = 900


def up_vm(release: str = lab_vm.DEFAULT_RELEASE, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Make or boot the lab's VM node `<prefix>vm1` (lab_vm): the lab image of `release` with
    Debian's kernel, on the lab bridge, in the inventory like any node."""
    if release not in RELEASES:
        raise InputError(f"--release {release!r}: expected one of {', '.join(RELEASES)}")
    state, client_pub = _base(None, log)
    ensure_host_packages(lab_vm.HOST_PACKAGES)
    image = build_image(release, log, IMAGE_PACKAGES + lab_vm.PACKAGES)
    subnet = ipaddress.IPv4Network(state["subnet"])
    name = f"{prefix()}vm1"
    known = _nodes(state)
    from bench.node.doctor import kvm

    kvm_facts = kvm()
    node = known.get(name) or LabNode(
        name=name,
        index=1,
        address=str(subnet[200]),
        netns="",
        veth=f"{bridge()[:10]}t1",
        pid=None,
        cgroups=[],
        kind="vm",
        release=release,
        accel=lab_vm.accelerator(kvm_facts),
        mac=lab_vm.mac_of(1),
    )
    if node.release != release:
        raise LabError(f"{name} runs {node.release}; `hopbench lab down` first to change its release")
    if node.accel == "tcg":
        log(f"{name}: KVM runs no standard guest here ({kvm_facts.get('why', '?')}): the VM runs emulated (TCG)")
    host_key = prepare_node(node, state["controller_ip"], client_pub)
    lab_vm.guest_files(node_dir(name) / "upper", node.mac, f"{node.address}/{subnet.prefixlen}")
    _store(state, node, host_key=host_key, image=str(image))
    write_inventory(state)
    if not running(node):
        disk = node_dir(name) / "disk.img"
        if not disk.exists():
            t0 = time.monotonic()
            d = node_dir(name)
            lab_vm.make_disk(image, d / "upper", d / "work", d / "root", disk)
            log(f"{name}: disk made from the {release} image in {time.monotonic() - t0:.1f} s")
        t0 = time.monotonic()
        boot_vm(node, state)
        _store(state, node)
        result = wait_running(node, VM_BOOT_S)
        log(f"{name} {node.address}: systemd {result}, booted in {time.monotonic() - t0:.1f} s ({node.accel})")
    return state


def boot_vm(node: LabNode, state: dict[str, Any]) -> None:
    d = node_dir(node.name)
    image = Path(state["nodes"][node.name]["image"])
    kernel, initrd = lab_vm.kernel_files(image)
    lab_vm.make_tap(node.veth, bridge())
    argv = lab_vm.qemu_argv(node.name, node.accel, kernel, initrd, d / "disk.img", node.veth, node.mac, d)
    node.pid = lab_vm.start(argv, d)


def alive_acng(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/exe").resolve().name == "apt-cacher-ng"
    except OSError:
        return False


def status() -> list[dict[str, Any]]:
    state = load_state()
    if state is None:
        return []
    rows = []
    for node in _nodes(state).values():
        row = {"node": node.name, "address": node.address, "pid": node.pid, "state": "off"}
        if node.kind == "vm":
            row["node"] = f"{node.name} (VM, {node.release}, {'emulated' if node.accel == 'tcg' else node.accel})"
        if running(node):
            proc = subprocess.run(
                ssh_argv(node.address, "systemctl", "is-system-running"),
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            row["state"] = proc.stdout.strip() or f"no answer ({proc.stderr.strip()[-200:]})"
        rows.append(row)
    return rows


def poweroff(name: str, timeout_s: float = 60, cut: bool = False) -> None:
    """Power a node off: as its power button does (systemd stops every unit), or, with `cut`, as
    a power cut does (see stop_node)."""
    state = load_state()
    nodes = _nodes(state) if state else {}
    if state is None or name not in nodes:
        raise InputError(f"lab node {name!r}: expected one of {', '.join(nodes) or '(no lab)'}")
    node = nodes[name]
    stop_node(node, timeout_s, cut=cut)
    _store(state, node)


def stop_node(node: LabNode, timeout_s: float = 60, cut: bool = False) -> None:
    """Power off as the power button does (SIGRTMIN+4 to systemd); killed if it has not within timeout_s.

    `cut`: as a power cut. The node's link goes down first, so nothing it would still say (an
    agent's last words, a FIN or RST of its dying sockets) reaches anyone: its peers learn of the
    loss only by hearing nothing, as from a machine that lost power. Then every process stops at
    once (SIGKILL to its init ends the PID namespace), and its network namespace goes with the
    sockets left in it; the next boot makes a new one, as a powered-on NIC starts afresh.
    A VM node: lab_vm.stop (ACPI power button, or tap down and QEMU killed)."""
    if node.kind == "vm":
        lab_vm.stop(node.pid, node.name, node_dir(node.name), node.veth, timeout_s=max(timeout_s, 120), cut=cut)
        node.pid = None
        return
    if cut:
        sh("ip", "link", "set", node.veth, "down", check=False)
    init = systemd_pid(node)
    if init is not None and not cut:
        os.kill(init, signal.SIGRTMIN + 4)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and alive(node.pid):
            time.sleep(0.2)
    if alive(node.pid):
        init = systemd_pid(node)
        if init is not None:
            os.kill(init, signal.SIGKILL)  # the PID namespace ends with its init
        end = time.monotonic() + 10
        while time.monotonic() < end and alive(node.pid):
            time.sleep(0.1)
    if node.pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(node.pid, os.WNOHANG)
    node.pid = None
    # The node's other processes die with its PID namespace's init, a moment after it.
    end = time.monotonic() + 15
    while (left := remove_cgroups(node.cgroups)) and time.monotonic() < end:
        time.sleep(0.2)
    if left:
        raise LabError(f"node {node.name}: cgroups still in use after power-off: {left[:5]}")
    if cut:
        remove_netns(node)


def reboot(name: str) -> None:
    poweroff(name)
    state = load_state()
    if state is None:
        raise LabError("the lab's state is gone")
    node = _nodes(state)[name]
    if node.kind == "vm":
        boot_vm(node, state)
    else:
        make_netns(node, ipaddress.IPv4Network(state["subnet"]), state["controller_ip"])  # gone after a cut
        boot_node(node, Path(state["image"]))
    _store(state, node)
    wait_running(node, VM_BOOT_S if node.kind == "vm" else 90)


def down(log: Callable[[str], None] = print) -> None:
    state = load_state()
    if state is None:
        log("no lab")
        return
    for node in _nodes(state).values():
        stop_node(node)
        if node.kind == "vm":
            lab_vm.remove_tap(node.veth)
        else:
            remove_netns(node)
        shutil.rmtree(node_dir(node.name), ignore_errors=True)
        del state["nodes"][node.name]
        save_state(state)
        log(f"{node.name}: off and removed")
    pid = state.get("acng_pid")
    if pid and alive_acng(pid):
        os.kill(pid, signal.SIGTERM)
    sh("ip", "link", "del", bridge(), check=False)
    for folder in host_cgroup_folders("x"):  # the lab's own parent folders in each hierarchy
        with contextlib.suppress(OSError):
            Path(folder).parent.rmdir()
            Path(folder).parent.parent.rmdir()
    shutil.rmtree(inventory_dir(), ignore_errors=True)
    (state_dir() / "lab.json").unlink()
    log("lab down")
