"""The citation block and the decision-record section, on a real kept run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import cli
from bench.controller import cite

KEPT = Path(__file__).resolve().parents[1] / "results" / "kept" / "20261203T214236Z-quick-local-032a"


@pytest.fixture
def run(tmp_path):
    dst = tmp_path / KEPT.name
    shutil.copytree(KEPT, dst)
    return dst


def test_the_citation_names_the_run_its_versions_and_the_commands_and_never_changes():
    meta = json.loads((KEPT / "meta.json").read_text())
    text = cite.citation(meta)
    assert text == cite.citation(json.loads((KEPT / "meta.json").read_text()))
    assert meta["run_id"] in text and meta["scenario"]["sha256"] in text
    assert f"git checkout {meta['harness']['commit']}" in text and "hopbench provision" in text
    for t in meta["targets"]:
        line = next((x for x in text.splitlines() if x.startswith(f"target {t['target']}:")), None)
        if t["available"]:
            assert line and all(v in line for v in t["versions"].values()), t["target"]
        else:
            assert line is None, f"{t['target']} was not available and is not cited"
    assert "uncommitted" not in text
    assert "uncommitted changes" in cite.citation({**meta, "harness": {**meta["harness"], "dirty": True}})


def test_report_md_carries_the_citation_and_adr_md_the_decision_record(run, capsys):
    assert cli.main(["report", str(run), "--adr"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(run / "report.html"), str(run / "adr.md")]
    md = (run / "report.md").read_text()
    assert "## Citation" in md and cite.citation(json.loads((run / "meta.json").read_text())) in md
    adr = (run / "adr.md").read_text()
    heads = [line for line in adr.splitlines() if line.startswith("#")]
    assert heads == [
        f"## Container runtime stack: measured evidence (hopbench run {run.name})",
        "### Context",
        "### Options considered",
        "### Evidence",
        "### Consequences",
        "### Citation",
    ]
    assert "starts a pod" in adr and "| target | pod start-up p50 ms [95% CI]" in adr
    assert "- **crio@1.36.3/runc**: cri cri-o 1.36.3" in adr and "crun" not in adr.split("### Evidence")[0]
