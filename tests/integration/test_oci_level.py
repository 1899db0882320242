"""The oci level: the OCI runtime binary's own create/start/kill/delete on a real bundle."""

from pathlib import Path

import pytest

from bench.controller.hops import differential
from bench.controller.results import load_run, read_jsonl
from bench.ops import OCI_LIFECYCLE_OPS

from .conftest import run_hopbench

pytestmark = pytest.mark.integration


def run_scenario(tmp_path: Path, levels: str, iterations: int, concurrency: str) -> Path:
    """Run a containerd/runc scenario with these levels; return its run folder."""
    scen = tmp_path / "scenario.yaml"
    scen.write_text(
        f"schema: 1\nname: itoci\ntargets: [containerd/runc]\nlevels: {levels}\niterations: {iterations}\n"
        f"warmup: 1\nconcurrency: {concurrency}\n"
    )
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(scen), "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
    return run


def test_oci_level_times_each_runtime_op(provisioned, tmp_path):
    run = run_scenario(tmp_path, "[oci]", 4, "[1, 2]")
    meta, samples = load_run(run)
    assert meta["status"] == "complete"
    assert set(samples["level"]) == {"oci"} and set(samples["stack"]) == {"none"}
    assert set(samples["handler"]) == {"runc"}
    assert samples["ok"].all() and (samples["duration_ns"] > 0).all()
    assert len(samples) == 2 * (4 + 1) * len(OCI_LIFECYCLE_OPS)
    for _, life in samples.groupby(["concurrency", "iteration"]):
        assert list(life.sort_values("start_ns")["op"]) == list(OCI_LIFECYCLE_OPS)
    checks = read_jsonl(run / "checks.jsonl")
    assert len(checks) == 10 and all(c["ok"] for c in checks)


def test_hops_scenario_reports_the_differential_hop_cost(provisioned, tmp_path):
    run = run_scenario(tmp_path, "[cri, oci]", 5, "[1]")
    _, samples = load_run(run)
    table = differential(samples)
    assert set(table["cri op"]) == {"StartContainer", "StopContainer"}
    assert set(table["hop"]) == {"whole stack"}  # cri and oci only: everything above the runtime
    assert (table["CI low"] <= table["CI high"]).all()
    assert (table["n upper"] == 5).all() and (table["n lower"] == 5).all()
    assert "Hop cost between adjacent levels" in (run / "report.html").read_text()
