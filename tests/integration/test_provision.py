"""The provisioning playbook, run for real on this machine."""

import json
import stat
from pathlib import Path

import pytest

from bench import stacks

from .conftest import playbook

pytestmark = pytest.mark.integration


def test_second_provisioning_changes_nothing(provisioned):
    assert provisioned["local"]["failed"] == 0
    second = playbook()
    assert second["local"]["failed"] == 0
    assert second["local"]["changed"] == 0, second["local"]["changed_tasks"]


def default_instance(kind: str) -> stacks.Stack:
    (stack,) = [s for s in stacks.discover() if s.kind == kind and s.default]
    return stack


def test_containerd_is_isolated_and_described(provisioned):
    stack = default_instance("containerd")
    assert stack.cri_endpoint == "unix:///run/hopbench/containerd/containerd.sock"
    sock = Path(stack.cri_endpoint.removeprefix("unix://"))
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stack.daemons[0].pid() is not None
    cmdline = Path(f"/proc/{stack.daemons[0].pid()}/cmdline").read_bytes().split(b"\0")
    assert b"/etc/hopbench/containerd/config.toml" in cmdline
    config = Path("/etc/hopbench/containerd/config.toml").read_text()
    assert 'root = "/var/lib/hopbench/containerd"' in config
    assert 'stream_server_address = "127.0.0.1"' in config
    conflist = json.loads(Path("/etc/hopbench/containerd/cni/10-hopbench-containerd.conflist").read_text())
    assert conflist["plugins"][0]["bridge"] == "hb-containerd0"


def test_bad_subnet_is_refused_and_names_the_clash(provisioned, tmp_path):
    # A subnet overlapping this machine's own route must stop provisioning before anything changes.
    import subprocess

    route = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True, check=True).stdout
    nets = [
        r["dst"]
        for r in json.loads(route)
        if "/" in r.get("dst", "") and not r.get("dev", "").startswith("hb-")  # not one of our own bridges
    ]
    if not nets:
        pytest.skip("this machine has no IPv4 subnet route to clash with")
    proc = subprocess.run(
        [
            str(Path(__import__("sys").executable).with_name("ansible-playbook")),
            "site.yml",
            "-e",
            f"containerd_cni_subnet={nets[0]}",
        ],
        cwd=Path(__file__).resolve().parents[2] / "ansible",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "overlaps route" in proc.stdout


def test_docker_stack_is_isolated_and_described(provisioned):
    stack = default_instance("docker")
    assert stack.cri_endpoint == "unix:///run/hopbench/cri-dockerd/cri-dockerd.sock"
    assert [d.name for d in stack.daemons] == ["cri-dockerd", "dockerd"]
    assert all(d.pid() is not None for d in stack.daemons)
    daemon = json.loads(Path("/etc/hopbench/docker/daemon.json").read_text())
    assert daemon["hosts"] == ["unix:///run/hopbench/docker/docker.sock"]
    assert daemon["data-root"] == "/var/lib/hopbench/docker"
    assert daemon["bridge"] == "none" and daemon["iptables"] is False
    args = Path("/etc/hopbench/docker/cri-dockerd.args").read_text().split()
    assert "--streaming-bind-addr=127.0.0.1:0" in args
    assert "--docker-endpoint=unix:///run/hopbench/docker/docker.sock" in args


def test_built_programs_are_cached_by_version(provisioned):
    files = [p.name for p in Path("/var/cache/hopbench/bin").iterdir()]
    wanted = {"crictl", "critest", "cri-dockerd", "containerd", "containerd-shim-runc-v2", "ctr", "dockerd", "runc"}
    # <name>-<version>-<settings hash>, the version starting with v.
    assert {n for n in wanted if any(f.startswith(f"{n}-v") for f in files)} == wanted


def running_exe(daemon: stacks.Daemon) -> str:
    pid = daemon.pid()
    assert pid is not None, daemon
    return str(Path(f"/proc/{pid}/exe").resolve())


def test_instances_of_one_stack_run_side_by_side_isolated(provisioned):
    """Two versions of containerd and of docker at once: own binaries, config, socket, bridge, subnet."""
    for kind in ("containerd", "docker"):
        mine = [s for s in stacks.discover() if s.kind == kind]
        assert len(mine) >= 2, [s.name for s in mine]
        assert sum(s.default for s in mine) == 1
        for attr in ("cri_endpoint", "description_path"):
            assert len({getattr(s, attr) for s in mine}) == len(mine), attr
        assert len({s.extra["cni"]["bridge"] for s in mine}) == len(mine)
        assert len({s.extra["cni"]["subnet"] for s in mine}) == len(mine)
        assert len({s.version for s in mine}) == len(mine)
        # Each instance's daemons run their own binaries (one version each), all at once.
        exes = {s.name: {running_exe(d) for d in s.daemons} for s in mine}
        assert all(exes.values()) and len({frozenset(v) for v in exes.values()}) == len(mine)
    newest = default_instance("containerd")
    assert stacks.version_key(newest.version) >= (2,)
    config = Path(newest.extra["crictl_config"]).with_name("config.toml").read_text()
    assert "version = 3" in config and 'plugins."io.containerd.cri.v1.runtime"' in config
    docker = default_instance("docker")
    assert stacks.version_key(docker.version) >= (29,)


def test_runc_is_a_current_release(provisioned):
    import subprocess

    out = subprocess.run(["/usr/local/lib/hopbench/bin/runc", "--version"], capture_output=True, text=True, check=True)
    version = out.stdout.split()[2]
    assert stacks.version_key(version) >= (1, 3), out.stdout


def test_crio_is_installed_from_its_checked_bundle(provisioned):
    bundle = Path(__file__).resolve().parents[3] / "shared" / "artifacts" / "cri-o.amd64.v1.36.3.tar.gz"
    crio = [s for s in stacks.discover() if s.kind == "crio"]
    if not bundle.is_file():
        assert all(s.unavailable for s in crio), "CRI-O was installed without its bundle?"
        pytest.skip(f"no CRI-O bundle at {bundle}: crio is unavailable, as recorded: {crio[0].unavailable}")
    (stack,) = crio
    assert not stack.unavailable, stack.unavailable
    assert stack.version == "1.36.3"
    assert running_exe(stack.daemons[0]).endswith("/crio-v1.36.3/crio")


def test_crio_monitors_its_containers_with_a_conmon_that_removes_its_attach_links(provisioned):
    """conmon before 2.1.7 leaves a symlink per container in CRI-O's attach folder (containers/conmon#384);
    the role builds a newer one. That runs leave none is test_lifecycle's to check."""
    crio = [s for s in stacks.discover() if s.kind == "crio" and not s.unavailable]
    if not crio:
        pytest.skip("CRI-O is unavailable on this node (test_crio_is_installed_from_its_checked_bundle says why)")
    (stack,) = crio
    conmon = stack.components["conmon"]
    said = stacks.command_version(conmon)
    assert said.startswith("conmon version ") and stacks.version_key(said.split()[-1]) >= (2, 1, 7), said
    config = Path(stack.extra["crictl_config"]).with_name("crio.conf").read_text()
    assert f'monitor_path = "{conmon[0]}"' in config
