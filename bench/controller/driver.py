"""The cgroup driver as an axis: what the systemd driver changes against cgroupfs, per stack.

With the systemd driver, runc, CRI-O (conmon's scope) and kubelet ask systemd over D-Bus for a
transient unit per pod and container; with cgroupfs they write the cgroup folders themselves.
A node may run an instance of a stack with each driver side by side (own config, state, socket
and bridge): the instance whose driver is not the node's default carries it in its name,
`containerd@2.4.2+cgroupfs` beside `containerd@2.4.2` (systemd, on a systemd node). Both run in
one interleaved run on one node, so node drift is not part of the ratio.

For each such pair, level and handler, at each concurrency the run has among `CONCURRENCIES`:
the pod start-up and teardown summed per lifecycle, and the ratio of medians systemd /
cgroupfs with its percentile-bootstrap interval. At level cri start-up is RunPodSandbox +
CreateContainer + StartContainer and teardown StopContainer + RemoveContainer + StopPodSandbox
+ RemovePodSandbox; through a kubelet (levels kubelet and kube, whose kubelet runs with its
stack instance's driver and so adds its own pod slice through systemd) start-up is the phases
up to PodReady and teardown PodDelete.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.controller import headline, stats
from bench.controller.render import Bullets, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.ops import KUBE_LIFECYCLE_OPS, KUBELET_LIFECYCLE_OPS
from bench.stacks import kind_of, variant_of, version_of

DRIVERS = ("systemd", "cgroupfs")
CONCURRENCIES = (1, 16)
# The levels the ratio is taken at, and what start-up and teardown sum there (at level cri, the
# headline's).
LEVEL_MEASURES = {
    "cri": headline.MEASURES,
    "kubelet": {"pod start-up": KUBELET_LIFECYCLE_OPS[:2], "pod teardown": KUBELET_LIFECYCLE_OPS[2:]},
    "kube": {"pod start-up": KUBE_LIFECYCLE_OPS[:3], "pod teardown": KUBE_LIFECYCLE_OPS[3:]},
}
COLUMNS = [
    "node",
    "level",
    "stack",
    "handler",
    "concurrency",
    "measure",
    "n systemd",
    "n cgroupfs",
    "p50 systemd (ms)",
    "p50 cgroupfs (ms)",
    "systemd / cgroupfs",
    "CI low",
    "CI high",
]


def driver_pairs(names: list[str]) -> list[tuple[str, str, str]]:
    """(base instance name, systemd instance, cgroupfs instance) for each instance whose twin
    differs only by the driver it names (`containerd@2.4.2+cgroupfs` beside `containerd@2.4.2`)."""
    present = set(names)
    pairs = []
    for name in sorted(present):
        driver = variant_of(name)
        if driver not in DRIVERS:
            continue
        base = f"{kind_of(name)}@{version_of(name).split('+', 1)[0]}"
        if base not in present:
            continue
        other = "cgroupfs" if driver == "systemd" else "systemd"
        by_driver = {driver: name, other: base}
        pairs.append((base, by_driver["systemd"], by_driver["cgroupfs"]))
    return pairs


def per_lifecycle(samples: pd.DataFrame, ops: tuple[str, ...], concurrency: int, level: str = "cri") -> pd.DataFrame:
    """node, stack, handler, iteration, ms: `ops` summed over each complete, successful, measured
    lifecycle of `level` at `concurrency`."""
    s = samples[
        (samples["level"] == level)
        & samples["op"].isin(ops)
        & samples["ok"].astype(bool)
        & ~samples["warmup"].astype(bool)
        & (samples["concurrency"] == concurrency)
    ]
    if s.empty:
        return pd.DataFrame(columns=["node", "stack", "handler", "iteration", "ms"])
    keys = ["node", "stack", "handler", "iteration"]
    per = s.groupby(keys, observed=True)["duration_ns"].agg(["sum", "count"]).reset_index()
    per = per[per["count"] == len(ops)]
    return per.assign(ms=per["sum"] / 1e6)[[*keys, "ms"]]


def driver_changes(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per node, driver pair, handler, concurrency and measure (see the module doc)."""
    if samples.empty:
        return pd.DataFrame(columns=COLUMNS)
    pairs = driver_pairs([str(s) for s in samples["stack"].unique()])
    rows = []
    for level, measures in LEVEL_MEASURES.items():
        rows += level_rows(samples, pairs, level, measures)
    return pd.DataFrame(rows, columns=COLUMNS)


def level_rows(
    samples: pd.DataFrame, pairs: list[tuple[str, str, str]], level: str, measures: dict[str, tuple[str, ...]]
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for concurrency in CONCURRENCIES:
        for measure, ops in measures.items():
            life = per_lifecycle(samples, ops, concurrency, level)
            if life.empty:
                continue
            for base, on_systemd, on_cgroupfs in pairs:
                for (node, handler), g in life.groupby(["node", "handler"], observed=True, sort=True):
                    sd = g[g["stack"] == on_systemd]["ms"].to_numpy(float)
                    cg = g[g["stack"] == on_cgroupfs]["ms"].to_numpy(float)
                    if len(sd) == 0 or len(cg) == 0:
                        continue
                    ratio, lo, hi = stats.ratio_of_medians(cg, sd)
                    rows.append(
                        {
                            "node": str(node),
                            "level": level,
                            "stack": base,
                            "handler": str(handler),
                            "concurrency": concurrency,
                            "measure": measure,
                            "n systemd": len(sd),
                            "n cgroupfs": len(cg),
                            "p50 systemd (ms)": float(np.median(sd)),
                            "p50 cgroupfs (ms)": float(np.median(cg)),
                            "systemd / cgroupfs": ratio,
                            "CI low": lo,
                            "CI high": hi,
                        }
                    )
    return rows


def sentence(row: pd.Series) -> str:
    """One finding in words, with its interval."""
    ratio, lo, hi = float(row["systemd / cgroupfs"]), float(row["CI low"]), float(row["CI high"])
    through = "" if row["level"] == "cri" else f" through level {row['level']}"
    where = f"{row['stack']}/{row['handler']}{through}, {row['concurrency']} pod(s) in flight"
    if not math.isfinite(ratio):
        return f"{where}: {row['measure']}: too few lifecycles for a ratio"
    if lo > 1:
        verdict = "slower with the systemd driver"
    elif hi < 1:
        verdict = "faster with the systemd driver"
    else:
        verdict = "no difference shown (the interval spans 1)"
    return (
        f"{where}: {row['measure']} {ratio:.2f}× [{lo:.2f}, {hi:.2f}] systemd / cgroupfs "
        f"({row['p50 systemd (ms)']:.1f} against {row['p50 cgroupfs (ms)']:.1f} ms p50): {verdict}"
    )


DRIVER_TEXT = (
    "Each stack ran twice on the same node in the same interleaved run: once with the systemd cgroup "
    "driver (runc, conmon and the runtime ask systemd over D-Bus for a transient scope per pod and "
    "container, as on a kubeadm node) and once with cgroupfs (they write the cgroup folders "
    "themselves). Pod start-up and teardown are summed per lifecycle at level cri, and through a "
    "kubelet (levels kubelet and kube: the phases up to PodReady, and PodDelete) whose own driver is "
    "its stack's, so that it also asks systemd for each pod's slice; the ratio is systemd / cgroupfs "
    "of the medians with a 95% percentile-bootstrap interval."
)


def driver_sections(run: Run) -> list[Section]:
    t = driver_changes(run.samples)
    if t.empty:
        return []
    return [
        Section(
            "What the cgroup driver changes (systemd / cgroupfs, p50 ratio, 95% bootstrap CI)",
            [Para(DRIVER_TEXT), Bullets([sentence(r) for _, r in t.iterrows()]), Table(t, 2)],
            summary=True,
        )
    ]


VIEW = View("driver", driver_sections)
