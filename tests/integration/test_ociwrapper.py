"""The oom_score_adj clamping wrapper, with the real runc on a real bundle."""

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from bench.node import nodeinfo
from bench.node import ociprobe as probe

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WRAPPER = Path("/usr/local/lib/hopbench/oci/runc")
IMAGE = "/var/lib/hopbench/images/workload.oci.tar"


def bundle(tmp_path: Path, oom: int) -> Path:
    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    probe.unpack_rootfs(IMAGE, str(b / "rootfs"))
    spec = probe.spec(str(b / "rootfs"))
    spec["process"]["oomScoreAdj"] = oom  # type: ignore[index]
    # Compact, as Go's encoding/json writes it.
    (b / "config.json").write_text(json.dumps(spec, separators=(",", ":")))
    return b


def run(runtime: str, b: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    cid = "hb-test-" + uuid.uuid4().hex[:8]
    return subprocess.run(
        [runtime, "--root", str(tmp_path / "state"), "run", "--bundle", str(b), cid],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_wrapper_clamps_a_negative_oom_score_adj_and_runs_the_container(provisioned, tmp_path):
    if nodeinfo.capabilities()["cap_sys_resource"]:
        pytest.skip("this host may lower oom_score_adj: the wrapper is not installed or needed")
    b = bundle(tmp_path, -998)
    proc = run(str(WRAPPER), b, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hopbench-workload ready" in proc.stdout
    own = int(Path("/proc/self/oom_score_adj").read_text())
    assert json.loads((b / "config.json").read_text())["process"]["oomScoreAdj"] == own


def test_without_the_wrapper_runc_fails_here(provisioned, tmp_path):
    if nodeinfo.capabilities()["cap_sys_resource"]:
        pytest.skip("this host may lower oom_score_adj")
    proc = run("/usr/local/lib/hopbench/bin/runc", bundle(tmp_path, -998), tmp_path)
    assert proc.returncode != 0
    assert "oom_score_adj" in proc.stderr


def test_wrapper_leaves_a_raised_value_alone(provisioned, tmp_path):
    if not WRAPPER.exists():
        pytest.skip("wrapper not installed on this host (it has CAP_SYS_RESOURCE)")
    b = bundle(tmp_path, 500)
    before = (b / "config.json").read_text()
    proc = run(str(WRAPPER), b, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (b / "config.json").read_text() == before
