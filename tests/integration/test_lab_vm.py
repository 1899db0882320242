"""The lab's VM node (`hopbench lab up --vm`, bench/controller/lab_vm.py): QEMU booting Debian
trixie's own kernel from the lab's pristine image, for what a namespace node sharing this
machine's kernel cannot give (cgroup v2 alone, root with every capability).

The tests make a lab of their own (HOPBENCH_LAB_DIR, bridge hb-labv0, node vvm1) and check what a
platform engineer would check on a new VM: its own kernel with the unified cgroup hierarchy and
systemd 257 as PID 1, the CPU it says it has (emulated here: this machine's KVM is kvm_pvm), no
route out, its pinned host key, and that power-off keeps its disk. They boot it once (about
30 s under TCG here, 2 min with the image built).

Provisioning it over SSH and the functional table (runsc and crun through CRI, a kubelet on
cgroup v2) take far longer under emulation (see the README): `pytest -m vm` runs that test; the
suite's default run leaves it out (pyproject.toml's addopts), and says so.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bench.controller.results import load_run

from .conftest import lab_ssh, own_lab

REPO = Path(__file__).resolve().parents[2]

# Under -m vm as a whole: QEMU sometimes dies at once when this module starts it inside the whole
# suite (after test_lab.py): in the fresh clone of f4fbf43 it left qemu.log empty and created
# neither qemu-debug.log (-D, opened while QEMU reads its options) nor console.log, so it died
# before processing its options, with nothing on stderr: a signal, not a guest reset. Alone, the
# module booted 3 of 3 times from the main checkout and 4 of 4 from a fresh clone. Not understood,
# so not in CI's default run: `pytest -m vm tests/integration/test_lab_vm.py`.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="a VM node needs root (tap devices, mounts)"),
]
NODE = "vvm1"


@pytest.fixture(scope="module")
def vmlab(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("vmlab")
    env, cli = own_lab(state, "hb-labv0", "v")
    try:
        up = cli("up", "--vm")
    except BaseException:
        cli("down", check=False)
        raise
    lab_state = json.loads((state / "lab.json").read_text())

    def ssh(*command: str, known_hosts: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return lab_ssh(state, lab_state["nodes"][NODE]["address"], *command, known_hosts=known_hosts, timeout=timeout)

    yield {"cli": cli, "ssh": ssh, "state": lab_state, "dir": state, "env": env, "up": up.stderr}
    cli("down", check=False)


def test_the_vm_boots_its_own_kernel_with_cgroup_v2_and_systemd_as_pid_1(vmlab):
    ssh = vmlab["ssh"]
    kernel = ssh("uname", "-r").stdout.strip()
    assert kernel.endswith("+deb13-amd64") and kernel != platform.release(), kernel
    assert ssh("stat", "-fc", "%T", "/sys/fs/cgroup").stdout.strip() == "cgroup2fs"  # unified, nothing else
    assert "memory" in ssh("cat", "/sys/fs/cgroup/cgroup.controllers").stdout.split()
    assert ssh("readlink", "/proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
    assert ssh("systemctl", "--version").stdout.split()[1] == "257"
    assert ssh("systemctl", "is-system-running").stdout.strip() == "running"
    # Root with every capability: CAP_SYS_RESOURCE among them (this machine's root lacks it).
    caps = int(next(line for line in ssh("cat", "/proc/self/status").stdout.splitlines() if line.startswith("CapEff"))
               .split()[1], 16)  # fmt: skip
    assert caps >> 24 & 1, hex(caps)  # CAP_SYS_RESOURCE is bit 24


def test_the_vm_says_whether_its_cpu_is_emulated(vmlab):
    node = vmlab["state"]["nodes"][NODE]
    virt = vmlab["ssh"]("systemd-detect-virt", "--vm").stdout.strip()
    if node["accel"] == "tcg":
        assert virt == "qemu", virt
        assert "runs emulated (TCG)" in vmlab["up"]
    else:
        assert virt == "kvm", virt
    inventory = json.loads((vmlab["dir"] / "inventory" / "hosts.yml").read_text().split("\n", 2)[2])
    assert inventory["all"]["hosts"][NODE]["hopbench_lab_accel"] == node["accel"]


def test_the_vm_has_no_route_out_and_its_host_key_is_pinned(vmlab, tmp_path):
    ssh = vmlab["ssh"]
    assert "default" not in ssh("ip", "route").stdout
    probe = (
        "import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3); print('open')\n"
        "except OSError as e: print(f'OSError:{e.errno}')"
    )
    assert ssh("python3", "-c", probe, "203.0.113.80", "80").stdout.strip() == "OSError:101"  # ENETUNREACH
    other = tmp_path / "known_hosts"
    address = vmlab["state"]["nodes"][NODE]["address"]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other.write_text(f"{address} {(tmp_path / 'k.pub').read_text().split(' ', 2)[0]} "
                     f"{(tmp_path / 'k.pub').read_text().split(' ', 2)[1]}\n")  # fmt: skip
    refused = ssh("true", known_hosts=other)
    assert refused.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_poweroff_keeps_the_vms_disk_and_reboot_boots_it(vmlab):
    ssh, cli = vmlab["ssh"], vmlab["cli"]
    assert ssh("sh", "-c", "echo kept > /root/marker && sync").returncode == 0
    cli("poweroff", NODE)
    rows = cli("status").stdout
    assert any(line.startswith(NODE) and line.split()[-1] == "off" for line in rows.splitlines()), rows
    cli("reboot", NODE)
    assert ssh("cat", "/root/marker").stdout.strip() == "kept"


FUNCTIONAL = """\
targets: [containerd/runsc, crio/runsc, containerd/crun, crio/crun, containerd/runc, crio/runc, docker/runc,
  docker/crun]
levels: [cri, engine]
iterations: 2
warmup: 0
concurrency: [1]
control: false
"""


def test_provisioned_over_ssh_runsc_and_crun_complete_the_pod_lifecycle_on_cgroup_v2(vmlab, tmp_path):
    """The roles' systemd branch over SSH on the VM, then the lifecycle through CRI for the
    handlers this machine's kernel refuses (gVisor under containerd and CRI-O, crun under all
    three); the run is labelled emulated."""
    inventory = vmlab["dir"] / "inventory"
    env = {**vmlab["env"], "ANSIBLE_NOCOLOR": "1"}
    hopbench = str(Path(sys.executable).with_name("hopbench"))
    prov = subprocess.run(
        [hopbench, "provision", "-i", str(inventory)], cwd=REPO, env=env, capture_output=True, text=True, timeout=7200
    )
    assert prov.returncode == 0, prov.stdout[-6000:] + prov.stderr[-2000:]
    scen = tmp_path / "vmfunctional.yaml"
    scen.write_text("schema: 1\nname: vmfunctional\n" + FUNCTIONAL)
    results = tmp_path / "results"
    run = subprocess.run(
        [hopbench, "run", "-s", str(scen), "-i", str(inventory), "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    (folder,) = list(results.iterdir())
    meta, samples = load_run(folder)
    available = {t["target"].split("@")[0].split("/")[0] + "/" + t["target"].split("/")[-1]: t for t in meta["targets"]}
    for target in ("containerd/runsc", "crio/runsc", "containerd/crun", "crio/crun", "docker/crun"):
        assert available[target]["available"], (target, available[target].get("reason"))
    # CRI-O's runsc: gVisor's shim started through the adapter, which the run's conditions say.
    crio = next(c for name, c in meta["node_facts"]["stacks"].items() if name.startswith("crio@"))
    assert crio["shim_adapter_in_timed_path"] == ["runsc"]
    assert samples["ok"].all(), samples[~samples["ok"]][["stack", "handler", "op", "error"]].to_string()
    assert set(samples["handler"]) >= {"runsc", "crun", "runc"}
    assert set(samples[samples["level"] == "engine"]["handler"]) == {"runc", "crun"}  # Docker's crun: dockerd's
    # Full root: the stacks run the runtime itself, not the clamping wrapper.
    conditions = meta["node_facts"]["stacks"]
    assert not any(c["oci_wrapper_in_timed_path"] or c["oom_score_adj_clamped"] for c in conditions.values())
    facts = meta["node_facts"]
    assert facts["cgroups"]["mode"] in ("unified", "v2"), facts["cgroups"]
    if vmlab["state"]["nodes"][NODE]["accel"] == "tcg":
        assert meta["emulated"]["nodes"] == [NODE] and "not for comparison" in meta["emulated"]["label"]
        assert "not for comparison" in (folder / "report.html").read_text()
