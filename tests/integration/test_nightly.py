"""hopbench nightly on real runs, and the playbook that installs it as a systemd timer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, hopbench_exe, playbook

pytestmark = pytest.mark.integration


def test_nightly_compares_the_second_night_with_the_first(provisioned, tmp_path):
    scen = tmp_path / "nightly.yaml"
    scen.write_text(
        "schema: 1\nname: itnightly\ntargets: [containerd/runc]\nlevels: [cri]\niterations: 8\nwarmup: 1\n"
        "concurrency: [1]\nregression: {threshold_pct: 10, history: 3}\n"
    )
    results = tmp_path / "results"
    exe = hopbench_exe()

    def night():
        return subprocess.run(
            [exe, "nightly", "-s", str(scen), "--results", str(results)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )

    first = night()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "becomes the baseline" in first.stderr
    second = night()
    # One earlier night cannot confirm a change against the spread between nights: never exit 3.
    assert second.returncode == 0, second.stderr[-3000:]
    runs = sorted(p for p in results.iterdir() if p.is_dir())
    nightly = json.loads((runs[1] / "nightly.json").read_text())
    assert nightly["baseline_runs"] == [runs[0].name]
    assert {r["op"] for r in nightly["rows"]} >= {"RunPodSandbox", "StartContainer", "StopContainer"}
    assert nightly["regressions"] == 0
    assert all(not r["verdict"].startswith(("regression", "improvement")) for r in nightly["rows"])
    html = (runs[1] / "report.html").read_text()
    assert "Against the previous nights" in html
    md = (runs[1] / "report.md").read_text()
    for heading in ("## Headline", "## Against the previous nights", "## Method", "## Environment", "## Reproduce"):
        assert heading in md
    assert "hopbench nightly -s" in md


def test_nightly_playbook_writes_the_timer_units(provisioned, tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    recap = playbook("nightly.yml", "-e", f"nightly_unit_dir={units}", "-e", f"nightly_repo_dir={REPO}")
    assert all(h["failed"] == 0 for h in recap.values())
    service = (units / "hopbench-nightly.service").read_text()
    timer = (units / "hopbench-nightly.timer").read_text()
    assert f"ExecStart={REPO}/.venv/bin/hopbench nightly --scenario scenarios/nightly.yaml" in service
    assert "OnCalendar=*-*-* 02:30:00" in timer and "Persistent=true" in timer
    # Again: nothing changes.
    again = playbook("nightly.yml", "-e", f"nightly_unit_dir={units}", "-e", f"nightly_repo_dir={REPO}")
    assert all(h["changed"] == 0 for h in again.values())


def test_nightly_playbook_refuses_a_controller_without_a_checkout(provisioned, tmp_path):
    env_missing = tmp_path / "nowhere"
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "nightly.yml",
            "-e",
            f"nightly_repo_dir={env_missing}",
            "-e",
            f"nightly_unit_dir={tmp_path}",
        ],
        cwd=REPO / "ansible",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{env_missing}/.venv/bin/hopbench is missing" in proc.stdout
