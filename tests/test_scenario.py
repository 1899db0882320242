from pathlib import Path

import pytest

from bench.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
schema: 1
name: t
targets: [containerd/runc]
iterations: 3
warmup: 0
concurrency: [1, 2]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_shipped_scenarios_load():
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        s = load_scenario(path)
        assert s.name and s.iterations > 0


def test_good_scenario_fields(tmp_path):
    s = load_scenario(write(tmp_path, GOOD))
    assert s.targets == ("containerd/runc",)
    assert s.concurrency == (1, 2)
    assert s.workload.stop_timeout_s == 30
    assert len(s.sha256) == 64 and s.text == GOOD


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ("iterations: ten", "iterations", "an integer from 1 to"),
        ("iterations: 0", "iterations", "an integer from 1 to"),
        ("iterations: 100000000000000000000000000000", "iterations", "an integer from 1 to 100000"),
        ("concurrency: [1, -2]", "concurrency[1]", "an integer from 1 to"),
        ("concurrency: 100000", "concurrency[0]", "an integer from 1 to 1024"),
        ("regression: {history: 100000000000000000000000000000}", "regression.history", "from 1 to 1000"),
        ("density: {hold_s: .nan}", "density.hold_s", "a finite number of seconds"),
        ("density: {interval_s: .inf}", "density.interval_s", "a finite number of seconds"),
        ("timeout_s: .nan", "timeout_s", "finite number of seconds"),
        ("timeout_s: .inf", "timeout_s", "finite number of seconds"),
        ("targets: [containerd]", "targets[0]", "STACK/HANDLER"),
        ("targets: [podman/runc]", "targets[0]", "a stack among"),
        ("targets: [crio/youki]", "targets[0]", "a handler among"),
        ("targets: [containerd@/runc]", "targets[0]", "STACK@VERSION/HANDLER"),
        ("targets: ['containerd@1 6/runc']", "targets[0]", "VERSION: letters, digits"),
        ("targets: [podman@1.0/runc]", "targets[0]", "a stack among"),
        (
            "levels: [engines]",
            "levels[0]",
            "a level among cri, cri-critest, critest, split, engine, containerd, density, kube, kubelet, dockershim, "
            "image, oci, control, nullcri, cli",
        ),
        ("pull: {rungs: []}", "pull.rungs", "a non-empty list of images"),
        ("pull: {rungs: [{size_mb: 0}]}", "pull.rungs[0].size_mb", "a size in MB above 0"),
        ("pull: {rungs: [{size_mb: 5, compression: brotli}]}", "pull.rungs[0].compression", "one of gzip, zstd, none"),
        ("pull: {rungs: [{size_mb: 5, files: some}]}", "pull.rungs[0].files", "one of one, many"),
        ("pull: {rungs: [{size_mb: 5, layer: 2}]}", "pull.rungs[0].layer", "unknown field"),
        ("pull: {rungs: [{size_mb: 5}, {size_mb: 5.0}]}", "pull.rungs", "distinct images"),
        ("pull: {modes: [hot]}", "pull.modes", "distinct modes from cold, warm"),
        ("pull: {in_pod_start: 1}", "pull.in_pod_start", "true or false"),
        ("pull: {same_image: true}", "pull.same_image", "unknown field"),
        ("pull: {rungs: [{size_mb: 5, same: 1}]}", "pull.rungs[0].same", "true or false"),
        ("pull: {links: {rate: 1gbit}}", "pull.links", "a list of link shapes"),
        ("pull: {links: [{rate: fast}]}", "pull.links[0].rate", "a rate like 1gbit"),
        ("pull: {links: [{rtt_ms: -1}]}", "pull.links[0].rtt_ms", "a round trip in ms"),
        ("pull: {links: [{rate: 1gbit}, {rate: 1gbit, rtt_ms: 0}]}", "pull.links", "distinct link shapes"),
        ("pull: {links: [{delay: 5}]}", "pull.links[0].delay", "unknown field"),
        ("timeout_s: -1", "timeout_s", "a positive, finite number"),
        ("iteration: 3", "iteration", "unknown field"),
        ("workload: {cmd: [x]}", "workload.cmd", "unknown field"),
        ("workload: {command: sleep}", "workload.command", "a list of strings"),
        ("name: 'a b'", "name", "letters, digits"),
        ("density: {steps: [10, 5]}", "density.steps", "strictly increasing"),
        ("density: {steps: [1, 0]}", "density.steps[1]", "an integer from 1 to"),
        ("density: {hold_s: -1}", "density.hold_s", "seconds from 0 to"),
        ("density: {interval_s: 0.001}", "density.interval_s", "seconds from 0.05 to"),
        ("density: {pods: 5}", "density.pods", "unknown field"),
        ("schedule: random", "schedule", "one of interleaved, block"),
        ("seed: -1", "seed", "an integer from 0 to"),
        ("seed: 1.5", "seed", "an integer from 0 to"),
    ],
)
def test_malformed_scenario_names_file_field_and_expectation(tmp_path, change, field, expected):
    key = change.split(":")[0]
    lines = [line for line in GOOD.splitlines() if not line.startswith(key + ":")]
    path = write(tmp_path, "\n".join([*lines, change]) + "\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert str(path) in message
    assert f"field '{field}'" in message
    assert expected in message


def test_wrong_schema_and_bad_yaml(tmp_path):
    with pytest.raises(ScenarioError, match="field 'schema': expected 1, got 2"):
        load_scenario(write(tmp_path, GOOD.replace("schema: 1", "schema: 2")))
    with pytest.raises(ScenarioError, match=r"field '\(document\)': expected valid YAML at line"):
        load_scenario(write(tmp_path, "schema: 1\nname: [unclosed\n"))
    with pytest.raises(ScenarioError, match="a readable scenario file"):
        load_scenario(tmp_path / "missing.yaml")


def test_targets_may_name_instances_by_version(tmp_path):
    text = GOOD.replace("targets: [containerd/runc]", "targets: [containerd@2.4.2/runc, docker@*/runc, all@*]")
    s = load_scenario(write(tmp_path, text))
    assert s.targets == ("containerd@2.4.2/runc", "docker@*/runc", "all@*")


def test_files_that_never_end_or_nest_forever_are_refused_at_the_door(tmp_path):
    with pytest.raises(ScenarioError, match="a regular scenario file"):
        load_scenario("/dev/zero")
    big = write(tmp_path, GOOD + "#" * (1 << 20))
    with pytest.raises(ScenarioError, match="at most 1048576 bytes"):
        load_scenario(big)
    deep = write(tmp_path, GOOD + "description: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ScenarioError, match=r"field '\(document\)'"):
        load_scenario(deep)
