"""The concurrency sweep on real daemons: bursts of c lifecycles at once, the agent's own load, the report."""

from __future__ import annotations

import json

import pytest

from bench.controller import summaries, sweep

from .conftest import no_pods_left, run_scenario

pytestmark = pytest.mark.integration


def test_a_sweep_records_throughput_the_agents_queueing_and_a_summary(provisioned, tmp_path):
    run, meta, samples = run_scenario(
        tmp_path,
        "itsweep",
        "targets: [containerd/runc, crio/runc]\nlevels: [cri]\niterations: 8\nwarmup: 0\n"
        "concurrency: [1, 4, 8]\ncontrol: false\n",
    )
    no_pods_left(meta["run_id"])
    table = sweep.throughput(samples)
    assert set(table["concurrency"]) == {1, 4, 8}
    assert (table["per_s"] > 0).all() and (table["lifecycles"] == 8).all()
    # 8 lifecycles: 8 bursts of one at c=1, 2 of four at c=4, 1 of eight at c=8, per target.
    assert dict(zip(table["concurrency"], table["bursts"], strict=False)) == {1: 8, 4: 2, 8: 1}
    load = json.loads((run / "client-load" / "lifecycle.json").read_text())
    assert set(load) == {"1", "4", "8"}
    assert load["8"]["bursts"] == 2 and load["8"]["start_lag_ms"]["n"] == 16  # every worker of both targets
    assert load["8"]["probe_lag_ms"]["n"] > 0 and load["8"]["agent_cores"] > 0
    assert not sweep.saturation(table).empty
    report = (run / "report.md").read_text()
    assert "Concurrency sweep" in report and "saturates at" in report
    # The runner leaves the run's summary for the nightly gate and the trend.
    assert (run / summaries.SUMMARY_FILE).exists()
    assert int(summaries.run_summary(run)["n"].sum()) == int((~samples["warmup"] & samples["ok"]).sum())
