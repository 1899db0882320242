"""Traces from the real daemons: the +traced twins of containerd and CRI-O (site.yml with
hopbench_tracing_twins) export their own spans to the agent's OTLP receiver; our client span per
CRI call carries its traceparent, and each runtime's server span for a call we sent is its child."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import stacks

from .conftest import playbook, run_scenario

pytestmark = pytest.mark.integration

SCENARIO = """\
targets: ["containerd@2.4.2*/runc", "crio@1.36.3*/runc"]
levels: [cri]
iterations: 3
warmup: 1
concurrency: [1]
control: false
tracing: true
"""


@pytest.fixture(scope="module")
def traced(provisioned):
    recap = playbook("site.yml", "-e", "hopbench_tracing_twins=true")
    assert all(h["failed"] == 0 for h in recap.values())
    found = {s.name: s for s in stacks.discover()}
    twins = {n: s for n, s in found.items() if stacks.variant_of(n) == "traced"}
    assert set(twins) == {"containerd@2.4.2+traced", "crio@1.36.3+traced", "docker@29.8.1-dev+traced"}, sorted(found)
    return twins


def test_each_runtimes_span_for_a_call_we_sent_is_a_child_of_our_client_span(traced, tmp_path):
    run, meta, samples = run_scenario(tmp_path, "tracetest", SCENARIO)
    assert samples["ok"].all(), samples[~samples["ok"]][["stack", "op", "error"]].to_string()
    spans = pd.read_parquet(run / "spans.parquet")
    ours = spans[(spans["service"] == "hopbench") & (spans["span_kind"] == "client")]
    theirs = spans[spans["service"] != "hopbench"]
    by_parent = theirs.groupby("parent_span_id")
    for stack in ("containerd@2.4.2+traced", "crio@1.36.3+traced"):
        creates = ours[(ours["stack"] == stack) & (ours["name"] == "CreateContainer")]
        assert len(creates) == 4, (stack, len(creates))
        for _, client in creates.iterrows():
            assert client["span_id"] in by_parent.groups, f"{stack}: no runtime span under our CreateContainer"
            children = by_parent.get_group(client["span_id"])
            assert (children["trace_id"] == client["trace_id"]).all()
            assert (children["start_unix_ns"] >= client["start_unix_ns"]).all()
            assert (children["end_unix_ns"] <= client["end_unix_ns"]).all()
    # The untraced twins sent no span: their calls have none under them.
    for stack in ("containerd@2.4.2", "crio@1.36.3"):
        plain = ours[ours["stack"] == stack]
        assert len(plain) > 0 and not plain["span_id"].isin(theirs["parent_span_id"]).any(), stack
    # Every traced lifecycle's spans arrived before the receiver stopped (none dropped or late).
    infos = [json.loads(line).get("message", "") for line in (run / "events.jsonl").read_text().splitlines()]
    assert any("client span(s) of ours" in m for m in infos), infos
    assert not [m for m in infos if "got no span of their runtime" in m]
    html = (run / "report.html").read_text()
    assert "Traces: the components" in html and "the median pod start-up" in html
