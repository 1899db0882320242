"""The crosscheck on the real stacks: critest itself, hopbench with critest's requests and with
kubelet's, interleaved; the daemons' own counters over their loopback endpoints; nullcri; level control.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench import stacks
from bench.controller import crosscheck
from bench.controller.run import Run
from bench.node import critest
from bench.node.cri import CriClient

from .conftest import no_pods_left, run_scenario

pytestmark = pytest.mark.integration

TARGETS = ("containerd/runc", "crio/runc", "docker/runc")


@pytest.fixture(scope="module")
def crosscheck_run(provisioned, tmp_path_factory):
    body = (
        f"targets: [{', '.join(TARGETS)}]\n"
        "levels: [cri, cri-critest, critest, nullcri]\niterations: 3\nwarmup: 1\nconcurrency: [1]\n"
    )
    return run_scenario(tmp_path_factory.mktemp("crosscheck"), "itcross", body, command="crosscheck")


def test_critest_and_hopbench_with_critests_requests_measure_every_op_on_every_stack(crosscheck_run):
    run, meta, samples = crosscheck_run
    ok = samples[samples["ok"] & ~samples["warmup"]]
    for stack in ("containerd", "crio", "docker"):
        mine = ok[ok["stack"].str.startswith(stack)]
        for level in ("critest", "cri-critest"):
            got = mine[mine["level"] == level].groupby("op").size().to_dict()
            assert got == dict.fromkeys(critest.OPS, 3), (stack, level, got)
    raw = json.loads(next((run / "critest").glob("containerd*.json")).read_text())
    assert len(raw["pod"]) == len(raw["container"]) == 4  # warm-up included: critest's own JSON, kept
    assert meta["tools"]["critest"] == "v1.37.0"
    table = crosscheck.table(samples, crosscheck.daemon_figures(Run(run)))
    assert set(table["target"]) >= {"null/none"} and len(table) >= 4 * len(critest.OPS)
    no_pods_left(meta["run_id"])
    for stack in ("containerd", "crio", "docker"):
        desc = next(s for s in stacks.discover() if s.kind == stack and s.default)
        client = CriClient(desc.cri_endpoint)
        try:
            assert critest.leftovers(client.sandboxes({})) == [], f"critest pods left on {stack}"
        finally:
            client.close()


def test_the_daemons_count_exactly_the_calls_the_client_made(crosscheck_run):
    run, _, _ = crosscheck_run
    figures = {(f["stack"].split("@")[0], f["level"]): f for f in crosscheck.daemon_figures(Run(run))}
    for stack in ("containerd", "crio"):
        f = figures[(stack, "cri-critest")]
        assert f["url"].startswith("http://127.0.0.1:")
        daemon = {crosscheck.op_of(k): v for k, v in f["calls"].items()}
        client = f["client_calls"]
        # 4 lifecycles (1 warm-up + 3), each with two RunPodSandbox (the pod benchmark's and the
        # container's holder) and one CreateContainer: the daemon saw every call the client made.
        for op, calls in (("RunPodSandbox", 8), ("CreateContainer", 4), ("StartContainer", 4)):
            assert daemon[op]["count"] == client[op]["count"] == calls, (stack, op)
            assert 0 < daemon[op]["seconds"] <= client[op]["seconds"], (stack, op)
    docker = figures[("docker", "cri-critest")]
    assert docker["daemon"] == "dockerd" and docker["calls"].get("create", {}).get("count", 0) >= 4


def test_nullcri_gives_both_clients_cost_and_the_limit_and_every_run_probes_it(crosscheck_run):
    run, meta, samples = crosscheck_run
    over = crosscheck.overhead(samples)
    assert list(over["op"]) == list(critest.OPS) and (over["hopbench p50 µs"] > 0).all()
    assert (over["critest p50 µs"] > 0).all()
    limit = json.loads((run / "null" / "limit.json").read_text())
    assert limit["ops_per_s"] > 50 and limit["lifecycles"] > 5
    probe = meta["settings"]["harness@local"]["null_cri_overhead"]["value"]
    assert set(probe) == set(critest.OPS) and all(v["p50_us"] > 0 for v in probe.values())
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "nullcri --listen" not in ps, "nullcri was left running"


def test_every_run_times_the_control_beside_its_targets_and_the_report_states_it(crosscheck_run):
    run, _, samples = crosscheck_run
    ctl = samples[(samples["level"] == "control") & samples["ok"] & ~samples["warmup"]]
    assert set(ctl["op"]) == {"cpu-loop", "syscall-loop", "runc create", "runc start", "runc kill", "runc delete"}
    md = Path(run / "report.md").read_text()
    for title in ("## Measurement conditions", "## Crosscheck: critest, hopbench and the daemons", "Harness cost"):
        assert title in md, title
    assert "Control (level control" in md and "Null-target limit" in md
