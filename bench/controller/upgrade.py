"""Version as an axis: what an upgrade of a stack changes, per op, measured in one run.

A node can run several instances of one stack at different versions side by side (own config,
state, socket and bridge; see bench.stacks). When a run holds samples of two or more instances
of one stack kind over the same handler, this sets each newer instance against the oldest one,
per level, concurrency and op: the ratio of medians (newer / older) with its percentile-bootstrap
interval, a Mann-Whitney U test, and a verdict worded as in `hopbench compare` (bench.controller.stats.compare,
threshold 10%). Because both versions ran in the same run on the same node, node drift between
runs is not part of the ratio.

Two rows per target pair summarise the pod as kubelet sees it, summed per lifecycle at
concurrency 1: "pod start" (RunPodSandbox + CreateContainer + StartContainer) and "pod teardown"
(StopContainer + RemoveContainer + StopPodSandbox + RemovePodSandbox). They matter because
versions move work between ops (CRI-O runs `runc create` inside CreateContainer, containerd
inside StartContainer), so a single op's ratio can mislead where the sum does not.
"""

from __future__ import annotations

import pandas as pd

from bench.controller import stats
from bench.controller.hops import per_lifecycle_ms
from bench.controller.render import Bullets, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.stacks import kind_of, variant_of, version_key, version_of

POD_START = ("RunPodSandbox", "CreateContainer", "StartContainer")
POD_TEARDOWN = ("StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox")
COLUMNS = [
    "stack",
    "handler",
    "level",
    "concurrency",
    "op",
    "from",
    "to",
    "n from",
    "n to",
    "p50 from (ms)",
    "p50 to (ms)",
    "ratio",
    "CI low",
    "CI high",
    "p",
    "verdict",
]


def instance_pairs(samples: pd.DataFrame) -> list[tuple[str, str]]:
    """(older, newer) instance names of one stack kind present in the samples, oldest as baseline."""
    if samples.empty:
        return []
    by_kind: dict[str, list[str]] = {}
    for name in sorted(set(samples["stack"].astype(str).unique())):
        # A variant of a version (its cgroup driver, bench.controller.driver) is no upgrade.
        if name != "none" and version_of(name) and not variant_of(name):
            by_kind.setdefault(kind_of(name), []).append(name)
    pairs = []
    for names in by_kind.values():
        if len(names) < 2:
            continue
        names.sort(key=lambda n: (version_key(version_of(n)), version_of(n)))
        pairs += [(names[0], newer) for newer in names[1:]]
    return pairs


def version_changes(samples: pd.DataFrame, threshold: float = 0.10, alpha: float = 0.05) -> pd.DataFrame:
    """One row per stack kind, handler, level, concurrency and op (plus the pod start and
    teardown sums) for each newer instance against the oldest: see the module docstring."""
    rows = []
    for older, newer in instance_pairs(samples):
        a_all, b_all = samples[samples["stack"] == older], samples[samples["stack"] == newer]
        # The single ops: `hopbench compare`'s own row by row comparison, the two instances
        # taken as one stack so that their rows match.
        per_op = stats.compare_runs(a_all.assign(stack=older), b_all.assign(stack=older), threshold, alpha)
        for r in per_op.itertuples():
            c = {k: getattr(r, k) for k in ("n_a", "n_b", "p50_a_ms", "p50_b_ms", "ratio", "ratio_lo", "ratio_hi")}
            key = (str(r.handler), str(r.level), int(r.concurrency), str(r.op))
            rows.append(_fields(older, newer, *key, {**c, "p_value": r.p_value, "verdict": r.verdict}))
        cri_a, cri_b = a_all[a_all["level"] == "cri"], b_all[b_all["level"] == "cri"]
        for handler in sorted(set(cri_b["handler"]) & set(cri_a["handler"])):
            sa, sb = cri_a[cri_a["handler"] == handler], cri_b[cri_b["handler"] == handler]
            for label, ops in (("pod start", POD_START), ("pod teardown", POD_TEARDOWN)):
                va, vb = per_lifecycle_ms(sa, ops), per_lifecycle_ms(sb, ops)
                if len(va) and len(vb):
                    c = stats.compare(va, vb, threshold, alpha)
                    rows.append(_fields(older, newer, str(handler), "cri", 1, label, c))
    table = pd.DataFrame(rows, columns=COLUMNS)
    if table.empty:
        return table
    # Lifecycle order within each target and level; the pod sums after the single ops.
    sums = ["pod start", "pod teardown"]
    order = [*stats.op_order([op for op in table["op"].unique() if op not in sums]), *sums]
    rank = table["op"].map({op: i for i, op in enumerate(order)})
    keys = ["stack", "to", "handler", "level", "concurrency"]
    return (
        table.assign(_rank=rank)
        .sort_values([*keys, "_rank"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def _fields(
    older: str, newer: str, handler: str, level: str, conc: int, op: str, c: dict[str, object]
) -> dict[str, object]:
    """One table row from a bench.controller.stats.compare result."""
    return {
        "stack": kind_of(older),
        "handler": handler,
        "level": level,
        "concurrency": conc,
        "op": op,
        "from": version_of(older),
        "to": version_of(newer),
        "n from": c["n_a"],
        "n to": c["n_b"],
        "p50 from (ms)": c["p50_a_ms"],
        "p50 to (ms)": c["p50_b_ms"],
        "ratio": c["ratio"],
        "CI low": c["ratio_lo"],
        "CI high": c["ratio_hi"],
        "p": c["p_value"],
        "verdict": c["verdict"],
    }


def sentence(row: pd.Series) -> str:
    """One line per row, never claiming more than the interval supports."""
    where = f"{row['handler']}, {row['level']}, c={row['concurrency']}"
    what = f"{row['stack']} {row['from']} → {row['to']} ({where}) {row['op']}"
    interval = f"{row['ratio']:.2f}× [{row['CI low']:.2f}, {row['CI high']:.2f}]"
    if row["CI low"] <= 1.0 <= row["CI high"]:
        return f"{what}: no clear difference ({interval})"
    direction = "slower" if row["ratio"] > 1 else "faster"
    return f"{what}: {interval}, {direction} after the upgrade"


UPGRADE_TEXT = (
    "Instances of one stack at different versions ran side by side in this run, interleaved in the "
    "same node and time. Ratio = p50 of the newer version / p50 of the older (below 1: faster after "
    "the upgrade), with a 95% percentile-bootstrap interval; the verdict is as in hopbench compare "
    "(clear: interval excludes 1 and Mann-Whitney p < 0.05; regression or improvement beyond 10%). "
    "*pod start* and *pod teardown* sum the CRI ops kubelet waits for, per lifecycle."
)


def upgrade_sections(run: Run) -> list[Section]:
    t = version_changes(run.samples)
    if t.empty:
        return []
    pods = t[t["op"].isin(["pod start", "pod teardown"])]
    return [
        Section(
            "What the upgrade changes (newer version / older, p50 ratio, 95% bootstrap CI)",
            [
                Para(UPGRADE_TEXT),
                Bullets([sentence(r) for _, r in pods.iterrows()]),
                Table(t, 3, summary=t.drop(columns=["p"])),
            ],
            summary=True,
        )
    ]


VIEW = View("upgrade", upgrade_sections)
