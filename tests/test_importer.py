"""`hopbench import critest`: the door (every field checked, nothing left behind) on critest's real JSON
(tests/data/critest, written by critest v1.37.0) and on broken copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import cli
from bench.controller.results import load_run

DATA = Path(__file__).resolve().parent / "data" / "critest"


def test_critests_files_become_a_run_of_level_critest(tmp_path, capsys):
    argv = ["import", "critest", str(DATA), "--stack", "containerd@2.4.2", "--results", str(tmp_path)]
    assert cli.main([*argv, "--version", "containerd=2.4.2"]) == 0
    run = Path(capsys.readouterr().out.strip())
    meta, samples = load_run(run)
    assert meta["targets"][0]["versions"] == {"containerd": "2.4.2"} and meta["status"] == "complete"
    assert set(samples["level"]) == {"critest"} and len(samples) == 2 * (4 + 5)
    pod = json.loads((DATA / "pod_benchmark_data.json").read_text())
    first = samples[(samples["op"] == "RunPodSandbox") & (samples["iteration"] == 0)].iloc[0]
    assert first["duration_ns"] == pod["datapoints"][0]["operationsDurationsNs"][0]
    assert first["start_ns"] == pod["datapoints"][0]["startTime"]
    status = samples[(samples["op"] == "PodSandboxStatus") & (samples["iteration"] == 0)].iloc[0]
    assert status["start_ns"] == first["start_ns"] + first["duration_ns"]
    assert (run / "critest" / "pod_benchmark_data.json").read_text() == (DATA / "pod_benchmark_data.json").read_text()


BAD = [
    ("[]", "expected a JSON object"),
    ('{"operationsNames": "CreatePod"}', "field 'operationsNames'"),
    ('{"operationsNames": ["MakePod"], "datapoints": []}', "unknown op(s) ['MakePod']"),
    ('{"operationsNames": ["CreatePod"], "numParallel": 0, "datapoints": []}', "field 'numParallel'"),
    ('{"operationsNames": ["CreatePod"], "datapoints": {}}', "field 'datapoints': expected a list"),
    ('{"operationsNames": ["CreatePod"], "datapoints": [{"startTime": 1}]}', "expected 1 durations"),
    (
        '{"operationsNames": ["CreatePod"], "datapoints": [{"startTime": 1, "operationsDurationsNs": [-5]}]}',
        "expected an integer >= 0, got -5",
    ),
    ('{"operationsNames": ["CreatePod"], "datapoints": [{"operationsDurationsNs": [5]}]}', "startTime"),
    ("{not json", "cannot read critest's JSON"),
]


@pytest.mark.parametrize(("text", "said"), BAD, ids=[b[1] for b in BAD])
def test_a_broken_file_is_refused_with_file_and_field_and_leaves_no_run(tmp_path, capsys, text, said):
    src = tmp_path / "out"
    src.mkdir()
    (src / "pod_benchmark_data.json").write_text(text)
    shutil.copy(DATA / "container_benchmark_data.json", src)
    results = tmp_path / "results"
    assert cli.main(["import", "critest", str(src), "--stack", "x", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert said in err and "pod_benchmark_data.json" in err, err
    assert not results.exists() or not any(results.iterdir())


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--stack", "../x"], "--stack '../x'"),
        (["--stack", "x", "--node", "a b"], "--node 'a b'"),
        (["--stack", "x", "--version", "containerd"], "expected name=value"),
    ],
)
def test_bad_flags_are_refused(tmp_path, capsys, argv, said):
    assert cli.main(["import", "critest", str(DATA), "--results", str(tmp_path), *argv]) == 2
    assert said in capsys.readouterr().err


def test_a_folder_without_critests_files_or_datapoints_is_refused(tmp_path, capsys):
    assert cli.main(["import", "critest", str(tmp_path), "--stack", "x", "--results", str(tmp_path / "r")]) == 2
    assert "pod_benchmark_data.json" in capsys.readouterr().err
    (tmp_path / "pod_benchmark_data.json").write_text('{"operationsNames": ["CreatePod"], "datapoints": []}')
    assert cli.main(["import", "critest", str(tmp_path), "--stack", "x", "--results", str(tmp_path / "r")]) == 2
    assert "hold no datapoint" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
