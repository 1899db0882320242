"""The hyperfine wrapper on real commands, and its parsing of hyperfine's real JSON output."""

import json
import shutil
import subprocess

import pytest

from bench.node import hyperfine
from bench.node.hyperfine import Benchmark, HyperfineError


def test_times_a_real_command_and_parses_its_export(tmp_path):
    marker = tmp_path / "prepared"
    bench = Benchmark("sleep", ("sleep", "0.02"), prepare=f"touch {marker}", cleanup=f"rm -f {marker}")
    result, raw = hyperfine.run(bench, runs=5, warmup=1)
    assert result.command == "sleep 0.02"
    assert len(result.times_s) == 5
    assert all(0.015 < t < 2.0 for t in result.times_s)
    assert result.exit_codes == [0] * 5
    assert not marker.exists()  # cleanup ran after the last run
    assert json.loads(raw)["results"][0]["command"] == "sleep 0.02"


def test_a_failing_command_names_the_command_and_carries_stderr():
    with pytest.raises(HyperfineError) as err:
        hyperfine.run(Benchmark("false", ("false",)), runs=2, warmup=0)
    message = str(err.value)
    assert "on: false" in message
    assert "non-zero exit code" in message


def test_a_missing_binary_is_reported_with_the_command():
    with pytest.raises(HyperfineError, match="on: /nonexistent/hopbench-tool --x"):
        hyperfine.run(Benchmark("missing", ("/nonexistent/hopbench-tool", "--x")), runs=2, warmup=0)


def test_arguments_with_spaces_reach_the_command_unsplit(tmp_path):
    out = tmp_path / "a b.txt"
    hyperfine.run(Benchmark("touch", ("touch", str(out))), runs=2, warmup=0)
    assert out.exists()


def test_parses_the_legacy_layout_of_debian_hyperfine(tmp_path):
    legacy = shutil.which("hyperfine", path="/usr/bin")
    if legacy is None:
        pytest.skip("Debian's hyperfine (1.x) is not installed; `hopbench provision` installs it on nodes")
    export = tmp_path / "legacy.json"
    subprocess.run([legacy, "-N", "--runs", "3", "--export-json", str(export), "true"], check=True, capture_output=True)
    data = json.loads(export.read_text())
    (result,) = hyperfine.parse_export(data)
    assert result.command == "true" and len(result.times_s) == 3
    assert all(t > 0 for t in result.times_s)


def test_parses_both_layouts_from_known_documents():
    v2 = {
        "results": [
            {
                "command": "x",
                "measurements": [
                    {"time_wall_clock": {"value": 12.5, "unit": "millisecond"}, "exit_code": 0},
                    {"time_wall_clock": {"value": 0.02, "unit": "second"}, "exit_code": 1},
                ],
            }
        ]
    }
    (r,) = hyperfine.parse_export(v2)
    assert r.times_s == pytest.approx([0.0125, 0.02]) and r.exit_codes == [0, 1]
    v1 = {"results": [{"command": "y", "times": [0.1, 0.2], "exit_codes": [0, 0]}]}
    (r,) = hyperfine.parse_export(v1)
    assert r.times_s == [0.1, 0.2] and r.exit_codes == [0, 0]
    with pytest.raises(ValueError, match="neither"):
        hyperfine.parse_export({"results": [{"command": "z"}]})
