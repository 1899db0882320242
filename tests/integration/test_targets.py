"""`hopbench targets` against the provisioned node: every pair listed, unavailable ones with a reason."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.node import nodeinfo

from .conftest import default_targets

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def listed() -> list[dict]:
    exe = str(Path(sys.executable).with_name("hopbench"))
    out = subprocess.run([exe, "targets", "--json"], cwd=REPO, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout)


def targets():
    return default_targets(listed())


def test_every_stack_and_handler_is_listed_with_a_reason_when_unavailable(provisioned):
    found = targets()
    for stack in ("containerd", "docker", "crio"):
        for handler in ("runc", "crun", "runsc", "kata"):
            t = found[f"{stack}/{handler}"]
            assert t["available"] or t["reason"].strip(), t
    assert found["containerd/runc"]["available"]
    assert found["docker/runc"]["available"]
    assert "containerd" in found["containerd/runc"]["versions"]
    assert {"cri-dockerd", "dockerd", "cri", "runc"} <= set(found["docker/runc"]["versions"])


def test_every_instance_is_listed_with_its_version(provisioned):
    """Each provisioned instance is a target of its own, named STACK@VERSION/HANDLER, and its CRI
    answers with that version; exactly one instance per stack is the default."""
    every = listed()
    instances = {(t["kind"], t["version"]) for t in every if t.get("version")}
    for kind in ("containerd", "docker"):
        assert sum(1 for t in every if t["kind"] == kind and t["handler"] == "runc" and t["default"]) == 1
    for t in every:
        if t.get("version"):
            assert t["target"] == f"{t['kind']}@{t['version']}/{t['handler']}"
        if t["handler"] == "runc" and t["available"]:
            # The CRI's own version string names the same release the instance is named after.
            assert t["version"].split("-")[0] in t["versions"]["cri"], t
    # The defaults of this node kind: two containerd and two docker instances side by side.
    assert len({v for k, v in instances if k == "containerd"}) >= 2
    assert len({v for k, v in instances if k == "docker"}) >= 2


def test_oom_clamp_wrapper_is_recorded_where_used(provisioned):
    docker = targets()["docker/runc"]
    wrapper = docker["handler_extra"].get("wrapper", "")
    if nodeinfo.capabilities()["cap_sys_resource"]:
        assert wrapper == ""
    else:
        assert wrapper.endswith("/oci/runc") and Path(wrapper).is_file()


def test_crun_on_hybrid_cgroups_says_why(provisioned):
    crun = targets()["containerd/crun"]
    if nodeinfo.cgroups()["mode"] != "hybrid":
        pytest.skip("the crun refusal is specific to hybrid cgroup hosts")
    if crun["available"]:
        pytest.skip("this crun accepts hybrid cgroups")
    assert "crun" in crun["reason"]
