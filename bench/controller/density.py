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

import numpy as np
import pandas as pd

from bench.controller import stats

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
