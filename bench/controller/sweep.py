"""The concurrency sweep: throughput and latency against lifecycles in flight, and where each
target saturates.

Under the interleaved schedule a target's lifecycles at concurrency c run in bursts of c at once
(round r holds iterations r*c .. r*c+c-1). A burst's wall time runs from its first op's start to
its last op's end; a target's **throughput** at c is its lifecycles over the sum of its bursts'
wall times (lifecycles per second while it had c in flight), with a 95% bootstrap interval over
its bursts. A target **saturates** at the lowest concurrency whose throughput reaches
SATURATION of its highest: beyond it, more in flight buys latency, not throughput. Latency per
op is the median at each concurrency (bench.controller.stats.summarize gives its interval).
The agent's own queueing at each concurrency (bench.node.clientload) sits beside it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.controller import drift, stats
from bench.controller.charts import plt, png, target_colours, ticker
from bench.controller.render import Bullets, Image, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View

SATURATION = 0.9
TARGET = ["node", "stack", "handler", "level"]


def bursts(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per burst: TARGET, concurrency, round, lifecycles, wall_s (first start to last end)."""
    s = samples[samples["level"] != "cli"]
    if s.empty:
        return pd.DataFrame(columns=[*TARGET, "concurrency", "round", "lifecycles", "wall_s"])
    s = s.assign(
        end_ns=s["start_ns"] + s["duration_ns"],
        round=s["iteration"].astype(int) // s["concurrency"].astype(int),
    )
    g = s.groupby([*TARGET, "concurrency", "round"], observed=True)
    out = g.agg(first=("start_ns", "min"), last=("end_ns", "max"), lifecycles=("iteration", "nunique")).reset_index()
    out["wall_s"] = (out["last"] - out["first"]) / 1e9
    return out.drop(columns=["first", "last"])


def throughput(samples: pd.DataFrame, rounds: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per target and concurrency: bursts, lifecycles, throughput (per s) with its interval, and
    the lifecycle's median time (ms, complete lifecycles)."""
    b = bursts(samples)
    rows = []
    for key, g in b.groupby([*TARGET, "concurrency"], observed=True, sort=True):
        n, wall = g["lifecycles"].to_numpy(float), g["wall_s"].to_numpy(float)
        point = n.sum() / wall.sum() if wall.sum() > 0 else math.nan
        lo = hi = math.nan
        if len(g) >= 2 and wall.sum() > 0:
            lo, hi = stats.bootstrap_ci(
                lambda dn, dw: dn.sum(axis=1) / dw.sum(axis=1), n, wall, rounds=rounds, seed=seed, paired=True
            )
        rows.append(
            {
                **dict(zip([*TARGET, "concurrency"], key, strict=True)),
                "bursts": len(g),
                "lifecycles": int(n.sum()),
                "per_s": point,
                "per_s_lo": lo,
                "per_s_hi": hi,
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # drift.lifecycles: complete measured lifecycles, one time each (the sum of their ops).
    p50 = drift.lifecycles(samples).groupby(drift.TARGET, observed=True)["ms"].median().rename("lifecycle_p50_ms")
    return frame.merge(p50.reset_index(), on=drift.TARGET, how="left")


def saturation(table: pd.DataFrame) -> pd.DataFrame:
    """Per target: the highest throughput, the concurrency it came at, and the lowest concurrency
    reaching SATURATION of it (the knee)."""
    rows = []
    for key, g in table.groupby(TARGET, observed=True, sort=True):
        g = g.sort_values("concurrency")
        if g["concurrency"].nunique() < 3:
            continue
        best = g.loc[g["per_s"].idxmax()]
        knee = g[g["per_s"] >= SATURATION * best["per_s"]].iloc[0]
        rows.append(
            {
                **dict(zip(TARGET, key, strict=True)),
                "saturates_at": int(knee["concurrency"]),
                "per_s_there": float(knee["per_s"]),
                "per_s_there_lo": float(knee["per_s_lo"]),
                "per_s_there_hi": float(knee["per_s_hi"]),
                "best_per_s": float(best["per_s"]),
                "best_at": int(best["concurrency"]),
                "lifecycle_p50_ms_at_1": float(g.iloc[0]["lifecycle_p50_ms"]),
                "lifecycle_p50_ms_at_knee": float(knee["lifecycle_p50_ms"]),
                "lifecycle_p50_ms_at_most": float(g.iloc[-1]["lifecycle_p50_ms"]),
                "most": int(g.iloc[-1]["concurrency"]),
            }
        )
    return pd.DataFrame(rows)


def client_load(run: Run) -> pd.DataFrame:
    """The agent's queueing and CPU per group and concurrency (artifacts client-load/*.json)."""
    rows = []
    for path in run.artifacts("client-load", "*.json"):
        try:
            data = json.loads(run.text(path))
        except (OSError, json.JSONDecodeError):
            continue
        for c, v in data.items():
            rows.append(
                {
                    "group": path.stem,
                    "concurrency": int(c),
                    "lifecycles": v.get("lifecycles"),
                    "agent_cores": v.get("agent_cores"),
                    "start_lag_p50_ms": (v.get("start_lag_ms") or {}).get("p50"),
                    "start_lag_p99_ms": (v.get("start_lag_ms") or {}).get("p99"),
                    "probe_lag_p50_ms": (v.get("probe_lag_ms") or {}).get("p50"),
                    "probe_lag_p99_ms": (v.get("probe_lag_ms") or {}).get("p99"),
                }
            )
    return pd.DataFrame(rows)


def chart_data(table: pd.DataFrame) -> dict[str, Any]:
    """{target: (concurrencies, per_s, lo, hi, lifecycle p50)} for the chart."""
    out = {}
    for key, g in table.groupby(TARGET, observed=True, sort=True):
        g = g.sort_values("concurrency")
        name = f"{key[1]}/{key[2]}" + ("" if key[3] == "cri" else f" {key[3]}")
        out[name] = tuple(
            np.asarray(g[c], float) for c in ("concurrency", "per_s", "per_s_lo", "per_s_hi", "lifecycle_p50_ms")
        )
    return out


def sweep_chart(table: pd.DataFrame) -> str:
    """Throughput (with its interval) and lifecycle p50 against lifecycles in flight, one line per target."""
    data = chart_data(table)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    colours = target_colours(name.split(" ")[0] for name in data)
    for name, (c, per_s, lo, hi, p50) in data.items():
        (line,) = top.plot(c, per_s, "o-", label=name, color=colours[name.split(" ")[0]])
        top.fill_between(c, lo, hi, color=line.get_color(), alpha=0.2)
        bottom.plot(c, p50, "o-", color=line.get_color(), label=name)
    top.set_ylabel("lifecycles per second")
    bottom.set_ylabel("lifecycle p50 (ms)")
    bottom.set_xlabel("lifecycles in flight per target (log scale)")
    for ax in (top, bottom):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    bottom.set_yscale("log")
    fig.tight_layout()
    return png(fig)


def applies(run: Run) -> bool:
    """A sweep: at least three concurrencies."""
    return not run.samples.empty and run.samples["concurrency"].nunique() >= 3


def sweep_sections(run: Run) -> list[Section]:
    """Throughput and latency against concurrency, where each target saturates, the agent's own load."""
    table = throughput(run.samples)
    knees = saturation(table)
    if knees.empty:
        return []
    sentences = [
        f"{r.stack}/{r.handler}: saturates at {r.saturates_at} in flight, {r.per_s_there:.2f} lifecycles/s "
        f"[{r.per_s_there_lo:.2f}, {r.per_s_there_hi:.2f}] (its best: {r.best_per_s:.2f}/s at {r.best_at}); "
        "a lifecycle takes "
        f"{r.lifecycle_p50_ms_at_1:.0f} ms at 1 in flight, {r.lifecycle_p50_ms_at_knee:.0f} ms there and "
        f"{r.lifecycle_p50_ms_at_most:.0f} ms at {r.most}."
        for r in knees.itertuples()
    ]
    shown = table.assign(
        target=table["stack"].astype(str) + "/" + table["handler"].astype(str),
        throughput=[
            f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
            for v, lo, hi in zip(table["per_s"], table["per_s_lo"], table["per_s_hi"], strict=True)
        ],
    )[["target", "level", "concurrency", "bursts", "lifecycles", "throughput", "lifecycle_p50_ms"]]
    blocks: list[Any] = [
        Para(
            "Throughput is a target's lifecycles over the wall time of its bursts (c lifecycles started together, "
            "first op's start to last op's end), with a 95% bootstrap interval over the bursts; a target saturates "
            f"at the lowest concurrency reaching {SATURATION:.0%} of its best throughput."
        ),
        Bullets(sentences),
        Image("throughput and lifecycle latency against concurrency", sweep_chart(table)),
        Table(shown, 2),
    ]
    load = client_load(run)
    if not load.empty:
        blocks.append(
            Para(
                "The agent's own queueing (bench.node.clientload): start lag, how long after a burst's workers were "
                "released together each one ran; probe lag, how late a thread asking to wake every 5 ms woke while "
                "the burst ran; agent cores, the agent process's CPU time over the bursts' wall time. Lags in the "
                "milliseconds or agent cores near 1 would mean the client, not the stack, sets the pace."
            )
        )
        blocks.append(Table(load, 2))
    return [Section("Concurrency sweep: throughput, latency and saturation", blocks, summary=True)]


VIEW = View("sweep", sweep_sections, applies)
