"""The cli level: each stack's own CLI timed by real hyperfine runs, in the same results."""

import json
from pathlib import Path

import pytest

from bench.controller.results import load_run

from .conftest import run_hopbench

pytestmark = pytest.mark.integration


def test_cli_scenario_measures_every_available_stack(provisioned, tmp_path):
    scen = tmp_path / "cli.yaml"
    scen.write_text(
        "schema: 1\nname: itcli\ntargets: all\nlevels: [cri, cli]\niterations: 3\nwarmup: 1\nconcurrency: [1]\n"
    )
    results = tmp_path / "results"
    proc = run_hopbench("run", "--scenario", str(scen), "--results", str(results), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list(results.iterdir())
    meta, samples = load_run(run)
    assert meta["tools"]["hyperfine"].startswith("hyperfine")
    available = [t for t in meta["targets"] if t["available"]]
    cli = samples[samples["level"] == "cli"]
    assert cli["ok"].all() and (cli["duration_ns"] > 0).all()
    ops = {(r.stack, r.op) for r in cli.itertuples()}
    for t in available:
        assert (t["stack"], "crictl run") in ops
    by_kind = {t["kind"]: t["stack"] for t in available}
    assert {"containerd", "docker"} <= set(by_kind)
    assert (by_kind["containerd"], "ctr run") in ops
    assert (by_kind["docker"], "docker run") in ops
    assert ("none", "runc run") in ops
    assert (cli.groupby(["stack", "op"]).size() == 3).all()
    # hyperfine's own export is kept beside the samples.
    exports = list((run / "hyperfine").glob("*.json"))
    assert len(exports) == len(ops)
    assert all(json.loads(p.read_text())["results"] for p in exports)
    report = (run / "report.html").read_text()
    assert "Command line beside the API" in report and "crictl run" in report
    # crictl's pods are gone, and so are the files kubelet would have removed.
    assert not list(Path("/var/log/hopbench/pods").glob(f"*{meta['run_id'][-8:]}*"))
