"""The cgroup driver as an axis: pairs found by name, ratios systemd / cgroupfs with intervals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import cli
from bench.controller import driver, upgrade
from bench.stacks import variant_of, version_key
from tests.test_headline import lifecycles


def test_twins_pair_by_name_and_are_no_upgrade():
    names = ["containerd@2.4.2", "containerd@2.4.2+cgroupfs", "containerd@1.6.20", "crio@1.36.3", "docker@29.8.1-dev"]
    assert driver.driver_pairs(names) == [("containerd@2.4.2", "containerd@2.4.2", "containerd@2.4.2+cgroupfs")]
    # A twin made on a cgroupfs node would carry +systemd: the ratio keeps its direction.
    assert driver.driver_pairs(["docker@29.8.1-dev", "docker@29.8.1-dev+systemd"]) == [
        ("docker@29.8.1-dev", "docker@29.8.1-dev+systemd", "docker@29.8.1-dev")
    ]
    assert variant_of("containerd@2.4.2+cgroupfs") == "cgroupfs" and variant_of("containerd@2.4.2") == ""
    assert version_key("2.4.2+cgroupfs") == (2, 4, 2)
    assert upgrade.instance_pairs(pd.DataFrame({"stack": names})) == [("containerd@1.6.20", "containerd@2.4.2")]


def test_the_ratio_is_systemd_over_cgroupfs_per_concurrency_with_its_interval():
    slow = {"RunPodSandbox": 30.0, "StartContainer": 20.0}
    fast = {"RunPodSandbox": 15.0, "StartContainer": 10.0}
    samples = pd.concat(
        [
            lifecycles("containerd@2.4.2", slow, 20, seed=1),
            lifecycles("containerd@2.4.2+cgroupfs", fast, 20, seed=2),
            lifecycles("crio@1.36.3", fast, 20, seed=3),
        ]
    )
    many = samples.assign(concurrency=16)
    t = driver.driver_changes(pd.concat([samples, many]))
    assert set(t["concurrency"]) == {1, 16} and set(t["measure"]) == {"pod start-up", "pod teardown"}
    assert set(t["stack"]) == {"containerd@2.4.2"}
    start = t[(t["measure"] == "pod start-up") & (t["concurrency"] == 1)].iloc[0]
    # start-up: 30 + 1 + 20 against 15 + 1 + 10 ms
    assert math.isclose(start["systemd / cgroupfs"], 51 / 26, rel_tol=0.05)
    assert start["CI low"] > 1 and start["n systemd"] == 20
    assert "slower with the systemd driver" in driver.sentence(start)
    teardown = t[(t["measure"] == "pod teardown") & (t["concurrency"] == 1)].iloc[0]
    assert teardown["CI low"] <= 1 <= teardown["CI high"]
    assert "no difference shown" in driver.sentence(teardown)


def test_through_a_kubelet_start_up_is_the_phases_to_pod_ready_and_teardown_pod_delete():
    slow = {"SandboxReady": 300.0, "PodReady": 200.0, "PodDelete": 100.0}
    fast = {"SandboxReady": 150.0, "PodReady": 100.0, "PodDelete": 100.0}
    samples = pd.concat(
        [
            lifecycles("containerd@2.4.2", slow, 20, seed=1, level="kubelet"),
            lifecycles("containerd@2.4.2+cgroupfs", fast, 20, seed=2, level="kubelet"),
        ]
    )
    t = driver.driver_changes(samples)
    assert set(t["level"]) == {"kubelet"} and set(t["concurrency"]) == {1}
    start = t[t["measure"] == "pod start-up"].iloc[0]
    assert math.isclose(start["systemd / cgroupfs"], 500 / 250, rel_tol=0.05) and start["CI low"] > 1
    assert "containerd@2.4.2/runc through level kubelet, 1 pod(s) in flight: pod start-up" in driver.sentence(start)
    teardown = t[t["measure"] == "pod teardown"].iloc[0]
    assert teardown["CI low"] <= 1 <= teardown["CI high"]


def test_no_twins_no_rows():
    samples = lifecycles("containerd@2.4.2", {}, 10)
    assert driver.driver_changes(samples).empty
    assert driver.driver_changes(pd.DataFrame()).empty


KEPT = Path(__file__).resolve().parents[1] / "results" / "kept" / "20261206T002636Z-driver-lab1-2332"


def reported(kept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, str]:
    """A copy of a kept run with its report made by `hopbench report`: the copy, report.md and
    the report's driver section."""
    run = tmp_path / kept.name
    shutil.copytree(kept, run)
    assert cli.main(["report", str(run)]) == 0
    capsys.readouterr()
    md = (run / "report.md").read_text()
    return run, md, md.split("## What the cgroup driver changes", 1)[1].split("\n## ", 1)[0]


def test_a_kept_lab_run_reports_what_the_driver_changes(tmp_path, capsys):
    """A real run on a lab node (systemd as init, systemd driver, cgroupfs twins): its report has
    the driver section, and its metadata each stack's driver and the node's init."""
    run, md, section = reported(KEPT, tmp_path, capsys)
    assert "containerd@2.4.2/runc, 1 pod(s) in flight: pod start-up" in section
    assert "docker@29.8.1-dev/runc, 16 pod(s) in flight: pod teardown" in section
    assert "crio@1.36.3/runc, 1 pod(s) in flight: pod start-up" in section
    facts = json.loads((run / "meta.json").read_text())["node_facts"]
    assert facts["init"] == "systemd"
    assert facts["stacks"]["containerd@2.4.2+cgroupfs"]["cgroup_driver"] == "cgroupfs"
    assert facts["stacks"]["containerd@2.4.2"]["cgroup_driver"] == "systemd"
    assert facts["stacks"]["crio@1.36.3+cgroupfs"]["cgroup_driver"] == "cgroupfs"
    assert facts["stacks"]["crio@1.36.3"]["cgroup_driver"] == "systemd"
    assert "cgroup driver systemd; OCI wrapper in the timed path" in md


KEPT_KUBE = KEPT.parent / "20261205T110737Z-kube-driver-lab1-c9ea"


def test_a_kept_lab_run_through_kubelets_reports_the_driver_per_level(tmp_path, capsys):
    """A real run on a lab node with a kubelet per stack instance, each with its instance's
    driver: the driver section has rows through levels kubelet and kube, and the settings say
    which driver each kubelet ran with."""
    run, _, section = reported(KEPT_KUBE, tmp_path, capsys)
    for level in ("kubelet", "kube"):
        for concurrency in (1, 16):
            where = f"containerd@2.4.2/runc through level {level}, {concurrency} pod(s) in flight"
            assert f"{where}: pod start-up" in section
    settings = json.loads((run / "meta.json").read_text())["settings"]
    assert settings["containerd@2.4.2/runc"]["kubelet.cgroupDriver"]["value"] == "systemd"
    assert settings["containerd@2.4.2+cgroupfs/runc"]["kube.cgroupDriver"]["value"] == "cgroupfs"
    assert "hopbench_kube_containerd_2.4.2.slice" in settings["containerd@2.4.2/runc"]["kube.cgroupDriver"]["why"]
