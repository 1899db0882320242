"""SECURITY.md kept true: a secret planted in the inventory and in the environment reaches no
file of the run and no output; nothing the run writes is group- or world-writable."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess

import pytest

from .conftest import REPO, hopbench_exe, no_pods_left

pytestmark = pytest.mark.integration


def test_a_planted_secret_reaches_no_result_log_or_report(provisioned, tmp_path):
    secret = f"hb-secret-{secrets.token_hex(12)}"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    local:\n      ansible_connection: local\n"
        f"      ansible_password: {secret}\n      ansible_become_password: {secret}\n"
        f"      lab_api_token: {secret}\n"
    )
    scen = tmp_path / "secret.yaml"
    scen.write_text(
        "schema: 1\nname: secret\ntargets: [containerd/runc]\nlevels: [cri]\niterations: 3\nwarmup: 0\n"
        "concurrency: [1]\ncontrol: false\n"
    )
    results = tmp_path / "results"
    env = {**os.environ, "HOPBENCH_LAB_TOKEN": secret, "AWS_SECRET_ACCESS_KEY": secret}
    old = os.umask(0o022)
    try:
        argv = ["run", "--scenario", str(scen), "--inventory", str(inventory), "--results", str(results)]
        proc = subprocess.run(
            [hopbench_exe(), *argv], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        (run,) = list(results.iterdir())
        again = subprocess.run(
            [hopbench_exe(), "report", str(run)], cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        os.umask(old)
    no_pods_left(run.name)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"meta.json", "samples.jsonl", "samples.parquet", "events.jsonl", "report.html", "report.md"} <= {
        p.name for p in files
    }
    for out in (proc.stdout, proc.stderr, again.stdout, again.stderr):
        assert secret not in out
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"{path} holds the planted secret"
    for path in [run, *run.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{path} is writable by others: {oct(mode)}"
        assert mode == (0o755 if path.is_dir() else 0o644), f"{path}: {oct(mode)}"
