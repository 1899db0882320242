"""The image pulls view (bench/controller/pulls.py) on a run folder written as `hopbench run`
writes one: the samples of level image and the Pull events in pulls.jsonl. The numbers are
planted, so the table's figures can be checked; a real run is tests/integration/test_pull.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench import cli
from bench.controller import pulls
from bench.controller.results import RunStore
from bench.controller.run import Run

MB = 1_000_000


def planted(tmp_path):
    store = RunStore(tmp_path, "r1")
    store.update_meta(
        node="local",
        node_facts={"registry": {"address": "172.30.130.2:5000", "version": "v3.1.2", "shape": {"rate": "1gbit"}}},
    )
    t = 0
    for stack, cold_ms in (("containerd@2.4.2", 200.0), ("crio@1.36.3", 400.0)):
        for i in range(8):
            for op, ms, wire in (
                ("PullImage cold 100mb-1l-one-gzip", cold_ms + i, 37 * MB),
                ("ImageStatus 100mb-1l-one-gzip", 1.0, 0),
                ("PullImage warm 100mb-1l-one-gzip", 10.0 + i, 4000),
                ("RemoveImage 100mb-1l-one-gzip", 5.0, 0),
            ):
                row = {
                    "run_id": "r1",
                    "node": "local",
                    "stack": stack,
                    "handler": "runc",
                    "level": "image",
                    "op": op,
                    "iteration": i,
                    "concurrency": 1,
                    "worker": 0,
                    "warmup": i == 0,
                    "start_ns": t,
                    "duration_ns": int(ms * 1e6),
                    "ok": True,
                    "error": "",
                }
                store.add_sample(row)
                if op.startswith("PullImage"):
                    store.add_record(
                        "pulls.jsonl",
                        {
                            **{k: row[k] for k in ("run_id", "node", "stack", "handler", "iteration", "concurrency")},
                            **{k: row[k] for k in ("worker", "warmup", "op", "start_ns", "duration_ns", "ok")},
                            "image": "172.30.130.2:5000/hopbench/ladder-100mb-1l-one-gzip:s",
                            "rung": "100mb-1l-one-gzip",
                            "mode": op.split()[1],
                            "layers": 2,
                            "blob_bytes": 36 * 1024 * 1024,
                            "wire_bytes": wire,
                            "cpu_s": 0.5,
                        },
                    )
                t += 1
    store.write_parquet()
    store.update_meta(status="complete")
    store.close()
    return Run(store.dir)


def test_the_table_gives_each_stack_and_mode_its_median_throughput_and_bytes(tmp_path):
    rows = pulls.pull_rows(planted(tmp_path)).set_index(["stack", "mode"])
    cold = rows.loc[("containerd@2.4.2", "cold")]
    assert cold["n"] == 7  # the warm-up is not counted
    assert cold["p50 (ms)"] == 204.0
    assert cold["CI low"] <= 204.0 <= cold["CI high"]
    assert abs(cold["MiB/s"] - 36 / 0.204) < 0.01
    assert cold["wire MB"] == 37.0 and cold["layers"] == 2
    assert rows.loc[("crio@1.36.3", "cold")]["MiB/s"] < cold["MiB/s"]
    assert rows.loc[("containerd@2.4.2", "warm")]["wire MB"] == 0.004


def test_the_section_names_the_registry_and_has_the_chart(tmp_path):
    (section,) = pulls.VIEW.render(planted(tmp_path))
    assert section.title == "Image pulls"
    text = " ".join(getattr(b, "text", "") for b in section.blocks)
    assert "v3.1.2 at 172.30.130.2:5000" in text and "link as provisioned: rate 1gbit" in text
    assert any(getattr(b, "src", "").startswith("data:image/png") for b in section.blocks)


def test_a_run_without_level_image_has_no_section(tmp_path):
    store = RunStore(tmp_path, "r2")
    store.update_meta(status="complete")
    store.close()
    assert pulls.VIEW.render(Run(store.dir)) == []


def test_the_headline_names_the_fastest_cold_pull_only_when_the_intervals_say_so(tmp_path):
    from bench.controller import headline

    sentences = headline.of(planted(tmp_path)).sentences
    assert any("Fastest cold pull" in s and "100mb-1l-one-gzip on containerd@2.4.2" in s for s in sentences), sentences
    rows = pulls.pull_rows(planted(tmp_path / "again"))
    rows.loc[rows["stack"] == "crio@1.36.3", ["CI low"]] = 100.0  # overlapping intervals
    assert pulls.pull_sentences(rows) == ["No stack pulls clearly fastest (the intervals overlap): 100mb-1l-one-gzip."]


def test_link_shapes_and_one_image_pulled_together_get_their_own_rows_and_fetch_counts(tmp_path):
    """Ops name the link shape and `same`; a round's wire bytes over the image's say how many
    times the stack fetched the image its two workers pulled together."""
    store = RunStore(tmp_path, "r3")
    store.update_meta(node="local", node_facts={"registry": {"address": "a:5000", "version": "v3.1.2"}})
    t = 0
    for stack, fetched in (("containerd@2.4.2", 1.0), ("crio@1.36.3", 2.0)):
        for op, conc in (
            ("PullImage cold 5mb-1l-one-gzip at 1gbit", 1),
            ("PullImage cold 5mb-1l-one-gzip at 100mbit", 1),
            ("PullImage cold 5mb-1l-one-gzip at 1gbit same", 2),
        ):
            for i in range(8):
                row = {
                    **{"run_id": "r3", "node": "local", "stack": stack, "handler": "runc", "level": "image"},
                    **{"op": op, "iteration": i, "concurrency": conc, "worker": i % conc, "warmup": False},
                    **{"start_ns": t, "duration_ns": int((100 if "100mbit" in op else 10 + i) * 1e6), "ok": True},
                    "error": "",
                }
                t += 1
                store.add_sample(row)
                store.add_record(
                    "pulls.jsonl",
                    {
                        **{k: row[k] for k in ("run_id", "node", "stack", "handler", "iteration", "concurrency")},
                        **{k: row[k] for k in ("worker", "warmup", "op", "start_ns", "duration_ns", "ok")},
                        **{"image": "x", "rung": "5mb-1l-one-gzip", "mode": "cold", "layers": 2},
                        **{"blob_bytes": 2 * MB, "wire_bytes": 2 * MB, "cpu_s": 0.1, "link": op.split()[4]},
                        "same": op.endswith(" same"),
                        "round_wire_bytes": int(fetched * 2 * MB) if conc == 2 else 2 * MB,
                    },
                )
    store.write_parquet()
    store.update_meta(status="complete")
    store.close()
    rows = pulls.pull_rows(Run(store.dir))
    assert sorted(set(zip(rows["link"], rows["same"], rows["concurrency"], strict=True))) == [
        ("100mbit", False, 1),
        ("1gbit", False, 1),
        ("1gbit", True, 2),
    ]
    same = rows[rows["same"]].set_index("stack")["fetches"]
    assert same["containerd@2.4.2"] == 1.0 and same["crio@1.36.3"] == 2.0
    sentences = pulls.pull_sentences(rows)
    assert any("5mb-1l-one-gzip at 1gbit" in x and "5mb-1l-one-gzip at 100mbit" in x for x in sentences), sentences
    assert any("containerd@2.4.2 1.0×" in x and "crio@1.36.3 2.0×" in x for x in sentences), sentences


KEPT = Path(__file__).resolve().parents[1] / "results" / "kept" / "20261206T040045Z-pull-local-d70f"


def test_the_kept_pull_run_has_every_rung_cold_and_warm_and_the_headline_names_the_fastest(tmp_path):
    """The kept run of scenarios/pull.yaml (the whole ladder under two link rates, 8 pulls each,
    three stacks): its table has every rung cold and warm per stack and link with intervals, its
    cold pulls moved the image over the link, an uncompressed 100 MB image (the one whose pull the
    wire bounds) took longer at 1 Gbit/s than at 10 on every stack, and its headline and section
    come out of `hopbench report`."""
    run = tmp_path / KEPT.name
    shutil.copytree(KEPT, run)
    rows = pulls.pull_rows(Run(run))
    assert len(rows) == 3 * 10 * 2 * 2 and (rows["n"] == 8).all()
    assert set(rows["link"]) == {"10gbit", "1gbit"}
    assert rows[["CI low", "CI high"]].notna().all().all()
    cold = rows[rows["mode"] == "cold"]
    assert (cold["wire MB"] >= cold["image MB"]).all()
    plain = cold[cold["image"] == "100mb-1l-one-none"].set_index(["stack", "link"])["p50 (ms)"]
    for stack in cold["stack"].unique():
        # 100 MB at 1 Gbit/s is 0.8 s on the wire alone.
        assert plain[(stack, "1gbit")] > max(800.0, plain[(stack, "10gbit")]), plain
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "Fastest cold pull, by image" in md
    assert "Image pulls" in (run / "report.html").read_text()


def test_the_openmetrics_export_carries_each_pulls_throughput_and_wire_bytes(tmp_path):
    """`hopbench export --format openmetrics` of a run with level image: the pull families parse
    with the reference parser and hold the table's figures."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from bench.controller import export

    run = planted(tmp_path)
    (path,) = export.write(run, "openmetrics", None)
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    speed = {
        (s.labels["stack"], s.labels["mode"]): s.value
        for s in families["hopbench_pull_throughput_bytes_per_second"].samples
    }
    assert abs(speed[("containerd@2.4.2", "cold")] - 36 * 1024 * 1024 / 0.204) < 1
    wire = {
        (s.labels["stack"], s.labels["mode"], s.labels["link"]) for s in families["hopbench_pull_wire_bytes"].samples
    }
    assert ("crio@1.36.3", "warm", "as provisioned") in wire
    assert "hopbench_pull_fetches" not in families  # no image pulled by a round's workers together


PARALLEL = KEPT.parent / "20261206T041935Z-pull-parallel-local-f9fb"


def test_the_kept_parallel_run_shows_each_stack_fetching_a_shared_image_once_and_distinct_ones_each(tmp_path):
    """scenarios/pull-parallel.yaml, kept: at 4 in flight the round's wire bytes are one image's
    when the workers pull one image together (every stack coalesces) and four images' when each
    pulls its own; the four distinct pulls share the node, so each takes longer than one alone."""
    run = tmp_path / PARALLEL.name
    shutil.copytree(PARALLEL, run)
    rows = pulls.pull_rows(Run(run))
    cold = rows[rows["mode"] == "cold"].set_index(["stack", "concurrency", "same"])
    assert len(cold) == 3 * 2 * 2 and (cold["n"] == 12).all()
    for stack in rows["stack"].unique():
        assert abs(cold.loc[(stack, 4, True), "fetches"] - 1.0) < 0.05
        assert abs(cold.loc[(stack, 4, False), "fetches"] - 4.0) < 0.2
        assert cold.loc[(stack, 4, False), "CI low"] > cold.loc[(stack, 1, False), "CI high"]
    sentences = pulls.pull_sentences(rows)
    assert any(s.startswith("One image pulled by every worker") and s.count("1.0×") == 3 for s in sentences)


POD = KEPT.parent / "20261206T050117Z-pull-pod-local-7257"


def test_the_kept_pull_in_pod_start_run_has_the_kubelets_pulls_beside_pod_start_up(tmp_path):
    """scenarios/pull-pod.yaml, kept: every pod's start-up through the kubelet held a 100 MB pull
    (one kubelet_image_pull_duration_seconds observation per pod, warm-up included), and the
    pull's mean fits inside the pod start-up p50 of its stack."""
    from bench.controller import kube

    run = tmp_path / POD.name
    shutil.copytree(POD, run)
    r = Run(run)
    slis = kube.kubelet_slis(kube.scrapes(r), r.samples).set_index("stack")
    start = kube.startup(r.samples).set_index("target")
    for stack in ("containerd@2.4.2", "docker@29.8.1-dev"):
        assert slis.loc[stack, "image_pull_duration n"] == 9
        assert 0 < slis.loc[stack, "image_pull_duration mean (ms)"] < start.loc[f"{stack}/runc", "p50 (ms)"]
    settings = r.meta["node_facts"]["stacks"]["containerd@2.4.2"]["pull"]
    assert settings["transfer.max_concurrent_downloads"] == 3
