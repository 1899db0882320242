"""The headline: sentences generated from the numbers, never claiming what the interval does not support."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.controller import headline
from bench.controller.charts import KNOWN, target_colours
from bench.ops import KUBELET_LIFECYCLE_OPS, POD_LIFECYCLE_OPS


def lifecycles(
    stack: str, medians: dict[str, float], n: int, node: str = "local", seed: int = 0, level: str = "cri"
) -> pd.DataFrame:
    """Samples of `n` measured lifecycles (plus one warm-up) of `stack`/runc at level cri (or
    kubelet), each op lognormal around its median in ms (ops not given: 1 ms)."""
    rng = np.random.default_rng(seed)
    rows = []
    for it in range(n + 1):
        for op in KUBELET_LIFECYCLE_OPS if level == "kubelet" else POD_LIFECYCLE_OPS:
            ms = medians.get(op, 1.0) * float(np.exp(rng.normal(0, 0.05)))
            rows.append(
                {
                    "node": node,
                    "stack": stack,
                    "handler": "runc",
                    "level": level,
                    "op": op,
                    "iteration": it,
                    "concurrency": 1,
                    "warmup": it == 0,
                    "duration_ns": int(ms * 1e6),
                    "ok": True,
                }
            )
    return pd.DataFrame(rows)


def test_a_clear_difference_is_said_with_its_ratio_and_interval():
    samples = pd.concat(
        [
            lifecycles("containerd", {"RunPodSandbox": 100}, 30, seed=1),
            lifecycles("docker", {"RunPodSandbox": 240}, 30, seed=2),
        ]
    )
    h = headline.build(samples, interleaved=True)
    start = [s for s in h.sentences if "starts a pod" in s]
    assert len(start) == 1 and start[0].startswith("docker/runc starts a pod 2.")
    assert "slower than containerd/runc" in start[0] and "same-round pairs" in start[0]
    assert any(s.startswith("Pod start-up") and "containerd/runc is the fastest" in s for s in h.sentences)
    f = next(f for f in h.findings if f.target == "docker/runc" and f.measure == "pod start-up")
    assert 1 < f.ratio_lo < f.ratio < f.ratio_hi and f.paired
    table = h.table()
    assert list(table["target"]) == ["containerd/runc", "docker/runc"]
    assert table.loc[0, "pod start-up × best [95% CI]"] == "best"


def test_an_interval_that_holds_one_reads_no_clear_difference():
    samples = pd.concat([lifecycles("containerd", {}, 30, seed=3), lifecycles("crio", {}, 30, seed=4)])
    h = headline.build(samples, interleaved=False)
    teardown = [s for s in h.sentences if "pod teardown" in s.lower()]
    assert any("no clear difference in pod teardown" in s for s in teardown)
    assert not any("slower than" in s for s in h.sentences)
    assert any("not clearly faster than every other target" in s for s in h.sentences)
    assert any("resampled on its own" in s or "no clear difference" in s for s in h.sentences)


def test_too_few_lifecycles_give_no_ratio_and_no_claim():
    samples = pd.concat([lifecycles("containerd", {}, 30), lifecycles("docker", {"RunPodSandbox": 500}, 4)])
    h = headline.build(samples, interleaved=True)
    assert any("docker/runc: 4 complete lifecycle(s), too few for a ratio" in s for s in h.sentences)
    assert not any("slower than" in s for s in h.sentences)


def test_failed_and_warm_up_lifecycles_are_not_counted():
    samples = lifecycles("containerd", {}, 10)
    samples.loc[(samples["iteration"] == 3) & (samples["op"] == "StartContainer"), "ok"] = False
    life = headline.per_lifecycle(samples, headline.MEASURES["pod start-up"])
    assert sorted(life["iteration"]) == [i for i in range(1, 11) if i != 3]


def test_nodes_are_never_compared_with_each_other():
    samples = pd.concat(
        [
            lifecycles("containerd", {"RunPodSandbox": 100}, 20, node="a"),
            lifecycles("docker", {"RunPodSandbox": 300}, 20, node="a", seed=5),
            lifecycles("containerd", {"RunPodSandbox": 900}, 20, node="b", seed=6),
        ]
    )
    h = headline.build(samples, interleaved=True)
    assert any(s.startswith("On a: docker/runc starts a pod") for s in h.sentences)
    on_b = [s for s in h.sentences if s.startswith("On b:")]
    assert on_b and all("slower" not in s for s in on_b)
    assert "node" in h.table().columns


def test_memory_sentence_claims_the_least_only_when_intervals_do_not_overlap():
    per_pod = pd.DataFrame(
        {
            "target": ["a/runc", "b/runc"],
            "per pod PSS (MB)": [5.0, 9.0],
            "per pod PSS CI low": [4.0, 8.0],
            "per pod PSS CI high": [6.0, 10.0],
        }
    )
    assert "a/runc uses the least memory per pod" in " ".join(headline.memory_sentences(per_pod))
    per_pod.loc[0, "per pod PSS CI high"] = 8.5
    assert "no target clearly uses the least" in " ".join(headline.memory_sentences(per_pod))


def test_colours_follow_the_target_not_its_place_in_the_run():
    one = target_colours(["containerd@2.4.2/runc", "crio@1.36.3/runc"])
    two = target_colours(["docker@29.8.1-dev/runc", "crio@1.36.3/runc", "containerd@2.4.2/runc"])
    assert one["crio@1.36.3/runc"] == two["crio@1.36.3/runc"] == KNOWN[("crio", "runc")]
    both = target_colours(["containerd@1.6.20/runc", "containerd@2.4.2/runc", "node2 containerd@2.4.2/runc"])
    assert both["containerd@2.4.2/runc"] == KNOWN[("containerd", "runc")] == both["node2 containerd@2.4.2/runc"]
    older = both["containerd@1.6.20/runc"]
    assert older != both["containerd@2.4.2/runc"] and sum(int(older[i : i + 2], 16) for i in (1, 3, 5)) > sum(
        int(KNOWN[("containerd", "runc")][i : i + 2], 16) for i in (1, 3, 5)
    )
    assert target_colours(["weird/thing"])["weird/thing"] == target_colours(["weird/thing", "x/y"])["weird/thing"]


def test_the_nightly_trend_draws_each_ops_baseline_band():
    import base64
    import io

    import matplotlib.image

    from bench.controller.nightly import trend_chart

    trend = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(4)],
            "started_at": [f"2026-12-0{i + 1}T02:00:00+00:00" for i in range(4)],
            "stack": "containerd",
            "handler": "runc",
            "level": "cri",
            "concurrency": 1,
            "op": "RunPodSandbox",
            "ms": [100.0, 102.0, 99.0, 130.0],
        }
    )
    key = {"stack": "containerd", "handler": "runc", "level": "cri", "concurrency": 1, "op": "RunPodSandbox"}
    base = pd.DataFrame([{**key, "p50_a_ms": 100.3}])

    def pixels(uri: str):
        return matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")

    with_band, without = pixels(trend_chart(trend, base, 0.10)), pixels(trend_chart(trend))
    assert with_band.shape[1] == without.shape[1]
    # The band tints the plot area: more pixels differ from white with it than without.
    tinted = lambda img: int(((img[..., :3] < 0.99).any(axis=-1)).sum())  # noqa: E731
    assert tinted(with_band) > tinted(without) + 1000
