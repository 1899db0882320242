"""What a running pod costs in memory, per target, from a density run (level density).

Input: memory.parquet (one row per process and sweep) and the level's start samples. Only
"hold" sweeps enter (pods started and running, none starting). Per sweep the processes are
summed by group: daemons, shims (per-pod monitors) and pod processes (pause + workload).

  baseline     median of the daemons' sum over the sweeps at 0 pods
  per pod      slope of a least-squares line of (daemons + shims + pods) against the pods
               running, over every hold sweep, with a 95% percentile-bootstrap interval
               (sweeps resampled with replacement); for PSS and for RSS. RSS counts shared
               pages (the same runc/shim binary, libc) once per process, so it overstates;
               PSS splits them among their users: the figure to budget with.
  shim per pod slope of the shims' sum alone (PSS); pod processes per pod likewise
  daemon per pod slope of the daemons' sum: what the daemons grow by per pod
  curve        per step, the median total against the step before, per pod added: the first
               pod (0 -> 1: what the first pod brings, shared pages and the daemons' first
               allocations included) against the marginal pod at each later step, so a cost
               that is not linear (a daemon's caches, a shim per container) shows
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.controller import stats
from bench.controller.charts import plt, png, target_colours
from bench.controller.render import Image, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.levelnames import KUBE_LEVELS

GROUPS = {"daemon": "daemons", "shim": "shims", "pause": "pods", "workload": "pods"}
MB = 1e6


def per_sweep(memory: pd.DataFrame) -> pd.DataFrame:
    """One row per target and hold sweep: pods running and each group's PSS and RSS sums (bytes)."""
    m = memory[memory["phase"] == "hold"].copy()
    if m.empty:
        return pd.DataFrame()
    m["group"] = m["role"].map(GROUPS)
    sums = m.pivot_table(
        index=["target", "sweep", "pods_running"], columns="group", values=["pss", "rss"], aggfunc="sum", fill_value=0
    )
    sums.columns = [f"{group} {kind}" for kind, group in sums.columns]
    out = sums.reset_index()
    for kind in ("pss", "rss"):
        for group in ("daemons", "shims", "pods"):
            if f"{group} {kind}" not in out:
                out[f"{group} {kind}"] = 0
        out[f"total {kind}"] = out[f"daemons {kind}"] + out[f"shims {kind}"] + out[f"pods {kind}"]
    return out


def slope_ci(x: np.ndarray, y: np.ndarray, rounds: int = 4000, seed: int = 0) -> tuple[float, float, float, float]:
    """(slope, CI low, CI high, intercept) of a least-squares line, bootstrap over the points."""
    if len(np.unique(x)) < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)

    def slopes(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        # Least-squares slope of every resample at once; a resample with one distinct x has none (NaN).
        dx = xs - xs.mean(axis=1, keepdims=True)
        sxx = (dx * dx).sum(axis=1)
        sxy = (dx * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1)
        return np.asarray(np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), np.nan))

    lo, hi = stats.bootstrap_ci(slopes, x, y, rounds=rounds, seed=seed, paired=True)
    return float(slope), lo, hi, float(intercept)


def overhead(memory: pd.DataFrame) -> pd.DataFrame:
    """One row per target: baseline, memory per pod (PSS, RSS) with intervals, shim and pod-process shares."""
    sweeps = per_sweep(memory)
    rows = []
    for target, g in sweeps.groupby("target", sort=True) if not sweeps.empty else []:
        x = g["pods_running"].to_numpy(dtype=float)
        row: dict[str, object] = {"target": target, "max pods": int(x.max()), "sweeps": len(g)}
        zero = g[g["pods_running"] == 0]
        row["daemons at 0 pods PSS (MB)"] = float(zero["daemons pss"].median()) / MB if len(zero) else float("nan")
        row["daemons at 0 pods RSS (MB)"] = float(zero["daemons rss"].median()) / MB if len(zero) else float("nan")
        for kind in ("pss", "rss"):
            s, lo, hi, _ = slope_ci(x, g[f"total {kind}"].to_numpy(dtype=float))
            row[f"per pod {kind.upper()} (MB)"] = s / MB
            row[f"per pod {kind.upper()} CI low"] = lo / MB
            row[f"per pod {kind.upper()} CI high"] = hi / MB
        for group in ("shims", "pods", "daemons"):
            s, lo, hi, _ = slope_ci(x, g[f"{group} pss"].to_numpy(dtype=float))
            row[f"{group} per pod PSS (MB)"] = s / MB
        rows.append(row)
    return pd.DataFrame(rows)


def by_step(memory: pd.DataFrame) -> pd.DataFrame:
    """Median group sums per target and pods running (MB), for the chart and the table."""
    sweeps = per_sweep(memory)
    if sweeps.empty:
        return sweeps
    cols = [c for c in sweeps.columns if c.endswith(("pss", "rss"))]
    med = sweeps.groupby(["target", "pods_running"], sort=True)[cols].median() / MB
    return med.reset_index()


def start_latency(samples: pd.DataFrame) -> pd.DataFrame:
    """Per target and pod index (= pods already running): RunPodSandbox + CreateContainer + StartContainer, ms."""
    d = samples[(samples["level"] == "density") & samples["ok"]]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(target=d["stack"] + "/" + d["handler"])
    per = d.groupby(["target", "iteration"])["duration_ns"].agg(["sum", "count"]).reset_index()
    per = per[per["count"] == 3]
    return per.assign(ms=per["sum"] / 1e6).rename(columns={"iteration": "pods running"})[
        ["target", "pods running", "ms"]
    ]


def curve(memory: pd.DataFrame) -> pd.DataFrame:
    """Per target and step: pods running, median total PSS and RSS (MB, as by_step), and PSS per
    pod added since the step before (MB; the first row after 0 pods is the first pod's cost)."""
    steps = by_step(memory)
    if steps.empty:
        return pd.DataFrame()
    g = steps.groupby("target", sort=True)
    prev = g["pods_running"].shift()
    added = (g["total pss"].diff() / (steps["pods_running"] - prev)).to_numpy(dtype=float, na_value=np.nan)
    which = [
        "" if pd.isna(p) else ("first pod" if p == 0 and n == 1 else f"pods {int(p) + 1}-{n}")
        for p, n in zip(prev, steps["pods_running"], strict=True)
    ]
    return pd.DataFrame(
        {
            "target": steps["target"],
            "pods running": steps["pods_running"].astype(int),
            "total PSS (MB)": steps["total pss"],
            "total RSS (MB)": steps["total rss"],
            "PSS per pod added (MB)": added,
            "which pods": which,
        }
    )


def memory(run: Run) -> pd.DataFrame:
    """The density level's sweeps: levels kube and kubelet sample memory too (phase = their
    name), and the density figures use the density level's only."""
    every = run.memory
    return every[~every["phase"].isin(KUBE_LEVELS)] if not every.empty else every


def per_pod(run: Run) -> pd.DataFrame:
    """Memory per pod, once per run (the headline quotes it)."""
    return run.derived("memory_per_pod", lambda r: overhead(m) if not (m := memory(r)).empty else pd.DataFrame())


def sampler_cost(sampler: dict[str, dict[str, Any]]) -> str:
    return "; ".join(
        f"{t}: {s.get('sweeps')} sweeps, {s.get('sweep_cpu_ms_mean') or 0:.1f} ms CPU each, "
        f"{100 * (s.get('cpu_share_of_one_core') or 0):.1f}% of one core, interval kept p50 "
        f"{s.get('interval_kept_ms_p50') or 0:.0f} ms (max {s.get('interval_kept_ms_max') or 0:.0f})"
        for t, s in sampler.items()
    )


def density_chart(steps: pd.DataFrame, table: pd.DataFrame, starts: pd.DataFrame) -> str:
    """Per target: PSS stacked by group against pods running; per-pod overhead bars; start latency as the node fills."""
    targets = sorted(steps["target"].unique())
    fig, axes = plt.subplots(1, len(targets) + 3, figsize=(4.2 * (len(targets) + 3), 3.6), squeeze=False)
    colours = {"daemons": "#6baed6", "shims": "#fd8d3c", "pods": "#74c476"}
    # First, every stack on one axis: total PSS against pods running, in each target's colour.
    ax = axes[0][0]
    per_target = target_colours(targets)
    for target in targets:
        t = steps[steps["target"] == target].sort_values("pods_running")
        total = sum(t[f"{g} pss"] for g in colours)
        ax.plot(t["pods_running"], total, "o-", ms=3, color=per_target[target], label=target)
    ax.set_title("memory vs pods, per stack", fontsize=10)
    ax.set_xlabel("pods running")
    ax.set_ylabel("MB (PSS of daemons, shims, pods)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    for ax, target in zip(axes[0][1:], targets, strict=False):
        t = steps[steps["target"] == target]
        ax.stackplot(
            t["pods_running"], *(t[f"{g} pss"] for g in colours), labels=list(colours), colors=list(colours.values())
        )
        ax.plot(t["pods_running"], t["total rss"], "k--", lw=1, label="total RSS")
        ax.set_title(target, fontsize=10)
        ax.set_xlabel("pods running")
        ax.set_ylabel("MB (PSS stacked)")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    ax = axes[0][len(targets) + 1]
    x = np.arange(len(table))
    for offset, kind, colour in ((-0.2, "PSS", "#3182bd"), (0.2, "RSS", "#bdbdbd")):
        mid = table[f"per pod {kind} (MB)"].to_numpy(dtype=float)
        err = [mid - table[f"per pod {kind} CI low"].to_numpy(dtype=float), table[f"per pod {kind} CI high"] - mid]
        ax.bar(x + offset, mid, width=0.4, yerr=err, capsize=3, color=colour, label=kind)
    ax.set_xticks(x, table["target"], fontsize=8)
    ax.set_ylabel("MB per running pod (95% CI)")
    ax.set_title("memory per pod", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[0][len(targets) + 2]
    colours = target_colours(starts["target"]) if not starts.empty else {}
    for target, g in starts.groupby("target") if not starts.empty else []:
        ax.plot(g["pods running"], g["ms"], ".-", label=target, color=colours[str(target)])
    ax.set_xlabel("pods already running")
    ax.set_ylabel("pod start (ms)")
    ax.set_title("RunPodSandbox + Create + Start", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


def density_sections(run: Run) -> list[Section]:
    sweeps, samples = memory(run), run.samples
    if sweeps.empty:
        return []
    table = per_pod(run)
    if table.empty:
        return [Section("Memory per pod (level density)", [Para("No hold sweep was recorded.", "bad")])]
    steps = by_step(sweeps)
    starts = start_latency(samples) if not samples.empty else pd.DataFrame()
    # Levels kube, kubelet and dockershim keep theirs as "<level> <target>".
    cost = sampler_cost({t: s for t, s in run.meta.get("sampler", {}).items() if " " not in t})
    cols = [
        "target",
        "daemons at 0 pods PSS (MB)",
        "per pod PSS (MB)",
        "per pod PSS CI low",
        "per pod PSS CI high",
        "per pod RSS (MB)",
        "shims per pod PSS (MB)",
    ]
    return [
        Section(
            "Memory per pod (level density)",
            [
                Para(
                    "Each target is filled with running pods step by step; a sampler on the node reads RSS, PSS and "
                    "USS of the stack's daemons, its shims (attributed to pods through the container id on their "
                    "command line) and the pods' processes (attributed by their pod cgroup). Per pod is the slope of "
                    "a least-squares line of daemons + shims + pods against the pods running, over every sweep taken "
                    "while the pods of a step ran, with a 95% bootstrap interval. PSS shares pages among their users "
                    "and is the figure to budget with; RSS counts shared pages once per process."
                ),
                Image("memory against pods", density_chart(steps, table, starts)),
                Table(table, 2, summary=table[cols]),
            ],
            summary=True,
        ),
        Section(
            "Memory per pod as the node fills: first pod against marginal pods (PSS, MB)",
            [
                Para(
                    "Per step, the median total (daemons + shims + pods) against the step before, per pod added: "
                    "the first pod's cost holds what any pod first brings (shared pages, the daemons' first "
                    "allocations); the later rows are the marginal pod at each fill level. One slope hides a cost "
                    "that bends."
                ),
                Table(curve(sweeps), 2),
            ],
            level=3,
        ),
        Section(
            "Median per step (MB)", [Table(steps, 2), Para(f"Sampler's own cost: {cost or 'not recorded'}.")], level=3
        ),
    ]


VIEW = View("density", density_sections)
