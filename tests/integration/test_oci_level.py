"""The oci level: the OCI runtime binary's own create/start/kill/delete on a real bundle."""

import pytest

from bench.levels.oci import OCI_LIFECYCLE_OPS
from bench.results import load_run, read_jsonl

from .conftest import run_hopbench

pytestmark = pytest.mark.integration


def test_oci_level_times_each_runtime_op(provisioned, tmp_path):
    scen = tmp_path / "oci.yaml"
    scen.write_text(
        "schema: 1\nname: itoci\ntargets: [containerd/runc]\nlevels: [oci]\niterations: 4\nwarmup: 1\n"
        "concurrency: [1, 2]\n"
    )
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(scen), "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
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
    scen = tmp_path / "hops.yaml"
    scen.write_text(
        "schema: 1\nname: ithops\ntargets: [containerd/runc]\nlevels: [cri, oci]\niterations: 5\nwarmup: 1\n"
        "concurrency: [1]\n"
    )
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(scen), "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
    _, samples = load_run(run)
    from bench.hops import differential

    table = differential(samples)
    assert set(table["cri op"]) == {"StartContainer", "StopContainer"}
    assert (table["CI low"] <= table["CI high"]).all()
    assert (table["n cri"] == 5).all() and (table["n oci"] == 5).all()
    assert "Hop cost above the OCI runtime" in (run / "report.html").read_text()
