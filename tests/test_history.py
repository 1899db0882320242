"""Run history, comparison of two runs and the nightly check, on run folders with known answers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.controller.history import baseline_runs, compare_dirs, list_runs, nightly_check
from bench.controller.report import build_report
from bench.controller.results import RunStore

REPO = Path(__file__).resolve().parents[1]
OPS = {"RunPodSandbox": 65.0, "StartContainer": 48.0, "StopContainer": 34.0}


def make_run(
    root,
    run_id,
    day,
    rng,
    slower=None,
    status="complete",
    node="local",
    scenario="nightly",
    n=30,
    stacks=("containerd",),
):
    """A run folder as `hopbench run` writes it; `slower` = {op: factor} plants a change."""
    store = RunStore(root, run_id)
    store.update_meta(
        node=node,
        scenario={"name": scenario, "sha256": "0" * 64},
        started_at=f"2026-11-{day:02d}T02:00:00+00:00",
        ended_at=f"2026-11-{day:02d}T02:05:00+00:00",
        harness={"version": "test"},
        command="hopbench nightly",
    )
    start = 0
    for stack, (op, ms) in ((st, item) for st in stacks for item in OPS.items()):
        factor = (slower or {}).get(op, 1.0)
        for i, v in enumerate(ms * factor * np.exp(rng.normal(0, 0.08, n))):
            store.add_sample(
                {
                    "run_id": run_id,
                    "node": node,
                    "stack": stack,
                    "handler": "runc",
                    "level": "cri",
                    "op": op,
                    "iteration": i,
                    "concurrency": 1,
                    "worker": 0,
                    "warmup": False,
                    "start_ns": start,
                    "duration_ns": int(v * 1e6),
                    "ok": True,
                    "error": "",
                }
            )
            start += 1
    store.close()
    store.update_meta(status=status, samples=len(store.samples))
    return store.dir


@pytest.fixture
def history(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "results"
    for day in range(1, 9):
        make_run(root, f"r{day}", day, rng)
    make_run(root, "failed", 9, rng, status="failed", slower={"StartContainer": 3.0})
    make_run(root, "othernode", 9, rng, node="lab1", slower={"StartContainer": 3.0})
    return root, rng


def test_baseline_is_the_last_complete_runs_of_the_same_scenario_and_node(history):
    root, rng = history
    cand = make_run(root, "tonight", 10, rng)
    meta = json.loads((cand / "meta.json").read_text())
    assert [p.name for p in baseline_runs(root, meta, 5)] == ["r8", "r7", "r6", "r5", "r4"]
    assert list(list_runs(root)["run_id"])[-1] == "tonight"


def test_nightly_flags_a_planted_10_percent_regression_only(history):
    root, rng = history
    cand = make_run(root, "tonight", 10, rng, slower={"StartContainer": 1.10})
    result = nightly_check(cand, root, history=7, threshold=0.05)
    verdicts = {r["op"]: r["verdict"] for r in result["rows"]}
    assert verdicts == {
        "RunPodSandbox": "no clear change",
        "StartContainer": "regression",
        "StopContainer": "no clear change",
    }
    assert result["regressions"] == 1 and len(result["baseline_runs"]) == 7
    start = next(r for r in result["rows"] if r["op"] == "StartContainer")
    assert start["ratio"] == pytest.approx(1.10, abs=0.04) and start["ratio_lo"] > 1.0
    assert json.loads((cand / "nightly.json").read_text())["regressions"] == 1
    from rich.console import Console

    from bench.cli import _verdict_table

    with open(os.devnull, "w") as sink:  # the nightly's own table prints the gate's rows
        Console(file=sink).print(_verdict_table("tonight", pd.DataFrame(result["rows"])))
    build_report(cand)
    html = (cand / "report.html").read_text()
    assert "Against the previous nights" in html and "1 regression(s)" in html
    assert "data:image/png;base64," in html  # the trend chart
    md = (cand / "report.md").read_text()
    assert "## Against the previous nights" in md and "| regression |" in md


def test_nightly_stays_quiet_on_noise(history):
    root, rng = history
    quiet = 0
    for k in range(5):
        cand = make_run(root, f"noise{k}", 20 + k, rng)
        quiet += nightly_check(cand, root, history=7, threshold=0.05)["regressions"] == 0
    assert quiet == 5


def test_first_night_has_no_baseline(tmp_path):
    cand = make_run(tmp_path, "first", 1, np.random.default_rng(0))
    result = nightly_check(cand, tmp_path, history=7, threshold=0.1)
    assert result["baseline_runs"] == [] and result["rows"] == [] and result["regressions"] == 0


def test_compare_two_runs_from_the_command_line(history):
    root, rng = history
    cand = make_run(root, "faster", 10, rng, slower={"StopContainer": 0.7})
    table = compare_dirs(root / "r8", cand, threshold=0.1)
    assert dict(zip(table["op"], table["verdict"], strict=True))["StopContainer"] == "improvement"
    exe = str(Path(sys.executable).with_name("hopbench"))
    out = subprocess.run([exe, "compare", "r8", "faster", "--results", str(root)], capture_output=True, text=True)
    assert out.returncode == 0 and "improvement" in out.stdout
    runs = subprocess.run([exe, "runs", "--results", str(root)], capture_output=True, text=True)
    assert runs.returncode == 0 and "othernode" in runs.stdout
    bad = subprocess.run([exe, "compare", "r8", "nope", "--results", str(root)], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_a_single_baseline_night_cannot_confirm_a_change(tmp_path):
    rng = np.random.default_rng(5)
    make_run(tmp_path, "night1", 1, rng)
    cand = make_run(tmp_path, "night2", 2, rng, slower={"StartContainer": 1.3})
    result = nightly_check(cand, tmp_path, history=7, threshold=0.05)
    verdicts = {r["op"]: r["verdict"] for r in result["rows"]}
    assert verdicts["StartContainer"] == "too few nights" and result["regressions"] == 0


def test_a_change_inside_the_spread_between_nights_is_not_confirmed(tmp_path):
    rng = np.random.default_rng(6)
    # Nights that drift as a whole by ±12%: tonight's +10% is inside what the nights already do.
    for day, drift in enumerate([0.88, 1.0, 1.12, 0.95, 1.05], start=1):
        make_run(tmp_path, f"n{day}", day, rng, slower=dict.fromkeys(OPS, drift))
    cand = make_run(tmp_path, "tonight", 9, rng, slower=dict.fromkeys(OPS, 1.10))
    result = nightly_check(cand, tmp_path, history=7, threshold=0.05)
    assert result["regressions"] == 0
    assert all(r["verdict"] != "regression" for r in result["rows"])
    assert all(r["nights"] == 5 for r in result["rows"])


def test_runs_of_two_versions_compare_only_when_asked_and_name_both_versions(tmp_path):
    rng = np.random.default_rng(5)
    old = make_run(tmp_path, "old", 1, rng, stacks=("containerd@1.6.20",))
    new = make_run(tmp_path, "new", 2, rng, stacks=("containerd@2.4.2",), slower={"StartContainer": 0.7})
    assert compare_dirs(old, new).empty  # versions are part of the target
    frame = compare_dirs(old, new, across_versions=True)
    assert set(frame["stack"]) == {"containerd@1.6.20→2.4.2"}
    assert frame.set_index("op").loc["StartContainer", "verdict"] == "improvement"
    both = make_run(tmp_path, "both", 3, rng, stacks=("containerd@2.4.2", "containerd@1.6.20"))
    with pytest.raises(ValueError, match="several versions of one stack"):
        compare_dirs(old, both, across_versions=True)
