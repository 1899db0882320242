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


def test_containerd_is_isolated_and_described(provisioned):
    (stack,) = [s for s in stacks.discover() if s.name == "containerd"]
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
    (stack,) = [s for s in stacks.discover() if s.name == "docker"]
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
    cached = {p.name.split("-v")[0] for p in Path("/var/cache/hopbench/bin").iterdir()}
    assert {"crictl", "cri-dockerd"} <= cached
