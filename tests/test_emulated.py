"""A run from a node whose CPU QEMU emulated (a VM node under TCG, bench.controller.lab_vm): its
figures are labelled "emulated: functional, not for comparison" in meta.json, the report and the
exports; compare and the nightly refuse to set it beside runs on real CPUs; the headline makes no
claim from it."""

import json

import numpy as np
import pandas as pd
import pytest

from bench.controller import export, headline
from bench.controller.history import baseline_runs, compare_dirs, list_runs
from bench.controller.run import Run, emulated_nodes
from bench.errors import InputError
from bench.node import nodeinfo

from .test_history import make_run

VM_FACTS = {"virtualization": {"vm": "qemu", "container": "none", "emulated": True, "label": nodeinfo.EMULATED}}


def emulate(run_dir, node="local"):
    """What the runner writes when the node's facts say its CPU is emulated."""
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["nodes"] = {node: {"facts": VM_FACTS}}
    meta["emulated"] = {"label": nodeinfo.EMULATED, "nodes": [node]}
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return run_dir


def test_the_node_tells_whether_its_cpu_is_emulated(monkeypatch):
    answers = {"--vm": "qemu\n", "--container": "none\n"}

    class Done:
        def __init__(self, argv):
            self.stdout = answers[argv[1]]

    monkeypatch.setattr(nodeinfo.subprocess, "run", lambda argv, **kw: Done(argv))
    assert nodeinfo.virtualization() == VM_FACTS["virtualization"]
    answers["--vm"] = "kvm\n"
    assert nodeinfo.virtualization()["emulated"] is False


def test_emulated_nodes_come_from_the_label_or_from_each_nodes_facts():
    assert emulated_nodes({"emulated": {"nodes": ["vm1"]}}) == ["vm1"]
    assert emulated_nodes({"nodes": {"vm1": {"facts": VM_FACTS}, "lab1": {"facts": {}}}}) == ["vm1"]
    assert emulated_nodes({}) == []


def test_compare_refuses_an_emulated_run_beside_a_real_one(tmp_path):
    rng = np.random.default_rng(3)
    real = make_run(tmp_path, "real", 1, rng)
    emu = emulate(make_run(tmp_path, "emu", 2, rng))
    with pytest.raises(InputError, match="emulated.*not compared"):
        compare_dirs(real, emu)
    with pytest.raises(InputError, match="emulated"):
        compare_dirs(emu, real)
    twin = emulate(make_run(tmp_path, "emu2", 3, rng))
    assert not compare_dirs(emu, twin).empty  # two emulated runs: functional against functional


def test_the_nightly_baseline_leaves_out_runs_of_the_other_kind(tmp_path):
    rng = np.random.default_rng(4)
    for day in (1, 2, 3):
        make_run(tmp_path, f"real{day}", day, rng)
    emulate(make_run(tmp_path, "emu4", 4, rng))
    tonight = make_run(tmp_path, "real5", 5, rng)
    assert list(list_runs(tmp_path)["emulated"]) == [False, False, False, True, False]
    base = baseline_runs(tmp_path, Run(tonight).meta, 7)
    assert [p.name for p in base] == ["real3", "real2", "real1"]
    emu = emulate(make_run(tmp_path, "emu6", 6, rng))
    assert [p.name for p in baseline_runs(tmp_path, Run(emu).meta, 7)] == ["emu4"]


def test_the_headline_and_the_exports_carry_the_label(tmp_path):
    rng = np.random.default_rng(5)
    run = Run(emulate(make_run(tmp_path, "emu", 1, rng)))
    h = headline.of(run)
    assert h.findings == [] and len(h.sentences) == 1 and "not for comparison" in h.sentences[0]
    text = export.openmetrics(run.meta, run.samples)
    (info,) = [line for line in text.splitlines() if line.startswith("hopbench_run_info")]
    assert 'emulated="local"' in info
    docs = export.kube_burner(run.meta, run.samples)
    assert docs and all(d["metadata"]["emulated"] == nodeinfo.EMULATED for d in docs)
    (csv,) = export.write(run, "csv", tmp_path / "out.csv")
    assert set(pd.read_csv(csv)["emulated"]) == {nodeinfo.EMULATED}
