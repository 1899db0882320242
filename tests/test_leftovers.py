"""The node inventory's dangling-link count: what a leaking conmon leaves in CRI-O's attach folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.node import leftovers, memory
from benchmarks import soak


def test_only_links_whose_target_is_gone_are_counted_and_links_are_not_followed(tmp_path):
    state = tmp_path / "run"
    attach = state / "attach"
    attach.mkdir(parents=True)
    live = state / "userdata-live"
    live.mkdir()
    os.symlink(live, attach / "live")  # a running container's link
    os.symlink(state / "userdata-gone", attach / "gone1")  # a removed container's
    os.symlink(state / "userdata-gone2", attach / "gone2")
    (state / "deeper" / "still").mkdir(parents=True)
    os.symlink("nowhere", state / "deeper" / "still" / "gone3")  # relative, dangling
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink("nowhere", outside / "not-ours")
    os.symlink(outside, state / "to-outside")  # a live link to a folder: counted as live, not entered
    (state / "file").write_text("x")
    assert leftovers.dangling_links(str(state)) == 3
    assert leftovers.dangling_links(str(tmp_path / "absent")) == 0


def test_the_soak_table_has_a_row_for_every_count_even_one_older_rows_lack():
    before = {k: 0 for k in leftovers.COUNTS if k != "dangling links"} | {"daemon fds": {}, "state bytes": {}}
    rows = [{"inventory": before | {"dangling links": 64}}, {"inventory": before | {"dangling links": 128}}]
    table = soak.table(before, rows)
    assert "| dangling links | - | 128 | 128 |" in table
    assert len(table) == 2 + len(leftovers.COUNTS)


def test_a_monitor_whose_bundle_folder_was_removed_is_seen_by_its_deleted_cwd(tmp_path):
    """How the sweep tells a shim its daemon forgot: the daemon removed the bundle the shim runs in."""
    import subprocess
    import time

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    proc = subprocess.Popen(["sleep", "30"], cwd=bundle)
    try:
        time.sleep(0.05)
        assert not leftovers._bundle_gone(proc.pid)
        assert 0 <= leftovers._age_s(proc.pid) < 30
        bundle.rmdir()
        assert leftovers._bundle_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not leftovers._bundle_gone(proc.pid)  # gone: nothing to say


def _child_of(pid: int, within_s: float = 5.0) -> int:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError(f"no child of {pid}")


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root (unshare --pid)")
def test_a_nested_nodes_shim_is_neither_counted_nor_classified_as_ours(tmp_path):
    """A lab node on this machine runs the same daemons and shims, at the same socket paths, one
    PID namespace down: the host's inventory and sweeps must leave them alone."""
    shim = tmp_path / "containerd-shim-runc-v2"
    shutil.copy("/bin/sleep", shim)  # a process whose name is a shim's
    before = leftovers.processes()["shims"]
    here = subprocess.Popen([str(shim), "30"])
    nested = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", str(shim), "30"])
    try:
        inner = _child_of(nested.pid)
        assert memory.in_own_pid_namespace(here.pid) and memory.in_own_pid_namespace(os.getpid())
        assert not memory.in_own_pid_namespace(inner)
        assert leftovers.processes()["shims"] == before + 1  # the one beside us, not the nested one
        classifier = memory.Classifier([])
        classifier.classify()
        assert classifier.seen[here.pid].kind == "shim" and classifier.seen[inner].kind == ""
    finally:
        for proc in (here, nested):
            proc.kill()
            proc.wait()
