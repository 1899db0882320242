"""The real CRI lifecycle through `hopbench run` on every available target, checked sample by sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import stacks
from bench.controller.results import load_run, read_jsonl
from bench.node import kubelet, leftovers
from bench.ops import POD_LIFECYCLE_OPS

from .conftest import default_targets, no_pods_left, run_hopbench, run_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# Targets this machine must be able to measure; others are measured when available. CRI-O is
# installed from the offline mirror beside the repository (../shared/artifacts): where that
# bundle is, crio/runc must run, not skip.
CRIO_BUNDLE = REPO.parent / "shared" / "artifacts" / "cri-o.amd64.v1.36.3.tar.gz"
REQUIRED = {"containerd/runc", "docker/runc"} | ({"crio/runc"} if CRIO_BUNDLE.is_file() else set())


def scenario(
    tmp_path: Path, iterations: int, concurrency: list[int], warmup: int = 1, target: str = "containerd/runc"
) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        f"schema: 1\nname: itest\ntargets: [{target}]\nlevels: [cri]\n"
        f"iterations: {iterations}\nwarmup: {warmup}\nconcurrency: {concurrency}\ntimeout_s: 60\n"
        # These tests count the lifecycle's own samples; level control has its tests (test_crosscheck).
        "control: false\n"
    )
    return path


def targets_json() -> list[dict]:
    out = subprocess.run(hopbench("targets", "--json"), cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def node_targets(provisioned):
    return targets_json()


def hopbench(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("hopbench")), *args]


def only_run(results: Path) -> Path:
    (run,) = list(results.iterdir())
    return run


def test_required_targets_are_available(node_targets):
    defaults = default_targets(node_targets)
    available = {name for name, t in defaults.items() if t["available"]}
    missing = REQUIRED - available
    assert not missing, [t for name, t in defaults.items() if name in missing]


@pytest.mark.parametrize("target", ["containerd/runc", "docker/runc", "containerd/runsc", "crio/runc", "crio/runsc"])
def test_run_measures_the_real_lifecycle(node_targets, tmp_path, target):
    info = default_targets(node_targets)[target]
    if not info["available"]:
        assert target not in REQUIRED
        pytest.skip(f"{target} is unavailable on this node: {info['reason']}")
    results = tmp_path / "results"
    described = [s for s in stacks.discover() if s.name == info["stack"]]
    links_before = leftovers.stale_links(described)
    proc = run_hopbench(
        "run", "--scenario", str(scenario(tmp_path, 4, [1, 2], target=target)), "--results", str(results)
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = only_run(results)
    assert proc.stdout.strip() == str(run / "report.html")
    meta, samples = load_run(run)

    assert meta["status"] == "complete"
    assert meta["failed_checks"] == 0
    assert meta["harness"]["version"]
    assert meta["node_facts"]["kernel"]["release"] == os.uname().release
    (measured,) = meta["targets"]
    # The default instance of the stack, named with its version: containerd@2.4.2/runc.
    assert measured["available"] and measured["target"] == info["target"]
    assert set(samples["stack"]) == {info["stack"]} and info["stack"].startswith(target.split("/")[0] + "@")
    assert (
        measured["versions"]["cri"].split()[0]
        == {"containerd": "containerd", "docker": "docker", "crio": "cri-o"}[target.split("/")[0]]
    )
    if target.startswith("crio/"):  # conmon's version is recorded with CRI-O's
        assert measured["versions"]["conmon"].startswith("conmon version "), measured["versions"]
    assert meta["scenario"]["sha256"] and meta["started_at"] <= meta["ended_at"]

    # Every lifecycle: the seven ops, in order, all ok, each with a real positive duration.
    assert len(samples) == 2 * (4 + 1) * len(POD_LIFECYCLE_OPS)
    assert samples["ok"].all() and (samples["duration_ns"] > 0).all()
    for _, life in samples.groupby(["concurrency", "iteration"]):
        life = life.sort_values("start_ns")
        assert list(life["op"]) == list(POD_LIFECYCLE_OPS)
        ends = (life["start_ns"] + life["duration_ns"]).to_numpy()
        assert (life["start_ns"].to_numpy()[1:] >= ends[:-1]).all()
    assert samples.groupby("concurrency")["warmup"].sum().tolist() == [7, 7]
    # The concurrency-2 lifecycles really overlapped in time.
    c2 = samples[samples["concurrency"] == 2]
    assert set(c2["worker"]) == {0, 1}

    checks = read_jsonl(run / "checks.jsonl")
    assert len(checks) == 10 and all(c["ok"] and c["check"] == "workload-ran" for c in checks)
    report = (run / "report.html").read_text()
    assert "data:image/png;base64," in report and "StartContainer" in report
    no_pods_left(meta["run_id"], (target.split("/")[0],))
    # Nothing the stack made for these pods is left as a dangling link (conmon before 2.1.7 left one
    # per container in CRI-O's attach folder).
    assert leftovers.stale_links(described) == links_before
    assert not any(Path(kubelet.DEFAULT_LOG_ROOT).glob(f"hopbench_hb-{meta['run_id'][-8:]}*"))


def test_interrupt_keeps_samples_and_leaves_no_pod(provisioned, tmp_path):
    results = tmp_path / "results"
    rc, err, run = run_until(
        ["run", "--scenario", str(scenario(tmp_path, 200, [2], warmup=0)), "--results", str(results)],
        results,
        "samples.jsonl",
        lambda text: len(text.splitlines()) >= 20,
        lambda proc: proc.send_signal(signal.SIGINT),
        "20 samples",
    )
    assert rc == 1, err[-3000:]
    meta, samples = load_run(run)
    assert meta["status"] == "interrupted"
    assert len(samples) >= 20
    assert len(samples) < 200 * len(POD_LIFECYCLE_OPS)
    no_pods_left(meta["run_id"])
    events = read_jsonl(run / "events.jsonl")
    assert any("SIGTERM" in e.get("message", "") for e in events)


def test_bad_scenario_fails_before_touching_the_node(provisioned, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nname: bad\niterations: many\n")
    results = tmp_path / "results"
    proc = subprocess.run(
        hopbench("run", "--scenario", str(bad), "--results", str(results)),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    expected = f"{bad}: field 'iterations': expected an integer from 1 to 100000, got 'many'"
    assert expected in " ".join(proc.stderr.split())
    assert not results.exists()


def test_samples_parquet_is_tidy(provisioned, tmp_path):
    """...and --no-report leaves the report to `hopbench report` (what the soak uses)."""
    results = tmp_path / "results"
    subprocess.run(
        hopbench(
            "run", "--scenario", str(scenario(tmp_path, 1, [1], warmup=0)), "--results", str(results), "--no-report"
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    frame = pd.read_parquet(only_run(results) / "samples.parquet")
    for col in (
        "run_id",
        "node",
        "stack",
        "handler",
        "level",
        "op",
        "iteration",
        "concurrency",
        "start_ns",
        "duration_ns",
        "ok",
        "error",
    ):
        assert col in frame.columns
    assert set(frame["level"]) == {"cri"} and set(frame["node"]) == {"local"}
    assert json.loads((only_run(results) / "meta.json").read_text())["samples"] == len(frame)
    assert not (only_run(results) / "report.html").exists()
    subprocess.run(hopbench("report", str(only_run(results))), cwd=REPO, capture_output=True, check=True, timeout=300)
    assert "## Headline" in (only_run(results) / "report.md").read_text()
