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
    steps = [image.Step(ladder.Rung(5 * MB)), image.Step(ladder.Rung(100 * MB, layers=20, compression="zstd"))]
    assert image.ops_of(steps, ("cold", "warm")) == (
        "PullImage cold 5mb-1l-one-gzip",
        "ImageStatus 5mb-1l-one-gzip",
        "PullImage warm 5mb-1l-one-gzip",
        "RemoveImage 5mb-1l-one-gzip",
        "PullImage cold 100mb-20l-one-zstd",
        "ImageStatus 100mb-20l-one-zstd",
        "PullImage warm 100mb-20l-one-zstd",
        "RemoveImage 100mb-20l-one-zstd",
    )
    assert image.ops_of(steps[:1], ("warm",)) == (
        "ImageStatus 5mb-1l-one-gzip",
        "PullImage warm 5mb-1l-one-gzip",
        "RemoveImage 5mb-1l-one-gzip",
    )


def test_every_rung_is_pulled_under_each_link_shape_in_turn_and_a_same_image_is_removed_untimed():
    from bench.scenario import Pull, PullLink, PullRung

    pull = Pull(
        rungs=(PullRung(size_mb=5), PullRung(size_mb=100, same=True)),
        links=(PullLink(rate="10gbit"), PullLink(rate="1gbit", rtt_ms=5)),
    )
    steps = image.steps_of(pull)
    assert [s.label for s in steps] == [
        "5mb-1l-one-gzip at 10gbit",
        "100mb-1l-one-gzip at 10gbit same",
        "5mb-1l-one-gzip at 1gbit+5ms",
        "100mb-1l-one-gzip at 1gbit+5ms same",
    ]
    ops = image.ops_of(steps, ("cold", "warm"))
    assert "RemoveImage 5mb-1l-one-gzip at 1gbit+5ms" in ops
    assert not [op for op in ops if op.startswith("RemoveImage") and op.endswith(" same")]
    # No links: the link as provisioned, the rung's label alone.
    assert [s.label for s in image.steps_of(Pull(rungs=(PullRung(size_mb=5),)))] == ["5mb-1l-one-gzip"]


def test_a_round_runs_its_untimed_work_once_and_a_worker_that_stops_breaks_it_for_the_others():
    import threading

    rnd = image.Round(3, timeout_s=10)
    ran: list[int] = []

    def worker() -> None:
        rnd.meet(lambda: ran.append(1))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ran == [1]

    broken = image.Round(2, timeout_s=10)
    seen: list[str] = []

    def waits() -> None:
        try:
            broken.meet()
        except image.RoundBroken as e:
            seen.append(str(e))

    t = threading.Thread(target=waits)
    t.start()
    broken.barrier.abort()  # what a worker whose op failed does
    t.join(10)
    assert seen == ["another worker of the round stopped"]

    failing = image.Round(1, timeout_s=10)
    with pytest.raises(ZeroDivisionError):
        failing.meet(lambda: 1 / 0)
    assert failing.barrier.broken


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
