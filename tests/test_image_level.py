"""Level image's pure parts (bench/node/levels/image.py): the ops a pull section gives, the
registry description it needs, the node counters it reads. The pulls themselves run against
the real registry host and stacks in tests/integration/test_pull.py."""

from __future__ import annotations

import json

import pytest

from bench.errors import ComponentError
from bench.node import ladder
from bench.node.levels import image

MB = ladder.MB


def test_the_ops_follow_the_rungs_and_modes():
    rungs = [ladder.Rung(5 * MB), ladder.Rung(100 * MB, layers=20, compression="zstd")]
    assert image.ops_of(rungs, ("cold", "warm")) == (
        "PullImage cold 5mb-1l-one-gzip",
        "ImageStatus 5mb-1l-one-gzip",
        "PullImage warm 5mb-1l-one-gzip",
        "RemoveImage 5mb-1l-one-gzip",
        "PullImage cold 100mb-20l-one-zstd",
        "ImageStatus 100mb-20l-one-zstd",
        "PullImage warm 100mb-20l-one-zstd",
        "RemoveImage 100mb-20l-one-zstd",
    )
    assert image.ops_of(rungs[:1], ("warm",)) == (
        "ImageStatus 5mb-1l-one-gzip",
        "PullImage warm 5mb-1l-one-gzip",
        "RemoveImage 5mb-1l-one-gzip",
    )


def test_without_a_registry_host_the_level_says_which_playbook_makes_one(tmp_path):
    with pytest.raises(ComponentError, match="provision --playbook registry.yml"):
        image.registry_description(tmp_path / "registry.json")
    (tmp_path / "registry.json").write_text(json.dumps({"address": 5000}))
    with pytest.raises(ComponentError, match="field 'address'"):
        image.registry_description(tmp_path / "registry.json")


def test_the_node_counters_read_and_move_forward():
    before = image.busy_cpu_s()
    sum(i * i for i in range(300_000))
    assert image.busy_cpu_s() >= before > 0
    assert image.rx_bytes("lo") >= 0
    assert image.rx_bytes("no-such-link") == -1


def test_a_scenario_rung_becomes_the_ladders_rung():
    from bench.scenario import PullRung

    rung = ladder.Rung.of(PullRung(size_mb=0.5, layers=2, files="many", compression="none"))
    assert rung == ladder.Rung(500_000, 2, "many", "none")
    assert rung.label == "500000b-2l-many-none"
