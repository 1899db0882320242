"""The hop decomposition on a small real run kept in results/kept (recorded on this machine kind)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.controller import hops, report
from bench.controller.results import load_run, read_jsonl
from bench.node.split import PARTS, Call, OpWindow, parts

KEPT = Path(__file__).resolve().parents[1] / "results" / "kept" / "20261127T022512Z-hopskept-local-9e48"


@pytest.fixture
def run(tmp_path):
    dest = tmp_path / KEPT.name
    shutil.copytree(KEPT, dest)  # load_run and the report write next to the journals
    return dest


def test_recorded_split_rows_add_up_and_are_rederived_from_the_recorded_calls(run):
    splits = read_jsonl(run / "splits.jsonl")
    calls = read_jsonl(run / "calls.jsonl")
    assert len(splits) == 2 * 5 * 7  # two targets, 5 lifecycles, 7 CRI ops each
    for row in splits:
        assert sum(row[f"{p}_ns"] for p in PARTS) == row["duration_ns"]
        mine = [
            Call(c["kind"], c["entry_ns"], c["fork_ns"], c["exit_ns"], c["status"], c["command"], "")
            for c in calls
            if (c["stack"], c["iteration"], c["op"]) == (row["stack"], row["iteration"], row["op"])
        ]
        window = OpWindow(row["op"], row["start_ns"], row["start_ns"] + row["duration_ns"])
        assert parts(window, mine) == {p: row[f"{p}_ns"] for p in PARTS}
        assert sorted(row["calls"].split()) == sorted(f"{c.kind}:{c.command}" for c in mine)


def test_recorded_split_table_sums_the_part_medians(run):
    table = hops.split_table(pd.DataFrame(read_jsonl(run / "splits.jsonl"))).set_index(["target", "cri op"])
    for (_, _), row in table.iterrows():
        assert row["sum of parts (ms)"] == pytest.approx(sum(row[f"{p} (ms)"] for p in PARTS))
        assert row["gap %"] == pytest.approx(100 * (row["sum of parts (ms)"] - row["op p50 (ms)"]) / row["op p50 (ms)"])
    # Ops that never reach the runtime are all "before"; StartContainer runs create and start.
    assert table.loc[("containerd/runc", "CreateContainer"), "before (ms)"] == pytest.approx(
        table.loc[("containerd/runc", "CreateContainer"), "op p50 (ms)"]
    )
    for target in ("containerd/runc", "docker/runc"):
        assert table.loc[(target, "StartContainer"), "runtime calls"] == "oci:create oci:start"
        assert table.loc[(target, "RunPodSandbox"), "network (ms)"] > 0


def test_recorded_differential_matches_the_level_medians(run):
    _, samples = load_run(run)
    diff = hops.differential(samples)
    lat = hops.latencies(samples).set_index(["target", "cri op", "level"])["p50 (ms)"]
    row = diff[(diff["target"] == "docker/runc") & (diff["cri op"] == "StartContainer") & (diff["hop"] == "dockerd")]
    (row,) = row.to_dict("records")
    assert row["upper p50 (ms)"] == lat[("docker/runc", "StartContainer", "engine")]
    assert row["lower p50 (ms)"] == lat[("docker/runc", "StartContainer", "containerd")]
    assert row["hop cost (ms)"] == pytest.approx(row["upper p50 (ms)"] - row["lower p50 (ms)"])
    assert row["CI low"] <= row["hop cost (ms)"] <= row["CI high"]
    # The oci level is shared: the same runtime medians under both stacks.
    oci = lat.xs("oci", level="level")
    assert np.isclose(oci[("docker/runc", "StartContainer")], oci[("containerd/runc", "StartContainer")])


def test_report_of_the_recorded_run_has_the_hop_sections(run):
    html = report.build_report(run).read_text()
    for heading in (
        "The same work at each level",
        "Hop cost between adjacent levels",
        "Where each CRI op",
        "What recording the calls costs",
        "Cumulative distributions",
    ):
        assert heading in html
    assert "data:image/png;base64," in html
