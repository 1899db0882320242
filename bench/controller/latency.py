"""Latency per op: the table of every target, level, concurrency and op, and its distributions.

The view after the headline: p50 with its distribution-free interval, p90, p99, failures and
warm-up counts per op, a box-and-dots chart per op on one log axis, and empirical CDFs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.controller import stats
from bench.controller.charts import plain_log_ticks, plt, png, target_colours, ticker
from bench.controller.render import Image, Para, Section, Table, cell
from bench.controller.run import Run
from bench.controller.view import View

# Per series, at most this many dots in the latency chart and vertices in the CDF chart.
CHART_DOTS = 2000
CHART_CDF_POINTS = 2000


def _measured_series(samples: pd.DataFrame) -> pd.DataFrame:
    """Measured samples with `ms` and a `series` label: target, level and concurrency."""
    m = stats.measured_ms(samples)
    m = m.assign(target=m["stack"] + "/" + m["handler"])
    return m.assign(series=m["target"] + " " + m["level"] + " c=" + m["concurrency"].astype(str))


def latency_chart(samples: pd.DataFrame) -> str:
    """One panel per op: the distribution of each target at each concurrency, same log axis."""
    measured = _measured_series(samples)
    ops = stats.op_order(list(measured["op"].unique()))
    # Per op only the series that have it (a CLI command exists in one level only); one shared
    # log axis for every panel so that panels compare.
    per_op = {op: sorted(measured[measured["op"] == op]["series"].unique()) for op in ops}
    heights = [len(per_op[op]) + 1 for op in ops]
    fig, axes = plt.subplots(
        len(ops),
        1,
        figsize=(9, 0.45 * sum(heights) + 0.6 * len(ops)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    lo, hi = measured["ms"].min(), measured["ms"].max()
    rng = np.random.default_rng(0)
    groups = {k: g.to_numpy() for k, g in measured.groupby(["op", "series"], observed=True)["ms"]}
    colours = target_colours(measured["target"].unique())
    colour_of = dict(zip(measured["series"], measured["target"].map(colours), strict=True))
    for ax, op in zip(axes[:, 0], ops, strict=True):
        series = per_op[op]
        data = [groups[(op, s)] for s in series]
        ax.boxplot(data, orientation="horizontal", widths=0.6, showfliers=False, tick_labels=series)
        for i, d in enumerate(data, start=1):
            if len(d) > CHART_DOTS:  # a big run: a random subset, or the dots would be one smear
                d = rng.choice(d, CHART_DOTS, replace=False)
            ax.scatter(d, i + rng.uniform(-0.18, 0.18, len(d)), s=6, alpha=0.45, color=colour_of[series[i - 1]])
        ax.set_xscale("log")
        ax.set_xlim(lo * 0.8, hi * 1.25)
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        plain_log_ticks(ax.xaxis)
        ax.set_title(op, loc="left", fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel(
        "latency (ms, log scale); box: quartiles, whiskers 1.5 IQR, "
        f"dots: every sample (a random {CHART_DOTS:,} where more)"
    )
    fig.tight_layout()
    return png(fig)


def cdf_chart(samples: pd.DataFrame) -> str:
    """Empirical CDF of each op, one line per target/level/concurrency, in a grid of panels."""
    measured = _measured_series(samples)
    ops = stats.op_order(list(measured["op"].unique()))
    cols = 3
    rows = (len(ops) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
    colours = target_colours(measured["target"].unique())
    styles = ["-", "--", ":", "-."]
    variants = sorted(set(zip(measured["level"], measured["concurrency"], strict=True)))
    for ax, op in zip(axes.flat, ops, strict=False):
        for series, g in measured[measured["op"] == op].groupby("series"):
            x = np.sort(g["ms"].to_numpy())
            y = np.arange(1, len(x) + 1) / len(x)
            if len(x) > CHART_CDF_POINTS:  # the curve at evenly spaced fractions: the same picture, fewer vertices
                keep = np.unique(np.linspace(0, len(x) - 1, CHART_CDF_POINTS).astype(int))
                x, y = x[keep], y[keep]
            # Colour: the target; line style: its level and concurrency.
            style = styles[variants.index((g["level"].iloc[0], g["concurrency"].iloc[0])) % len(styles)]
            ax.step(x, y, where="post", label=str(series), color=colours[g["target"].iloc[0]], ls=style)
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_title(op, fontsize=9, loc="left")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    fig.supxlabel("latency (ms, log scale)")
    fig.tight_layout()
    return png(fig)


def summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The latency table: one row per target, level, concurrency and op, in lifecycle order."""
    order = {op: i for i, op in enumerate(stats.op_order(list(summary["op"].unique())))}
    s = summary.assign(_o=summary["op"].map(order)).sort_values(["stack", "handler", "level", "concurrency", "_o"])
    nan = pd.Series(np.nan, index=s.index)
    lo, hi = s.get("p50_lo_ms", nan), s.get("p50_hi_ms", nan)
    ci = [f"{cell(a)} – {cell(b)}" for a, b in zip(lo, hi, strict=True)]
    return pd.DataFrame(
        {
            "target": s["stack"] + "/" + s["handler"],
            "level": s["level"],
            "conc.": s["concurrency"],
            "op": s["op"],
            "n": s["n"],
            "p50 ms": s.get("p50_ms", np.nan),
            "p50 95% CI": ci,
            "p90 ms": s.get("p90_ms", np.nan),
            "p99 ms": s.get("p99_ms", np.nan),
            "failed": s["failed"],
            "warm-up": s["warmup"],
        }
    )


def latency_sections(run: Run) -> list[Section]:
    samples, summary = run.samples, run.summary
    lat = Section("Latency per op")
    out = [lat]
    if samples.empty:
        lat.blocks.append(Para("No samples.", "bad"))
        return out
    lat.blocks.append(Table(summary_frame(summary)))
    if (samples["ok"] & ~samples["warmup"]).any():
        lat.blocks.append(Image("latency distribution per op", latency_chart(samples)))
        out.append(Section("Cumulative distributions", [Image("latency CDF per op", cdf_chart(samples))], level=3))
    else:
        lat.blocks.append(Para("No successful measured sample: no chart.", "bad"))
    return out


VIEW = View("latency", latency_sections)
