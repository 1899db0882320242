"""Faults a lab sees: a second run started while one runs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bench.controller.results import load_meta
from bench.messages import LOCK_PATH

from .conftest import REPO, hopbench_exe, no_pods_left, run_hopbench

pytestmark = pytest.mark.integration


def test_a_second_run_on_the_node_is_refused_with_the_first_ones_run_id_and_pid(provisioned, tmp_path):
    scen = tmp_path / "long.yaml"
    scen.write_text(
        "schema: 1\nname: itlock\ntargets: [containerd/runc]\nlevels: [cri]\niterations: 40\nwarmup: 0\n"
        "concurrency: [1]\ncontrol: false\n"
    )
    first_results = tmp_path / "first"
    first = subprocess.Popen(
        [hopbench_exe(), "run", "--scenario", str(scen), "--results", str(first_results)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        holder = ""
        while time.monotonic() < deadline and first.poll() is None:
            runs = list(first_results.iterdir()) if first_results.exists() else []
            holder = Path(LOCK_PATH).read_text() if runs else ""
            if runs and runs[0].name in holder:
                break
            time.sleep(0.2)
        (run,) = list(first_results.iterdir())
        pid, run_id = holder.split()
        assert run_id == run.name and first.poll() is None
        second = run_hopbench("run", "--scenario", str(scen), "--results", str(tmp_path / "second"))
        assert second.returncode == 1
        assert f"another hopbench agent runs on this node (run {run_id}, agent PID {pid}" in second.stderr
        (refused,) = list((tmp_path / "second").iterdir())
        assert load_meta(refused)["status"] == "failed"
        assert first.wait(timeout=600) == 0
        assert load_meta(run)["status"] == "complete"  # the first run went on, untouched
        no_pods_left(run_id)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(timeout=120)
