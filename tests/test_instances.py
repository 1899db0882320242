"""Stack instances at several versions: naming, version order, target matching and the upgrade table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench import stacks
from bench.controller import upgrade
from bench.node.targets import match_targets


def describe(tmp_path, kind: str, version: str, default: bool, handlers=("runc", "crun"), **more) -> stacks.Stack:
    path = tmp_path / f"{kind}-{version}.json"
    path.write_text(
        json.dumps(
            more
            | {
                "stack": kind,
                "version": version,
                # Ansible's to_nice_json writes a templated boolean as a string.
                "default": "True" if default else "False",
                "cri_endpoint": f"unix:///run/{kind}-{version}.sock",
                "daemons": [],
                "handlers": {h: {"runtime_handler": h} for h in handlers},
                "pause_image": "p",
                "workload_image": "w",
            }
        )
    )
    return stacks.load_stack(path)


def test_an_instance_is_named_after_its_stack_and_version(tmp_path):
    s = describe(tmp_path, "containerd", "2.4.2", True)
    assert (s.name, s.kind, s.version, s.default) == ("containerd@2.4.2", "containerd", "2.4.2", True)
    assert not describe(tmp_path, "containerd", "1.6.20", False).default
    assert stacks.kind_of("containerd@2.4.2") == "containerd" and stacks.kind_of("none") == "none"


def test_components_are_version_commands_and_anything_else_is_refused(tmp_path):
    s = describe(tmp_path, "crio", "1.36.3", True, components={"conmon": ["/x/conmon", "--version"]})
    assert s.components == {"conmon": ("/x/conmon", "--version")} and "components" not in s.extra
    assert describe(tmp_path, "crio", "1.36.3", True).components == {}
    for bad in ({"conmon": "/x/conmon --version"}, {"conmon": []}, ["conmon"], {"conmon": [1]}):
        with pytest.raises(stacks.StackDescriptionError, match=r"crio-1.36.3.json: field 'components': expected"):
            describe(tmp_path, "crio", "1.36.3", True, components=bad)


def test_versions_order_numerically():
    labels = ["29.8.1-dev", "1.6.20", "20.10.24", "2.4.2", "1.10.0"]
    assert sorted(labels, key=stacks.version_key) == ["1.6.20", "1.10.0", "2.4.2", "20.10.24", "29.8.1-dev"]


def test_targets_match_default_instances_unless_a_version_is_named(tmp_path):
    found = [
        describe(tmp_path, "containerd", "2.4.2", True),
        describe(tmp_path, "containerd", "1.6.20", False),
        describe(tmp_path, "docker", "29.8.1-dev", True, ("runc",)),
    ]

    def names(*wanted: str) -> list[str]:
        return [name for name, _, _ in match_targets(list(wanted), found)]

    assert names("containerd/runc") == ["containerd@2.4.2/runc"]
    assert names("containerd@1.6.20/runc") == ["containerd@1.6.20/runc"]
    assert names("containerd@1.6*/runc", "containerd@*/runc") == ["containerd@1.6.20/runc", "containerd@2.4.2/runc"]
    assert names("all") == ["containerd@2.4.2/runc", "containerd@2.4.2/crun", "docker@29.8.1-dev/runc"]
    assert len(names("all@*")) == 5
    # A pattern that matches nothing comes back once, without a stack, so it is reported.
    assert match_targets(["crio/runc", "containerd@3*/runc"], found) == [
        ("crio/runc", None, "runc"),
        ("containerd@3*/runc", None, "runc"),
    ]


def lifecycles(stack: str, scale: float, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    base = {"RunPodSandbox": 60.0, "CreateContainer": 6.0, "StartContainer": 45.0, "StopContainer": 30.0}
    rows = []
    for i in range(n):
        for op, ms in base.items():
            rows.append(
                {
                    "stack": stack,
                    "handler": "runc",
                    "level": "cri",
                    "op": op,
                    "iteration": i,
                    "concurrency": 1,
                    "warmup": False,
                    "ok": True,
                    "duration_ns": int(ms * scale * rng.uniform(0.95, 1.05) * 1e6),
                }
            )
    return rows


def test_upgrade_table_sets_newer_against_older_with_an_interval():
    samples = pd.DataFrame(
        lifecycles("containerd@1.6.20", 1.0, 30, 1)
        + lifecycles("containerd@2.4.2", 0.8, 30, 2)
        + lifecycles("docker@29.8.1-dev", 1.0, 30, 3)  # one docker version: no pair
    )
    t = upgrade.version_changes(samples)
    assert set(t["stack"]) == {"containerd"}
    assert set(zip(t["from"], t["to"], strict=True)) == {("1.6.20", "2.4.2")}
    start = t[t["op"] == "StartContainer"].iloc[0]
    assert 0.75 < start["ratio"] < 0.85 and start["CI high"] < 1 and start["verdict"] == "improvement"
    pod_start = t[t["op"] == "pod start"].iloc[0]
    assert abs(pod_start["p50 to (ms)"] / pod_start["p50 from (ms)"] - 0.8) < 0.05
    assert "faster after the upgrade" in upgrade.sentence(pod_start)


def test_upgrade_sentence_says_no_clear_difference_when_the_interval_straddles_one():
    samples = pd.DataFrame(lifecycles("docker@20.10.24", 1.0, 30, 4) + lifecycles("docker@29.8.1-dev", 1.0, 30, 5))
    t = upgrade.version_changes(samples)
    row = t[t["op"] == "pod start"].iloc[0]
    assert row["CI low"] <= 1 <= row["CI high"]
    assert "no clear difference" in upgrade.sentence(row)
    # docker 20.10.24 is the older version although "2" < "20" < "29" as strings too: order is numeric.
    assert (row["from"], row["to"]) == ("20.10.24", "29.8.1-dev")


def test_a_handler_the_stack_runs_only_off_cri_gets_no_cri_preflight(tmp_path, monkeypatch):
    """Docker's crun (dockerd's runtime, level engine only): a CRI preflight pod would run
    cri-dockerd's one handler, runc, and say nothing of crun; runc still gets its preflight."""
    from bench.node import targets

    path = tmp_path / "docker.json"
    path.write_text(
        json.dumps(
            {
                "stack": "docker",
                "version": "29.8.1-dev",
                "cri_endpoint": "unix:///nonexistent.sock",
                "daemons": [],
                "handlers": {
                    "runc": {"runtime_handler": "docker"},
                    "crun": {"runtime_handler": "docker", "levels": ["engine"], "reason": "cri-dockerd serves one"},
                },
                "pause_image": "p",
                "workload_image": "w",
            }
        )
    )
    stack = stacks.load_stack(path)
    tried: list[str] = []
    monkeypatch.setattr(targets, "preflight", lambda s, h, t: tried.append(h.name) or "")
    status = {stack.name: (True, "", {})}
    crun, _ = targets._info("docker/crun", stack, "crun", status, 5.0)
    runc, _ = targets._info("docker/runc", stack, "runc", status, 5.0)
    assert crun.available and runc.available and tried == ["runc"]
    assert crun.reason == "runs at level engine only: cri-dockerd serves one"
