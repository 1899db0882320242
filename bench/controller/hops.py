"""Where each op's time goes: differential hop costs across levels, and the in-situ split.

Differential. The same logical work is entered at each level a stack has, top down:

  docker      cri (cri-dockerd) → engine (dockerd) → containerd (dockerd's containerd) → oci
  containerd  cri (containerd's CRI plugin) → containerd (containerd's API) → oci
  crio        cri (CRI-O) → oci

MAPPING names, for each stack and CRI op, the ops of every lower level that do the same
work. The cost of the hop between two adjacent levels that both map the op is

    hop = median(upper ops per lifecycle) - median(lower ops per lifecycle)

with a percentile-bootstrap interval (both sides resampled independently: they come from
independent lifecycles). Only measured (not warm-up), successful, complete lifecycles at
concurrency 1 enter. The OCI level belongs to no stack ("none"): the same binary sits under
every stack, matched by handler.

The mapping is what the in-situ split (level "split") shows each stack doing on this
machine (calls.jsonl records every runtime call and the CRI op it fell in):
  containerd  StartContainer runs the runtime's create and start; StopContainer its kill and,
              once the task has exited, its delete (containerd's exit handler deletes the task
              before StopContainer returns). CreateContainer and RemoveContainer never reach
              the runtime. At the containerd level: ContainerCreate is NewContainer (lease,
              snapshot, record); TaskCreate + TaskStart; TaskKill + TaskWait + TaskDelete.
  docker      the same runtime calls; dockerd creates the containerd container only when the
              container starts, and deletes it when the task has exited, so at the containerd
              level StartContainer is ContainerCreate + TaskCreate + TaskStart and StopContainer
              is TaskKill + TaskWait + TaskDelete + ContainerDelete. At the engine level each CRI
              op is the matching Engine API call; RunPodSandbox is the pause container's create
              and start (the pod network is cri-dockerd's, through CNI, at the cri level only).
  crio        CreateContainer runs the runtime's create, StartContainer its start, StopContainer
              its kill, RemoveContainer its delete (CRI-O's own design; not measured here: CRI-O
              cannot be built on this machine).
StopContainer returns once the process has exited; the runtime's `kill` returns once the
signal is sent: the wait for the exit is part of the hop above the runtime.

What the levels below CRI run is the same image and workload, but not the same OCI spec: the
engine level sends the host config cri-dockerd sends (bench/node/levels/engine.py), while the
containerd and oci levels use hopbench's minimal spec (bench.node.ociprobe.spec: no seccomp filter,
as kubelet's Unconfined; fewer mounts, no capability list, no pod cgroup parent). A hop cost
into those levels therefore also holds what the stack's fuller spec costs the runtime. The
split level has no such gap: it times the runtime inside the stack, on the stack's own spec.

Split. Level "split" cuts each CRI op of a lifecycle into before / network / runtime /
between / after (bench.node.split); the parts of one sample add up to it exactly.
split_table() gives each part's median beside the op's median and the gap between the sum
of the part medians and the op median, which is how far the medians-based breakdown can be
read as a decomposition of the typical op.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.controller import stats
from bench.controller.charts import plt, png
from bench.controller.render import Image, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.ops import PARTS
from bench.stacks import kind_of

LEVEL_ORDER = ("kube", "kubelet", "cri", "engine", "containerd", "oci")

# Levels kube and kubelet time phases of a whole pod, not CRI calls. Level kube's pod start
# (create request -> scheduled -> sandbox ready -> containers running and Ready, seen by a
# watch) and level kubelet's (manifest written -> sandbox ready -> Ready, polled) are what
# kubelet asks RunPodSandbox, CreateContainer and StartContainer for; a deletion (until the
# pod is gone from the API, or the runtime has no ready sandbox of a static pod) is
# StopContainer and StopPodSandbox. kube - kubelet is the API path (API server, scheduler, the
# kubelet's API source and its status writes); kubelet - cri is the kubelet itself (sync loop,
# status manager, the poll).
KUBE_MAPPING: dict[str, dict[str, tuple[str, ...]]] = {
    "pod start": {
        "kube": ("PodScheduled", "SandboxReady", "PodReady"),
        "kubelet": ("SandboxReady", "PodReady"),
        "cri": ("RunPodSandbox", "CreateContainer", "StartContainer"),
    },
    "pod stop": {"kube": ("PodDelete",), "kubelet": ("PodDelete",), "cri": ("StopContainer", "StopPodSandbox")},
}

MAPPING: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "containerd": {
        "CreateContainer": {"cri": ("CreateContainer",), "containerd": ("ContainerCreate",)},
        "StartContainer": {
            "cri": ("StartContainer",),
            "containerd": ("TaskCreate", "TaskStart"),
            "oci": ("create", "start"),
        },
        "StopContainer": {
            "cri": ("StopContainer",),
            "containerd": ("TaskKill", "TaskWait", "TaskDelete"),
            "oci": ("kill", "delete"),
        },
        "RemoveContainer": {"cri": ("RemoveContainer",), "containerd": ("ContainerDelete",)},
    },
    "docker": {
        "RunPodSandbox": {"cri": ("RunPodSandbox",), "engine": ("PauseCreate", "PauseStart")},
        "CreateContainer": {"cri": ("CreateContainer",), "engine": ("ContainerCreate",)},
        "StartContainer": {
            "cri": ("StartContainer",),
            "engine": ("ContainerStart",),
            "containerd": ("ContainerCreate", "TaskCreate", "TaskStart"),
            "oci": ("create", "start"),
        },
        "StopContainer": {
            "cri": ("StopContainer",),
            "engine": ("ContainerStop",),
            "containerd": ("TaskKill", "TaskWait", "TaskDelete", "ContainerDelete"),
            "oci": ("kill", "delete"),
        },
        "RemoveContainer": {"cri": ("RemoveContainer",), "engine": ("ContainerDelete",)},
        "StopPodSandbox": {"cri": ("StopPodSandbox",), "engine": ("PauseStop",)},
        "RemovePodSandbox": {"cri": ("RemovePodSandbox",), "engine": ("PauseDelete",)},
    },
    "crio": {
        "CreateContainer": {"cri": ("CreateContainer",), "oci": ("create",)},
        "StartContainer": {"cri": ("StartContainer",), "oci": ("start",)},
        "StopContainer": {"cri": ("StopContainer",), "oci": ("kill",)},
        "RemoveContainer": {"cri": ("RemoveContainer",), "oci": ("delete",)},
    },
}
for _stack in MAPPING.values():
    _stack.update(KUBE_MAPPING)

# What sits between two adjacent levels, per stack: the name of the hop in tables and charts.
HOP_NAMES: dict[str, dict[tuple[str, str], str]] = {
    "docker": {
        ("cri", "engine"): "cri-dockerd",
        ("engine", "containerd"): "dockerd",
        ("containerd", "oci"): "containerd + shim",
        ("cri", "oci"): "whole stack",
    },
    "containerd": {
        ("cri", "containerd"): "CRI plugin",
        ("containerd", "oci"): "containerd + shim",
        ("cri", "oci"): "whole stack",
    },
    "crio": {("cri", "oci"): "CRI-O + conmon"},
}
for _names in HOP_NAMES.values():
    _names[("kube", "kubelet")] = "API server + scheduler"
    _names[("kubelet", "cri")] = "kubelet"
    _names[("kube", "cri")] = "control plane + kubelet"


def per_lifecycle_ms(samples: pd.DataFrame, ops: tuple[str, ...]) -> np.ndarray:
    """Sum of `ops` in each complete, measured, successful lifecycle at concurrency 1, in ms."""
    s = samples[samples["op"].isin(ops) & samples["ok"] & ~samples["warmup"] & (samples["concurrency"] == 1)]
    per = s.groupby("iteration")["duration_ns"].agg(["sum", "count"])
    values: np.ndarray = (per[per["count"] == len(ops)]["sum"] / 1e6).to_numpy(dtype=float)
    return values


def bootstrap_median_diff(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, rounds: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """median(a) - median(b) with a percentile-bootstrap confidence interval (each side resampled on its own)."""
    lo, hi = stats.median_contrast_ci(np.subtract, np.asarray(a, float), np.asarray(b, float), confidence, rounds, seed)
    return (float(np.median(a) - np.median(b)), lo, hi)


def level_samples(samples: pd.DataFrame, stack: str, handler: str, level: str) -> pd.DataFrame:
    """Samples of one level of a stack; the oci level is shared by all stacks (stack "none")."""
    if level == "oci":
        return samples[(samples["level"] == "oci") & (samples["handler"] == handler)]
    return samples[(samples["level"] == level) & (samples["stack"] == stack) & (samples["handler"] == handler)]


def latencies(samples: pd.DataFrame) -> pd.DataFrame:
    """Per stack, CRI op and level: the mapped ops' median per lifecycle (the cross-level table)."""
    rows = []
    for (stack, handler), _ in samples[samples["level"] == "cri"].groupby(["stack", "handler"], sort=True):
        for op, by_level in MAPPING.get(kind_of(str(stack)), {}).items():
            found = []
            for level in LEVEL_ORDER:
                ops = by_level.get(level)
                if ops is None:
                    continue
                values = per_lifecycle_ms(level_samples(samples, str(stack), str(handler), level), ops)
                if len(values):
                    found.append(
                        {
                            "target": f"{stack}/{handler}",
                            "cri op": op,
                            "level": level,
                            "ops": " + ".join(ops),
                            "p50 (ms)": float(np.median(values)),
                            "n": len(values),
                        }
                    )
            if len(found) > 1:  # one level alone compares nothing
                rows += found
    return pd.DataFrame(rows)


def differential(samples: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per stack/handler/CRI op and pair of adjacent measured levels: the hop's cost with its interval.

    Adjacent means adjacent among the levels measured in this run that map the op; when the
    run has cri and oci only, the hop is the whole stack above the runtime.
    """
    rows = []
    for (stack, handler), _ in samples[samples["level"] == "cri"].groupby(["stack", "handler"], sort=True):
        for op, by_level in MAPPING.get(kind_of(str(stack)), {}).items():
            measured = []
            for level in LEVEL_ORDER:
                if level not in by_level:
                    continue
                values = per_lifecycle_ms(level_samples(samples, str(stack), str(handler), level), by_level[level])
                if len(values) >= 2:
                    measured.append((level, values))
            for (upper, a), (lower, b) in zip(measured, measured[1:], strict=False):
                hop, lo, hi = bootstrap_median_diff(a, b, confidence)
                rows.append(
                    {
                        "target": f"{stack}/{handler}",
                        "cri op": op,
                        "hop": HOP_NAMES.get(kind_of(str(stack)), {}).get((upper, lower), f"{upper} → {lower}"),
                        "upper": f"{upper}: {' + '.join(by_level[upper])}",
                        "lower": f"{lower}: {' + '.join(by_level[lower])}",
                        "upper p50 (ms)": float(np.median(a)),
                        "lower p50 (ms)": float(np.median(b)),
                        "hop cost (ms)": hop,
                        "CI low": lo,
                        "CI high": hi,
                        "n upper": len(a),
                        "n lower": len(b),
                    }
                )
    return pd.DataFrame(rows)


def split_table(splits: pd.DataFrame, tolerance: float = 0.05) -> pd.DataFrame:
    """Per target and CRI op (concurrency 1, measured): median of the op and of each part, and the add-up check.

    `gap %` is (sum of the part medians - op median) / op median; `adds up` says whether
    its size is within `tolerance`.
    """
    if splits.empty:
        return pd.DataFrame()
    s = splits[~splits["warmup"].astype(bool) & (splits["concurrency"] == 1)]
    rows = []
    for (stack, handler, op), g in s.groupby(["stack", "handler", "op"], sort=False):
        total = float(np.median(g["duration_ns"])) / 1e6
        row: dict[str, object] = {"target": f"{stack}/{handler}", "cri op": op, "n": len(g), "op p50 (ms)": total}
        part_sum = 0.0
        for part in PARTS:
            value = float(np.median(g[f"{part}_ns"])) / 1e6
            row[f"{part} (ms)"] = value
            part_sum += value
        row["sum of parts (ms)"] = part_sum
        gap = (part_sum - total) / total if total else float("nan")
        row["gap %"] = 100 * gap
        row["adds up"] = bool(abs(gap) <= tolerance)
        calls = g["calls"].mode()
        row["runtime calls"] = str(calls.iloc[0]) if len(calls) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def trace_overhead(samples: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """What recording the calls costs: each op's median at level split minus at level cri, with its interval."""
    rows = []
    split_rows = samples[samples["level"] == "split"]
    for (stack, handler, op), g in split_rows.groupby(["stack", "handler", "op"], sort=False):
        a = per_lifecycle_ms(g, (str(op),))
        b = per_lifecycle_ms(level_samples(samples, str(stack), str(handler), "cri"), (str(op),))
        if len(a) < 2 or len(b) < 2:
            continue
        diff, lo, hi = bootstrap_median_diff(a, b, confidence)
        rows.append(
            {
                "target": f"{stack}/{handler}",
                "cri op": op,
                "split p50 (ms)": float(np.median(a)),
                "cri p50 (ms)": float(np.median(b)),
                "difference (ms)": diff,
                "CI low": lo,
                "CI high": hi,
            }
        )
    return pd.DataFrame(rows)


LOWER_LEVELS = frozenset({"kube", "kubelet", "engine", "containerd", "oci"})


def hop_costs(run: Run) -> pd.DataFrame:
    """The differential hop costs, once per run (the headline quotes them): level cri and a
    level below or above it must both have run."""
    return run.derived(
        "hop_costs",
        lambda r: differential(r.samples) if "cri" in r.levels and r.levels & LOWER_LEVELS else pd.DataFrame(),
    )


PART_COLOURS = {
    "before": "#9ecae1",
    "network": "#74c476",
    "runtime": "#fd8d3c",
    "between": "#bcbddc",
    "after": "#6baed6",
}


def split_chart(table: pd.DataFrame) -> str:
    """Where each CRI op's time goes: one stacked bar per target and op, parts at their medians."""
    order = {op: i for i, op in enumerate(stats.op_order(list(table["cri op"].unique())))}
    t = table.assign(_o=table["cri op"].map(order)).sort_values(["target", "_o"], ascending=[True, True])
    labels = [f"{target}  {op}" for target, op in zip(t["target"], t["cri op"], strict=True)]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    left = np.zeros(len(t))
    for part in PARTS:
        values = t[f"{part} (ms)"].to_numpy(dtype=float)
        ax.barh(y, values, left=left, color=PART_COLOURS[part], label=part, height=0.7)
        left += values
    ax.scatter(t["op p50 (ms)"], y, marker="|", s=220, color="black", label="op p50", zorder=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("ms (median of each part, stacked; black mark: median of the whole op)")
    ax.legend(ncol=6, fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def hop_sections(run: Run) -> list[Section]:
    """Cross-level latencies, differential hop costs, the in-situ split and its check, the trace's own cost."""
    out: list[Section] = []
    samples, levels = run.samples, run.levels
    if "cri" in levels and levels & LOWER_LEVELS:
        lat = latencies(samples)
        if not lat.empty:
            wide = lat.pivot_table(index=["target", "cri op"], columns="level", values="p50 (ms)", sort=False)
            wide = wide[[lv for lv in LEVEL_ORDER if lv in wide.columns]].reset_index()
            wide.columns.name = None
            out.append(
                Section(
                    "The same work at each level (p50 per lifecycle, ms, concurrency 1)",
                    [
                        Para(
                            "Each cell sums the ops of that level that do what the CRI op does (mapping in "
                            "`bench/controller/hops.py`, checked against the runtime calls the split level "
                            "recorded). `oci` is the runtime binary alone, shared by every stack."
                        ),
                        Table(wide),
                    ],
                )
            )
        diff = hop_costs(run)
        if not diff.empty:
            cols = ["target", "cri op", "hop", "hop cost (ms)", "CI low", "CI high"]
            out.append(
                Section(
                    "Hop cost between adjacent levels (differential, concurrency 1, ms, 95% bootstrap CI)",
                    [
                        Para(
                            "Median of the upper level's ops minus the median of the lower level's, per lifecycle, "
                            "with a 95% percentile-bootstrap interval (both sides resampled). A hop's cost includes "
                            "waiting: StopContainer returns once the process has exited, the runtime's `kill` once "
                            "the signal is sent."
                        ),
                        Table(diff, summary=diff[cols]),
                    ],
                    summary=True,
                )
            )
    if "split" in levels:
        table = split_table(run.splits) if not run.splits.empty else pd.DataFrame()
        if not table.empty:
            worst = table.loc[table["gap %"].abs().idxmax()]
            bad = table[~table["adds up"]]
            verdict = (
                Para(
                    f"Every op's part medians add up to its median within 5% (largest gap {worst['gap %']:+.1f}%, "
                    f"{worst['target']} {worst['cri op']}).",
                    "ok",
                )
                if bad.empty
                else Para(
                    f"{len(bad)} op(s) whose part medians miss the op median by more than 5%: "
                    + ", ".join(f"{r['target']} {r['cri op']} {r['gap %']:+.1f}%" for _, r in bad.iterrows())
                    + ".",
                    "bad",
                )
            )
            cols = ["target", "cri op", "op p50 (ms)", *[f"{p} (ms)" for p in PARTS], "gap %"]
            out.append(
                Section(
                    "Where each CRI op's time goes (in-situ split, concurrency 1, medians, ms)",
                    [
                        Para(
                            "Level `split` repeats the CRI lifecycles with every OCI runtime and CNI plugin call "
                            "timed by the wrapper the stacks run them through (same monotonic clock as the CRI "
                            "call). Each op is cut into: **before** the first call (the CRI server and the daemons "
                            "under it), **network** (CNI calls: the pod network of RunPodSandbox, its teardown), "
                            "**runtime** (inside the OCI runtime's calls), **between** calls (shim and daemon work "
                            "between two calls), **after** the last call. The parts of each sample add up to it "
                            "exactly; the table gives each part's median and whether those medians add up to the "
                            "op's median."
                        ),
                        verdict,
                        Image("stacked split per op", split_chart(table)),
                        Table(table, summary=table[cols]),
                    ],
                    summary=True,
                )
            )
        overhead = trace_overhead(samples)
        if not overhead.empty:
            out.append(
                Section(
                    "What recording the calls costs",
                    [
                        Para(
                            "The same op's median with the trace on (level split) and off (level cri), run one "
                            "after the other in this run: the wrapper forks and waits for the runtime instead of "
                            "exec'ing it while recording."
                        ),
                        Table(overhead),
                    ],
                    level=3,
                )
            )
    return out


VIEW = View("hops", hop_sections)
