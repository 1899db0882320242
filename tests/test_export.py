"""The exports on a real kept run (results/kept), each read back with its format's own reader or rules."""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

from bench import cli
from bench.controller import export, stats
from bench.controller.results import load_run

KEPT = Path(__file__).resolve().parents[1] / "results" / "kept"
DEFAULT_RUN = "20261203T214236Z-quick-local-032a"


@pytest.fixture
def run(tmp_path):
    dst = tmp_path / DEFAULT_RUN
    shutil.copytree(KEPT / DEFAULT_RUN, dst)
    return dst


def test_openmetrics_parses_with_the_reference_parsers_and_holds_each_ops_quantiles(run):
    assert cli.main(["export", str(run), "--format", "openmetrics", "--out", str(run / "hb.prom")]) == 0
    text = (run / "hb.prom").read_text()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}
    assert set(families) == {
        "hopbench_run",
        "hopbench_run_timestamp_seconds",
        "hopbench_run_complete",
        "hopbench_op_latency_seconds",
        "hopbench_op_samples",
        "hopbench_op_failed",
    }
    assert families["hopbench_op_latency_seconds"].unit == "seconds"
    # node_exporter's textfile collector reads the Prometheus text format: the same lines parse there.
    assert {f.name for f in prometheus_families(text)} >= {"hopbench_op_latency_seconds", "hopbench_op_samples"}
    meta, samples = load_run(run)
    summary = stats.summarize(samples)
    want = summary[(summary["stack"] == "crio@1.36.3") & (summary["op"] == "CreateContainer")]
    want = want[want["concurrency"] == 1].iloc[0]
    got = {
        s.labels["quantile"]: s.value
        for s in families["hopbench_op_latency_seconds"].samples
        if s.labels["stack"] == "crio@1.36.3" and s.labels["op"] == "CreateContainer" and s.labels["concurrency"] == "1"
    }
    assert got["0.5"] == pytest.approx(want["p50_ms"] / 1e3, rel=1e-6)
    assert got["0.99"] == pytest.approx(want["p99_ms"] / 1e3, rel=1e-6)
    n = {
        s.labels["op"]: s.value
        for s in families["hopbench_op_samples"].samples
        if s.labels["stack"] == "crio@1.36.3" and s.labels["concurrency"] == "1"
    }
    assert n["RunPodSandbox"] == 30
    (stamp,) = families["hopbench_run_timestamp_seconds"].samples
    assert stamp.value > 1.7e9
    (info,) = families["hopbench_run"].samples
    assert info.labels["run_id"] == meta["run_id"] and info.labels["commit"] == meta["harness"]["commit"]
    # Only the info series names the run: the op series keep their labels from one night to the next.
    assert all("run_id" not in s.labels for f in families.values() if f.name != "hopbench_run" for s in f.samples)


def test_openmetrics_escapes_label_values_and_flags_regressions():
    meta = {"run_id": 'r"1', "started_at": "2026-12-03T00:00:00+00:00", "status": "failed", "node": "n\\1"}
    samples = pd.DataFrame(
        {
            "node": ["n\\1"] * 3,
            "stack": ['containerd"x'] * 3,
            "handler": ["runc"] * 3,
            "level": ["cri"] * 3,
            "op": ["Run\nPod"] * 3,
            "concurrency": [1] * 3,
            "warmup": [False] * 3,
            "ok": [True, True, False],
            "duration_ns": [1_000_000, 3_000_000, 0],
        }
    )
    nightly = {
        "rows": [
            {"stack": "a", "handler": "runc", "level": "cri", "concurrency": 1, "op": op, "verdict": verdict}
            for op, verdict in (("X", "regression"), ("Y", "no clear change"))
        ]
    }
    families = {f.name: f for f in openmetrics_families(export.openmetrics(meta, samples, nightly))}
    (complete,) = families["hopbench_run_complete"].samples
    assert complete.value == 0
    lat = families["hopbench_op_latency_seconds"].samples[0]
    assert lat.labels["stack"] == 'containerd"x' and lat.labels["op"] == "Run\nPod" and lat.labels["node"] == "n\\1"
    failed = families["hopbench_op_failed"].samples[0]
    assert failed.value == 1
    flags = {s.labels["op"]: s.value for s in families["hopbench_regression"].samples}
    assert flags == {"X": 1, "Y": 0}


def test_kube_burner_documents_have_its_fields_and_the_runs_figures(run):
    assert cli.main(["export", str(run), "--format", "kube-burner"]) == 0
    docs = json.loads((run / f"{export.KUBE_BURNER_METRIC}.json").read_text())
    meta, samples = load_run(run)
    measured = samples[samples["ok"] & ~samples["warmup"]]
    groups = measured.groupby(["stack", "handler", "level", "concurrency", "op"]).ngroups
    cri_targets = measured[measured["level"] == "cri"]["stack"].nunique()
    assert len(docs) == groups + 2 * cri_targets  # one per target/level/concurrency/op, plus the pod sums
    for doc in docs:
        assert set(doc) == {
            "quantileName", "uuid", "P99", "P95", "P50", "max", "avg", "timestamp", "metricName", "jobName",
            "metadata",
        }  # fmt: skip
        assert doc["metricName"] == export.KUBE_BURNER_METRIC and doc["jobName"] == "quick"
        assert uuid.UUID(doc["uuid"]) == uuid.UUID(export.run_uuid(meta["run_id"]))
        assert doc["P50"] <= doc["P95"] <= doc["P99"] <= doc["max"]
        assert doc["timestamp"].endswith("Z")
    doc = next(
        d
        for d in docs
        if d["quantileName"] == "StopContainer"
        and d["metadata"]["stack"] == "docker@29.8.1-dev"
        and d["metadata"]["concurrency"] == 2
    )
    mine = measured[(measured["stack"] == "docker@29.8.1-dev") & (measured["op"] == "StopContainer")]
    ms = mine[mine["concurrency"] == 2]["duration_ns"].to_numpy(float)
    assert doc["P50"] == pytest.approx(np.percentile(ms / 1e6, 50), abs=1e-3)
    assert doc["metadata"]["samples"] == len(ms) and "dockerd" in doc["metadata"]["versions"]
    start = [d for d in docs if d["quantileName"] == "PodStartup"]
    assert {d["metadata"]["target"] for d in start} == {
        "containerd@2.4.2/runc",
        "crio@1.36.3/runc",
        "docker@29.8.1-dev/runc",
    }
    assert all(d["metadata"]["samples"] == 30 for d in start)


def test_csv_holds_every_sample(run):
    assert cli.main(["export", str(run), "--format", "csv", "--out", str(run / "s.csv")]) == 0
    _, samples = load_run(run)
    with (run / "s.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(samples) and set(rows[0]) == set(samples.columns)
    assert sum(int(r["duration_ns"]) for r in rows) == int(samples["duration_ns"].sum())


def test_perfdata_without_level_kube_is_a_clear_error(run, capsys):
    assert cli.main(["export", str(run), "--format", "perfdata"]) == 2
    assert "needs level kube" in capsys.readouterr().err


def test_perfdata_shape_from_level_kube_samples():
    rows = []
    for it in range(10):
        for op, ms in (("PodScheduled", 5), ("SandboxReady", 300 + it), ("PodReady", 50), ("PodDelete", 900)):
            rows.append(
                {
                    "node": "local",
                    "stack": "containerd@2.4.2",
                    "handler": "runc",
                    "level": "kube",
                    "op": op,
                    "iteration": it,
                    "worker": 0,
                    "concurrency": 1,
                    "warmup": False,
                    "ok": True,
                    "duration_ns": ms * 1_000_000,
                }
            )
    docs = export.perfdata({"run_id": "r1"}, pd.DataFrame(rows))
    ((name, doc),) = docs.items()
    assert name == "PodStartupLatency_PodStartupLatency_containerd-2.4.2-runc_c1_r1.json"
    items = {i["labels"]["Metric"]: i["data"] for i in doc["dataItems"]}
    assert items["create_to_schedule"]["Perc50"] == 5
    assert items["pod_startup"]["Perc50"] == pytest.approx(5 + 304.5 + 50)
    assert items["schedule_to_watch"]["Perc99"] == pytest.approx(np.percentile([350 + i for i in range(10)], 99))


def test_an_unknown_run_or_format_is_refused(tmp_path, capsys):
    assert cli.main(["export", "nope", "--format", "csv", "--results", str(tmp_path)]) == 2
    assert "no such run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", "nope", "--format", "xml"])
