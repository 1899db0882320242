"""`hopbench targets` against the provisioned node: every pair listed, unavailable ones with a reason."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import nodeinfo

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def targets():
    exe = str(Path(sys.executable).with_name("hopbench"))
    out = subprocess.run([exe, "targets", "--json"], cwd=REPO, capture_output=True, text=True, check=True, timeout=300)
    return {t["target"]: t for t in json.loads(out.stdout)}


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
