"""The report of one run: one model (bench.controller.render) rendered as report.html and report.md.

Every section is built once from the run's data; the HTML report (self-contained, charts
inlined as PNG) shows them all, report.md the ones marked as summary. The method text is
written once, here.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.controller import cite, crosscheck, density, drift, driver, headline, hops, kube, stats, sweep, upgrade  # noqa: E402
from bench.controller.colours import target_colours  # noqa: E402
from bench.controller.render import Bullets, Image, Para, Pre, Report, Section, Table, cell, to_html, to_markdown  # noqa: E402
from bench.controller.results import load_memory, load_run, read_jsonl  # noqa: E402
from bench.ops import PARTS, POD_START_OPS  # noqa: E402


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(op, loc="left", fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel(
        "latency (ms, log scale); box: quartiles, whiskers 1.5 IQR, "
        f"dots: every sample (a random {CHART_DOTS:,} where more)"
    )
    fig.tight_layout()
    return _png(fig)


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
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(op, fontsize=9, loc="left")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    fig.supxlabel("latency (ms, log scale)")
    fig.tight_layout()
    return _png(fig)


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
    return _png(fig)


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
    return _png(fig)


@dataclass
class Analysis:
    """What the HTML report and the Markdown summary both show, computed once per report."""

    hop_costs: pd.DataFrame
    split: pd.DataFrame
    memory: pd.DataFrame
    memory_per_pod: pd.DataFrame
    nightly: dict[str, Any]
    upgrade: pd.DataFrame = field(default_factory=pd.DataFrame)
    driver: pd.DataFrame = field(default_factory=pd.DataFrame)
    kube_startup: pd.DataFrame = field(default_factory=pd.DataFrame)
    kubelet_view: pd.DataFrame = field(default_factory=pd.DataFrame)
    kubelet_calls: pd.DataFrame = field(default_factory=pd.DataFrame)
    kubelet_slis: pd.DataFrame = field(default_factory=pd.DataFrame)
    kubelet_memory: pd.DataFrame = field(default_factory=pd.DataFrame)
    dockershim: pd.DataFrame = field(default_factory=pd.DataFrame)


def analyse(run_dir: Path, samples: pd.DataFrame) -> Analysis:
    levels = set(samples["level"].unique()) if not samples.empty else set()
    has_lower = "cri" in levels and bool(levels & {"kube", "kubelet", "engine", "containerd", "oci"})
    splits = load_splits(run_dir)
    every = load_memory(run_dir)
    # Levels kube and kubelet sample memory too (phase = their name): the density figures use
    # the density level's sweeps only.
    memory = every[~every["phase"].isin(kube.KUBE_LEVELS)] if not every.empty else every
    on_kube = bool(levels & set(kube.KUBE_LEVELS))
    scraped = kube.scrapes(run_dir) if on_kube else {}
    return Analysis(
        hop_costs=hops.differential(samples) if has_lower else pd.DataFrame(),
        split=hops.split_table(splits) if not splits.empty else pd.DataFrame(),
        memory=memory,
        memory_per_pod=density.overhead(memory) if not memory.empty else pd.DataFrame(),
        nightly=_load_nightly(run_dir),
        upgrade=upgrade.version_changes(samples),
        driver=driver.driver_changes(samples),
        kube_startup=kube.startup(samples) if "kube" in levels else pd.DataFrame(),
        kubelet_view=kube.kubelet_view(scraped, samples) if on_kube else pd.DataFrame(),
        kubelet_calls=kube.kubelet_calls(scraped, samples) if on_kube else pd.DataFrame(),
        kubelet_slis=kube.kubelet_slis(scraped, samples) if on_kube else pd.DataFrame(),
        kubelet_memory=kube.kubelet_memory(every) if on_kube else pd.DataFrame(),
        dockershim=kube.dockershim(samples) if on_kube else pd.DataFrame(),
    )


def load_splits(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(read_jsonl(run_dir / "splits.jsonl"))


def cli_vs_api(samples: pd.DataFrame) -> pd.DataFrame:
    """Starting a pod through each stack's CLI beside the same work through CRI.

    For the cri level the per-lifecycle sum of RunPodSandbox, CreateContainer and
    StartContainer (concurrency 1, warm-up excluded) is what `crictl run` asks for in one
    process; the difference is the CLI's own cost (process start-up, config parsing, its
    extra status calls)."""
    ok = samples[samples["ok"] & ~samples["warmup"] & (samples["concurrency"] == 1)]
    rows = []
    for (stack, handler), g in ok.groupby(["stack", "handler"], sort=True):
        per_life = hops.per_lifecycle_ms(g[g["level"] == "cri"], POD_START_OPS)
        row: dict[str, object] = {"target": f"{stack}/{handler}"}
        row["cri start (ms)"] = float(np.median(per_life)) if len(per_life) else float("nan")
        for op, cg in g[g["level"] == "cli"].groupby("op"):
            row[f"{op} (ms)"] = float((cg["duration_ns"] / 1e6).median())
        if len(row) > 2 or stack == "none":
            rows.append(row)
    return pd.DataFrame(rows)


def p50_per_op(summary: pd.DataFrame) -> pd.DataFrame:
    """p50 [95% CI] per op (rows) and target (columns), level cri at concurrency 1 (else the first level)."""
    if summary.empty:
        return pd.DataFrame()
    level = "cri" if (summary["level"] == "cri").any() else str(summary["level"].iloc[0])
    s = summary[(summary["level"] == level) & (summary["concurrency"] == summary["concurrency"].min())].copy()
    s["target"] = s["stack"] + "/" + s["handler"]
    if s["node"].nunique() > 1:
        s["target"] = s["node"] + " " + s["target"]
    s["cell"] = [f"{r.p50_ms:.1f} [{cell(r.p50_lo_ms)}, {cell(r.p50_hi_ms)}]" if r.n else "–" for r in s.itertuples()]
    wide = s.pivot_table(index="op", columns="target", values="cell", aggfunc="first")
    order = stats.op_order(list(wide.index))
    return wide.loc[order].reset_index().rename(columns={"op": f"op ({level}, p50 ms [95% CI])"})


METHOD = (
    "Each op is timed on the node with the monotonic clock around one call, nothing else inside the interval: "
    "a CRI gRPC call (levels `cri`, `split`, `density`), a Docker Engine API request (`engine`), a containerd "
    "API call (`containerd`) or one run of the OCI runtime binary (`oci`). The requests are those kubelet sends "
    "for an ordinary BestEffort pod (`bench/node/kubelet.py`). Warm-up lifecycles are kept in the data and "
    "excluded from the statistics; failed calls are counted, not timed; no outlier is removed. p50 intervals are "
    "distribution-free (binomial order statistics; missing bounds mean too few samples); hop costs, ratios and "
    "memory slopes use percentile bootstraps; run comparisons add a Mann-Whitney U test. Samples of level `cli` "
    "are whole commands timed by hyperfine (its warm-up runs are not kept); their `start_ns` is the start of the "
    "hyperfine invocation, not of each run."
)

UPGRADE_TEXT = (
    "Instances of one stack at different versions ran side by side in this run, interleaved in the "
    "same node and time. Ratio = p50 of the newer version / p50 of the older (below 1: faster after "
    "the upgrade), with a 95% percentile-bootstrap interval; the verdict is as in hopbench compare "
    "(clear: interval excludes 1 and Mann-Whitney p < 0.05; regression or improvement beyond 10%). "
    "*pod start* and *pod teardown* sum the CRI ops kubelet waits for, per lifecycle."
)


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


def header_sections(meta: dict[str, Any], checks: list[dict[str, Any]]) -> list[Section]:
    scen = meta.get("scenario", {})
    passed = sum(1 for c in checks if c.get("ok"))
    failed = [c for c in checks if not c.get("ok")]
    status = str(meta.get("status"))
    intro = Section(
        "",
        [
            Para(
                f"Scenario **{scen.get('name', '?')}** (sha256 `{str(scen.get('sha256', ''))[:16]}`) on node(s) "
                f"**{meta.get('node', '?')}**, {meta.get('started_at', '?')} → {meta.get('ended_at', '?')}, "
                f"status **{status}**. {passed} workload checks passed, {len(failed)} failed."
            )
        ],
        summary=True,
    )
    if scen.get("description"):
        intro.blocks.append(Para(str(scen["description"])))
    return [intro]


def checks_sections(checks: list[dict[str, Any]]) -> list[Section]:
    """Whether each lifecycle's workload really ran: after the headline, before the details."""
    passed = sum(1 for c in checks if c.get("ok"))
    failed = [c for c in checks if not c.get("ok")]
    verdict = Section(
        "Workload checks",
        [
            Para(
                f"{passed} lifecycles verified (the container running with its ready line, then exited 0 with its "
                f"stop line after the stop op); {len(failed)} failed.",
                "bad" if failed else "ok",
            )
        ],
    )
    if failed:
        verdict.blocks.append(Bullets([json.dumps(c) for c in failed[:20]]))
    return [verdict]


def headline_sections(h: headline.Headline, summary: pd.DataFrame) -> list[Section]:
    """The answer first (bench.controller.headline): sentences, the table they come from, the
    side-by-side chart; then p50 per op and target."""
    out = []
    if h.sentences:
        blocks: list[Any] = [Bullets(h.sentences)]
        table = h.table()
        if not table.empty:
            blocks.append(Table(table))
        rows = headline.chart_rows(h, summary)
        if not rows.empty:
            colours = target_colours(rows["target"])
            blocks.append(Image("p50 per op and target, with 95% intervals", _png(headline.chart(rows, colours))))
        out.append(Section("Headline", blocks, summary=True))
    per_op = p50_per_op(summary)
    if not per_op.empty:
        out.append(Section("p50 per op", [Table(per_op)], summary=True, level=3 if h.sentences else 2))
    return out


def latency_sections(samples: pd.DataFrame, summary: pd.DataFrame) -> list[Section]:
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


def sweep_chart(table: pd.DataFrame) -> str:
    """Throughput (with its interval) and lifecycle p50 against lifecycles in flight, one line per target."""
    data = sweep.chart_data(table)
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
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    bottom.set_yscale("log")
    fig.tight_layout()
    return _png(fig)


def sweep_sections(run_dir: Path, samples: pd.DataFrame) -> list[Section]:
    """Throughput and latency against concurrency, where each target saturates, the agent's own load."""
    if samples.empty or samples["concurrency"].nunique() < 3:
        return []
    table = sweep.throughput(samples)
    knees = sweep.saturation(table)
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
            f"at the lowest concurrency reaching {sweep.SATURATION:.0%} of its best throughput."
        ),
        Bullets(sentences),
        Image("throughput and lifecycle latency against concurrency", sweep_chart(table)),
        Table(shown, 2),
    ]
    load = sweep.client_load(run_dir)
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


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:+.0f}%"


def conditions_sections(samples: pd.DataFrame, summary: pd.DataFrame, meta: dict[str, Any]) -> list[Section]:
    """Schedule, drift, pairing, clock: what the comparison's fairness rests on (bench.controller.drift)."""
    scen = meta.get("scenario", {})
    schedule = str(scen.get("schedule") or "block")
    seed = scen.get("seed")
    clock = meta.get("node_facts", {}).get("clock", {}) if isinstance(meta.get("node_facts"), dict) else {}
    paras: list[str] = []
    if schedule == "interleaved":
        paras.append(
            f"Schedule **interleaved** (seed {seed}): every round ran one lifecycle of each target and level "
            "(at concurrency c, c at once) in a freshly shuffled order, so whatever drifted on the node fell on "
            "every target alike; targets are compared in pairs of the same round."
        )
    else:
        paras.append(
            "Schedule **block**: each target's lifecycles ran in one block, one target after the other, so the "
            "node's drift between blocks is part of every difference between targets."
        )
    trend = drift.node_trend(samples) if not samples.empty else {}
    for c_name, t in trend.items():
        if t["rounds"] < 3:
            continue
        paras.append(
            f"Drift at concurrency {c_name}: over {t['rounds']} rounds the {t['targets']} target level(s) together "
            f"changed by {_pct(t['change'])} [{_pct(t['change_lo'])}, {_pct(t['change_hi'])}] from the first "
            f"round to the last (Theil-Sen trend of the per-round median, each lifecycle relative to its "
            f"target's median); rounds differed by up to {t['spread'] * 100:.0f}%."
        )
    overhead = clock.get("timer_overhead_ns") or {}
    if overhead:
        paras.append(
            f"Clock: {clock.get('monotonic_implementation', 'monotonic')}, resolution "
            f"{clock.get('monotonic_resolution_ns', '?')} ns, smallest step seen {clock.get('observed_step_ns', '?')} "
            f"ns; timing an empty call costs {overhead.get('p50', '?')} ns at the median "
            f"(p99 {overhead.get('p99', '?')} ns): the floor under every sample."
        )
    for target, found in (meta.get("settings") or {}).items():
        probe = (found.get("null_cri_overhead") or {}).get("value") if isinstance(found, dict) else None
        if probe:
            p50 = {op: float(v["p50_us"]) for op, v in probe.items()}
            lo, hi = min(p50, key=lambda k: p50[k]), max(p50, key=lambda k: p50[k])
            paras.append(
                f"Harness cost ({target.partition('@')[2] or target}): hopbench's CRI client against nullcri, a CRI "
                f"server that answers at once, took {p50[lo]:.0f} µs ({lo}) to {p50[hi]:.0f} µs ({hi}) per op at the "
                f"median, {float(np.median(list(p50.values()))):.0f} µs across ops: that much of every CRI figure is "
                "the client, gRPC and the socket."
            )
    ctl = stats.measured_ms(samples[samples["level"] == "control"]) if not samples.empty else pd.DataFrame()
    if not ctl.empty:
        meds = ctl.groupby("op")["ms"].median()
        paras.append(
            "Control (level control, interleaved with the targets): "
            + ", ".join(f"{op} {meds[op]:.1f} ms" for op in meds.index)
            + " at the median: the node's own speed in this run, what `hopbench compare` divides by."
        )
    out = [Section("Measurement conditions", [Para(p) for p in paras], summary=True)]
    per = drift.per_target(samples) if not samples.empty else pd.DataFrame()
    if not per.empty:
        table = pd.DataFrame(
            {
                "target": per["stack"] + "/" + per["handler"],
                "level": per["level"],
                "conc.": per["concurrency"],
                "rounds": per["rounds"],
                "lifecycle p50 ms": per["p50_ms"],
                "change first→last round": [_pct(v) for v in per["change"]],
                "95% CI": [f"{_pct(a)} – {_pct(b)}" for a, b in zip(per["change_lo"], per["change_hi"], strict=True)],
            }
        )
        out.append(
            Section(
                "Drift per target",
                [
                    Para(
                        "Theil-Sen trend of each complete lifecycle's time (the sum of its ops) over the rounds; "
                        "an interval that excludes 0 is a drift the target saw during the run."
                    ),
                    Table(table),
                ],
                level=3,
            )
        )
    if schedule == "interleaved" and not summary.empty:
        level = "cri" if (summary["level"] == "cri").any() else str(summary["level"].iloc[0])
        conc = int(summary[summary["level"] == level]["concurrency"].min())
        pairs = drift.side_by_side(samples, level, conc)
        if not pairs.empty:
            ci = [f"{a:.2f} – {b:.2f}" for a, b in zip(pairs["lo"], pairs["hi"], strict=True)]
            ind = [f"{a:.2f} – {b:.2f}" for a, b in zip(pairs["independent_lo"], pairs["independent_hi"], strict=True)]
            table = pd.DataFrame(
                {
                    "target": pairs["target"],
                    "against": pairs["against"],
                    "op": pairs["op"],
                    "pairs": pairs["pairs"].astype(int),
                    "p50 ratio": pairs["ratio"],
                    "95% CI (pairs)": ci,
                    "95% CI (unpaired)": ind,
                }
            )
            out.append(
                Section(
                    f"Targets side by side (level {level}, concurrency {conc}, interleaved pairs)",
                    [
                        Para(
                            "Ratio of medians, each target against the first; the interval resamples the pairs "
                            "(iteration i of both targets ran in the same round), so a slow spell the node went "
                            "through moves both sides together. The unpaired interval is beside it."
                        ),
                        Table(table, 2),
                    ],
                    level=3,
                )
            )
    return out


def crosscheck_sections(run_dir: Path, samples: pd.DataFrame, meta: dict[str, Any]) -> list[Section]:
    """critest beside hopbench, the daemons' own clocks, the null server (bench.controller.crosscheck)."""
    from bench.node.metrics import COVERS

    figures = crosscheck.daemon_figures(run_dir)
    out: list[Section] = []
    table = crosscheck.table(samples, figures)
    if not table.empty:
        real = table[~table["target"].str.startswith("null/")]
        sec = Section(
            "Crosscheck: critest, hopbench and the daemons",
            [
                Para(
                    "Per op, interleaved in the same rounds on the same node: cri-tools' `critest -benchmark` "
                    "(level critest), hopbench's CRI client sending critest's own requests (level cri-critest: "
                    "ratio to critest with its 95% interval from same-round pairs; *agree* when the median ratio is "
                    f"within ±{crosscheck.AGREE:.0%}), and hopbench with kubelet's requests (level cri: ratio to "
                    "the critest-request figure, how much request realism changes the op). The daemon columns are "
                    "the daemon's own mean per call while level cri-critest ran, beside the client's mean over the "
                    "same calls (the gap is gRPC transport plus the client), and the daemon's own mean while "
                    "critest ran: where critest and hopbench differ, it tells the daemon's share from the client's."
                )
            ],
            summary=True,
        )
        shown = real if not real.empty else table
        gaps = (shown["ratio"] - 1).abs()
        if gaps.notna().any():
            r = shown.loc[gaps.idxmax()]
            sec.blocks.append(
                Para(
                    f"Largest disagreement with critest: {r['target']} {r['op']}, hopbench/critest "
                    f"{r['ratio']:.2f} [{r['ratio_lo']:.2f}, {r['ratio_hi']:.2f}] "
                    f"({r['hopbench (critest requests) p50 ms']:.2f} ms against {r['critest p50 ms']:.2f} ms)."
                )
            )
        n_agree = int((shown["agree"] == "yes").sum())
        sec.blocks.append(
            Para(f"{n_agree} of {len(shown)} op(s) agree within ±{crosscheck.AGREE:.0%} at the median (stacks only).")
        )
        sec.blocks.append(Table(table, 2))
        daemons = sorted({str(f.get("daemon")) for f in figures if f.get("daemon")})
        if daemons:
            sec.blocks.append(Bullets([f"{d}: {COVERS.get(d, '?')}" for d in daemons]))
        out.append(sec)
    over = crosscheck.overhead(samples)
    if not over.empty:
        lim = crosscheck.limit(run_dir)
        text = (
            "Both clients against nullcri, a CRI server that answers every call at once (tools/nullcri, Go, "
            "k8s.io/cri-api): what remains is the client, gRPC and the unix socket, per op."
        )
        if lim:
            where = (
                f" (client on CPU {lim['client_cpu']}, nullcri on CPU {lim['server_cpu']})" if lim.get("pinned") else ""
            )
            text += (
                f" Null-target limit: {lim['ops_per_s']:.0f} CRI ops/s from one hopbench client thread{where}, "
                f"{lim['lifecycles']} lifecycles in {lim['seconds']:.1f} s."
            )
        out.append(Section("The harness's own cost (null CRI server)", [Para(text), Table(over, 0)], summary=True))
    levels = set(samples["level"].unique()) - {"cri-critest"} if not samples.empty else set()
    view = crosscheck.daemon_view(figures, levels)
    if not view.empty:
        out.append(
            Section(
                "The daemons' own clocks",
                [
                    Para(
                        "Each daemon's counters, read right before and after every burst of lifecycles, turned into "
                        "its mean time per call for each level and CRI method, beside the client's own log of the "
                        "same calls (timed and untimed, warm-up included on both sides). The gap is gRPC transport "
                        "plus the client."
                    ),
                    Table(view, 2),
                    Bullets([f"{d}: {COVERS.get(d, '?')}" for d in sorted(set(view["daemon"]))]),
                ],
                level=3,
            )
        )
    return out


def upgrade_sections(a: Analysis) -> list[Section]:
    t = a.upgrade
    if t.empty:
        return []
    pods = t[t["op"].isin(["pod start", "pod teardown"])]
    return [
        Section(
            "What the upgrade changes (newer version / older, p50 ratio, 95% bootstrap CI)",
            [
                Para(UPGRADE_TEXT),
                Bullets([upgrade.sentence(r) for _, r in pods.iterrows()]),
                Table(t, 3, summary=t.drop(columns=["p"])),
            ],
            summary=True,
        )
    ]


DRIVER_TEXT = (
    "Each stack ran twice on the same node in the same interleaved run: once with the systemd cgroup "
    "driver (runc, conmon and the runtime ask systemd over D-Bus for a transient scope per pod and "
    "container, as on a kubeadm node) and once with cgroupfs (they write the cgroup folders "
    "themselves). Pod start-up and teardown are summed per lifecycle at level cri, and through a "
    "kubelet (levels kubelet and kube: the phases up to PodReady, and PodDelete) whose own driver is "
    "its stack's, so that it also asks systemd for each pod's slice; the ratio is systemd / cgroupfs "
    "of the medians with a 95% percentile-bootstrap interval."
)


def driver_sections(a: Analysis) -> list[Section]:
    t = a.driver
    if t.empty:
        return []
    return [
        Section(
            "What the cgroup driver changes (systemd / cgroupfs, p50 ratio, 95% bootstrap CI)",
            [Para(DRIVER_TEXT), Bullets([driver.sentence(r) for _, r in t.iterrows()]), Table(t, 2)],
            summary=True,
        )
    ]


def hop_sections(a: Analysis, samples: pd.DataFrame) -> list[Section]:
    """Cross-level latencies, differential hop costs, the in-situ split and its check, the trace's own cost."""
    out: list[Section] = []
    levels = set(samples["level"].unique()) if not samples.empty else set()
    if "cri" in levels and levels & {"kube", "kubelet", "engine", "containerd", "oci"}:
        lat = hops.latencies(samples)
        if not lat.empty:
            wide = lat.pivot_table(index=["target", "cri op"], columns="level", values="p50 (ms)", sort=False)
            wide = wide[[lv for lv in hops.LEVEL_ORDER if lv in wide.columns]].reset_index()
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
        diff = a.hop_costs
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
        table = a.split
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
        overhead = hops.trace_overhead(samples)
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


KUBE_TEXT = (
    "Level `kube` creates each pod through the API server (loopback control plane: etcd, kube-apiserver, "
    "kube-scheduler) and watches it: **PodScheduled** is the create request until the watch shows the scheduler's "
    "binding, **SandboxReady** until the kubelet reports the sandbox and its network up "
    "(PodReadyToStartContainers), **PodReady** until every container runs and the pod is Ready, **PodDelete** the "
    "delete request until the watch shows the pod gone. Their sum to Ready is the pod startup the upstream SLI "
    "measures (creation to containers started, seen by a watch; SLO p99 ≤ 5 s per cluster-day). Level `kubelet` "
    "runs the same pod as a static pod on a standalone kubelet (no API server), polled every 10 ms. One kubelet "
    "v1.36 per stack, started by the agent for the level and stopped after it; pods are the `cri` level's "
    "(same image, workload, BestEffort, no service account token)."
)


def sampler_cost(sampler: dict[str, dict[str, Any]]) -> str:
    return "; ".join(
        f"{t}: {s.get('sweeps')} sweeps, {s.get('sweep_cpu_ms_mean') or 0:.1f} ms CPU each, "
        f"{100 * (s.get('cpu_share_of_one_core') or 0):.1f}% of one core, interval kept p50 "
        f"{s.get('interval_kept_ms_p50') or 0:.0f} ms (max {s.get('interval_kept_ms_max') or 0:.0f})"
        for t, s in sampler.items()
    )


def kube_sections(a: Analysis, meta: dict[str, Any]) -> list[Section]:
    """Pod startup through Kubernetes, the kubelet's own view of the CRI ops, its memory."""
    out: list[Section] = []
    if not a.kube_startup.empty:
        t = a.kube_startup
        out.append(
            Section(
                "Pod startup through the API server (level kube; creation to Ready, ms, 95% CI)",
                [Para(KUBE_TEXT), Table(t, 0)],
                summary=True,
            )
        )
    if not a.dockershim.empty:
        out.append(
            Section(
                "What moving dockershim out of kubelet costs per pod (concurrency 1, ms, 95% bootstrap CI)",
                [
                    Para(
                        "The same static pod on the same dockerd through level `dockershim` (kubelet 1.23, the last "
                        "with dockershim inside it, talking to dockerd itself) and level `kubelet` (kubelet 1.36 over "
                        "CRI to cri-dockerd, which talks to dockerd): manifest written until Ready, and manifest "
                        "removed until the pod is gone. Both kubelets run standalone (a 1.23 kubelet is too old "
                        "for a 1.36 API server) with the same pod network (the stack's CNI config) and pause image. "
                        "The difference holds the extra hop and thirteen minor versions of kubelet."
                    ),
                    Table(a.dockershim),
                    Para(
                        "The hop alone, as each kubelet times its runtime calls "
                        "(`kubelet_runtime_operations_duration_seconds`, mean per call over the level, every "
                        "concurrency): the in-process dockershim call against the gRPC call to cri-dockerd."
                    ),
                    Table(kube.dockershim_ops(a.kubelet_view)),
                ],
                summary=True,
            )
        )
    kubelet_tables = [
        (
            a.kubelet_view,
            "The kubelet's own view of each CRI op beside the cri level's",
            "From `kubelet_runtime_operations_duration_seconds`, scraped from each kubelet's loopback port before "
            "and after the level (its growth in between: every pod the kubelet ran, warm-up and every concurrency "
            "included); the p50 is read from the histogram's buckets. The `cri` level's figures are its measured "
            "lifecycles at every concurrency. A kubelet removes sandboxes lazily (garbage collection), so "
            "RemovePodSandbox may show no calls.",
        ),
        (
            a.kubelet_calls,
            "Every CRI call a kubelet made, per pod",
            "A kubelet asks far more than the seven lifecycle calls the `cri` level sends: status, list and version "
            "calls of its sync loop, PLEG and status manager, all of which the runtime serves while pods start.",
        ),
        (
            a.kubelet_slis,
            "The kubelet's pod start histograms",
            "`kubelet_pod_start_sli_duration_seconds` starts at the pod's creationTimestamp, which the API server "
            "stores in whole seconds: its mean runs up to a second above the watched startup. "
            "`kubelet_pod_start_duration_seconds` starts when the kubelet first sees the pod.",
        ),
    ]
    for frame, title, text in kubelet_tables:
        if not frame.empty:
            out.append(Section(title, [Para(text), Table(frame)], level=3))
    if not a.kubelet_memory.empty:
        out.append(
            Section(
                "Kubelet memory while the level ran (MiB)",
                [
                    Para(
                        "Sampled every second on the node (smaps_rollup, stat) while the level's pods started, ran and "
                        "went. Beside them the node e2e density tests' limits (kubelet 50-100 MiB RSS, runtime "
                        "500 MiB, at 35-100 pods per node): this run held at most the pods in the last column."
                    ),
                    Table(a.kubelet_memory),
                    Para(
                        "Sampler's own cost (it runs while pods are timed): "
                        + (
                            sampler_cost({t: s for t, s in meta.get("sampler", {}).items() if " " in t})
                            or "not recorded"
                        )
                        + "."
                    ),
                ],
                summary=True,
            )
        )
    return out


def density_sections(a: Analysis, samples: pd.DataFrame, meta: dict[str, Any]) -> list[Section]:
    memory = a.memory
    if memory.empty:
        return []
    table = a.memory_per_pod
    if table.empty:
        return [Section("Memory per pod (level density)", [Para("No hold sweep was recorded.", "bad")])]
    steps = density.by_step(memory)
    starts = density.start_latency(samples) if not samples.empty else pd.DataFrame()
    # Levels kube, kubelet and dockershim keep theirs as "<level> <target>".
    cost = sampler_cost({t: s for t, s in meta.get("sampler", {}).items() if " " not in t})
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
                Table(density.curve(memory), 2),
            ],
            level=3,
        ),
        Section(
            "Median per step (MB)", [Table(steps, 2), Para(f"Sampler's own cost: {cost or 'not recorded'}.")], level=3
        ),
    ]


def nightly_sections(a: Analysis, run_dir: Path, meta: dict[str, Any]) -> list[Section]:
    nightly = a.nightly
    if not nightly:
        return []
    from bench.controller.history import trend

    rows = pd.DataFrame(nightly.get("rows", []))
    section = Section(
        "Against the previous nights",
        [
            Para(
                f"Rolling baseline: the {len(nightly['baseline_runs'])} most recent complete run(s) of this scenario "
                f"on this node ({', '.join(nightly['baseline_runs']) or 'none yet'}). Each row's night is its log "
                "median; its noise is its own sampling noise plus the node's night-to-night drift, estimated from "
                "every row of the baseline. Two looks: tonight against the baseline, and tonight with the night "
                "before against the nights before those (persistence). Holm's correction over the night's rows at "
                f"alpha {nightly['alpha']:g} (a quiet night alarms with probability at most alpha); a rejected row "
                f"is a regression when its ratio is above {1 + nightly['threshold']:.2f} and its interval above 1. "
                "Rows with fewer than 3 earlier nights: *too few nights*. Method and simulated rates: "
                "bench/controller/gate.py."
            ),
            *([Para(str(nightly["control_sentence"]))] if nightly.get("control_sentence") else []),
            Para(
                f"{nightly['regressions']} regression(s), {nightly['improvements']} improvement(s) against "
                f"{len(nightly['baseline_runs'])} earlier run(s) (threshold {100 * nightly['threshold']:g}%).",
                "bad" if nightly["regressions"] else "ok",
            ),
        ],
        summary=True,
    )
    if not rows.empty:
        order = {"regression": 0, "improvement": 1, "clear but small": 3, "too few nights": 4, "no clear change": 5}
        rows = rows.assign(_o=rows["verdict"].map(order).fillna(2)).sort_values("_o").drop(columns="_o")
        flagged = rows[rows["verdict"] != "no clear change"]
        cols = ["stack", "handler", "level", "op", "concurrency", "p50_a_ms", "p50_b_ms", "ratio", "ratio_lo"]
        cols += [c for c in ("look",) if c in rows]
        section.blocks.append(Table(rows, 3, summary=flagged[[*cols, "ratio_hi", "p_value", "verdict"]]))
    history = trend(run_dir.parent, str(meta.get("scenario", {}).get("name")), str(meta.get("node")))
    if not history.empty and history["run_id"].nunique() > 1:
        threshold = float(nightly.get("threshold", 0.10))
        section.blocks.append(Image("p50 trend per op", trend_chart(history, rows, threshold)))
    return [section]


def cli_sections(samples: pd.DataFrame) -> list[Section]:
    if samples.empty or not (samples["level"] == "cli").any():
        return []
    return [
        Section(
            "Command line beside the API (p50, ms)",
            [
                Para(
                    "Whole commands timed by hyperfine (process start-up included; the workload runs `exit 0`). "
                    "*cri start* is RunPodSandbox + CreateContainer + StartContainer per lifecycle through CRI at "
                    "concurrency 1, what `crictl run` asks for in one process. *none/…* is the OCI runtime's own "
                    "`run` on a prepared bundle."
                ),
                Table(cli_vs_api(samples)),
            ],
        )
    ]


def closing_sections(meta: dict[str, Any], events: list[dict[str, Any]]) -> list[Section]:
    node = meta.get("node_facts", {})
    scen = meta.get("scenario", {})
    harness = meta.get("harness", {})
    os_name = node.get("os", {}).get("PRETTY_NAME") if isinstance(node.get("os"), dict) else None
    memory_gib = float(node.get("memory", {}).get("total_bytes", 0) or 0) / 2**30
    targets = pd.DataFrame(
        [
            {
                "target": t["target"],
                "available": "yes" if t["available"] else "no",
                "versions / reason": t.get("reason")
                or "; ".join(f"{k}: {v}" for k, v in t.get("versions", {}).items()),
            }
            for t in meta.get("targets", [])
        ]
    )
    env = {
        "harness": harness,
        "kernel": node.get("kernel"),
        "os": os_name,
        "cpu": node.get("cpu"),
        "memory": node.get("memory"),
        "cgroups": node.get("cgroups"),
        "capabilities": node.get("capabilities"),
        "init": node.get("init"),
        "stack conditions (cgroup driver, OCI wrapper, oom_score_adj clamp)": node.get("stacks"),
        # Debian packages on the node; the targets may run other builds (see Targets for their versions).
        "distribution packages (targets: see their versions)": node.get("packages"),
        "loadavg at start": node.get("loadavg"),
    }
    facts = [
        f"kernel {node.get('kernel', {}).get('release', '?')}, {os_name or '?'}, cgroups "
        f"{node.get('cgroups', {}).get('mode', '?')}, init {node.get('init', '?')}, "
        f"{node.get('cpu', {}).get('logical', '?')} CPUs "
        f"({node.get('cpu', {}).get('model', '?')}), memory {memory_gib:.1f} GiB",
        f"hopbench {harness.get('version', '?')}, commit {harness.get('commit')}"
        f"{' (dirty)' if harness.get('dirty') else ''}",
    ]
    conditions = node.get("stacks") or {}
    for t in meta.get("targets", []):
        if t.get("available"):
            versions = "; ".join(f"{k} {v}" for k, v in t.get("versions", {}).items())
            c = conditions.get(t["target"].split("/")[0]) or {}
            how = (
                f" (cgroup driver {c['cgroup_driver']}; OCI wrapper in the timed path"
                f"{', clamping oom_score_adj' if c.get('oom_score_adj_clamped') else ''})"
                if c
                else ""
            )
            facts.append(f"{t.get('node', meta.get('node'))} {t['target']}: {versions}{how}")
    out = [
        Section("Method", [Para(METHOD)], summary=True),
        Section("Targets", [Table(targets)] if not targets.empty else [Para("No target.")]),
        Section("Environment", [Bullets(facts)], summary=True),
        Section("Environment in full", [Pre(json.dumps(env, indent=2, default=str))], level=3),
        Section(
            "Scenario",
            [Para(f"{scen.get('path', '')}, sha256 {scen.get('sha256', '')}"), Pre(str(meta.get("scenario_text", "")))],
        ),
        Section("Citation", [Pre(cite.citation(meta))], summary=True),
        Section("Reproduce", [Pre(str(meta.get("command", "")))], summary=True),
    ]
    if events:
        items = [f"{_when(ev, meta)} {ev.get('event', '')}: {ev.get('message', '')}" for ev in events[:200]]
        out.append(Section("Warnings and errors", [Bullets(items)]))
    return out


def _when(event: dict[str, Any], meta: dict[str, Any]) -> str:
    """When the controller heard of an event: UTC time and seconds into the run ('' when unknown)."""
    at = event.get("wall_time")
    if not isinstance(at, int | float):
        return ""
    clock = dt.datetime.fromtimestamp(at, dt.UTC)
    try:
        into = f" (+{at - dt.datetime.fromisoformat(str(meta.get('started_at'))).timestamp():.0f} s)"
    except ValueError:
        into = ""
    return f"{clock:%H:%M:%S}{into}"


def failure_sections(
    meta: dict[str, Any], events: list[dict[str, Any]], checks: Sequence[dict[str, Any]] = ()
) -> list[Section]:
    """What went wrong during the run, and when: each error (a target abandoned, a level that could
    not open or close, a node lost), each failed lifecycle (a warning naming its target) and each
    failed workload check (every op answered ok, but the container did not do what they said: a
    StopContainer that returned while the shim was dead left it running), first in the summary, so
    a number is never read without it."""
    wrong = [e for e in events if e.get("event") == "error" or (e.get("event") == "warning" and e.get("target"))]
    failed_checks = [c for c in checks if not c.get("ok")]
    if not wrong and not failed_checks:
        return []
    rows = pd.DataFrame(
        [
            {
                "when (UTC)": _when(e, meta),
                "node": e.get("node", ""),
                "target": e.get("target", "") or "-",
                "what": ("" if e.get("event") == "error" else "lifecycle failed: ") + str(e.get("message", "")),
            }
            for e in wrong[:100]
        ]
        + [
            {
                "when (UTC)": "",
                "node": c.get("node", ""),
                "target": c.get("target", "") or "-",
                "what": f"check failed: {c.get('target', '')} {c.get('level', '')} iteration {c.get('iteration', '?')} "
                f"at {c.get('concurrency', '?')} in flight, {c.get('check', '')}: {c.get('detail', '')}",
            }
            for c in failed_checks[:100]
        ]
    )
    errors = sum(e.get("event") == "error" for e in wrong)
    hit = sorted({str(e.get("target")) for e in [*wrong, *failed_checks] if e.get("target")})
    say = (
        f"{errors} error(s), {len(wrong) - errors} failed lifecycle(s) and {len(failed_checks)} failed workload "
        f"check(s) during the run, on {', '.join(hit) or 'the node'}. A failed lifecycle has no figure; a failed "
        "check's lifecycle has figures for ops that answered ok without doing their work (see Workload checks); an "
        "abandoned target's figures stop where it was abandoned (every sample taken before is kept); the other "
        "targets ran to the end."
    )
    return [Section("What went wrong, and when", [Para(say, "bad"), Table(rows)], summary=True)]


CRASH_LEFTOVER = "left behind by a crash"


def crash_leftover_sections(meta: dict[str, Any], events: list[dict[str, Any]]) -> list[Section]:
    """Shims and conmons an earlier crash left running, which the sweep removed before this run
    measured (bench.node.targets.remove_orphan_monitors): a reader should know the node was
    cleaned, and what the daemon's log said of each."""
    found = [e for e in events if e.get("event") == "warning" and CRASH_LEFTOVER in str(e.get("message", ""))]
    if not found:
        return []
    rows = pd.DataFrame(
        [{"when (UTC)": _when(e, meta), "node": e.get("node", ""), "what": str(e.get("message", ""))} for e in found]
    )
    say = (
        f"{len(found)} monitor process(es) left behind by a crash of an earlier run's daemon were found and "
        "removed before measuring; none of this run's samples includes them."
    )
    return [Section("Left behind by a crash, removed before the run", [Para(say), Table(rows)], summary=True)]


def model(run_dir: Path) -> Report:
    """The report of one run, every section built once."""
    return _model(run_dir)[0]


def _model(run_dir: Path) -> tuple[Report, dict[str, Any], headline.Headline]:
    """The report, the run's meta and its headline (which adr.md reuses rather than recomputes)."""
    meta, samples = load_run(run_dir)
    checks = read_jsonl(run_dir / "checks.jsonl")
    events = [e for e in read_jsonl(run_dir / "events.jsonl") if e.get("event") in ("warning", "error")]
    summary = stats.summarize(samples)
    a = analyse(run_dir, samples)
    interleaved = meta.get("scenario", {}).get("schedule") == "interleaved"
    head = headline.build(samples, interleaved, a.memory_per_pod, a.hop_costs)
    report = Report(
        f"hopbench run {meta['run_id']}",
        [
            *header_sections(meta, checks),
            *failure_sections(meta, events, checks),
            *crash_leftover_sections(meta, events),
            *headline_sections(head, summary),
            *checks_sections(checks),
            *latency_sections(samples, summary),
            *sweep_sections(run_dir, samples),
            *conditions_sections(samples, summary, meta),
            *crosscheck_sections(run_dir, samples, meta),
            *upgrade_sections(a),
            *driver_sections(a),
            *hop_sections(a, samples),
            *kube_sections(a, meta),
            *density_sections(a, samples, meta),
            *nightly_sections(a, run_dir, meta),
            *cli_sections(samples),
            *closing_sections(meta, events),
        ],
    )
    return report, meta, head


def build_report(run_dir: Path, adr: bool = False) -> Path:
    """Write report.html (every section) and report.md (the summary) into the run folder; with
    `adr`, also adr.md, the decision-record section (bench.controller.cite.adr)."""
    report, meta, head = _model(run_dir)
    out = run_dir / "report.html"
    out.write_text(to_html(report))
    (run_dir / "report.md").write_text(to_markdown(report))
    if adr:
        (run_dir / "adr.md").write_text(cite.adr(meta, head))
    return out


def _load_nightly(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "nightly.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def trend_chart(trend: pd.DataFrame, baseline: pd.DataFrame | None = None, threshold: float = 0.10) -> str:
    """p50 per run over time, one panel per target, one line per op (lowest concurrency). With the
    nightly rows (`baseline`: p50_a_ms, the baseline nights' p50), each op gets its baseline band:
    from p50/(1 + threshold) to p50 * (1 + threshold) over the baseline nights, the range inside
    which tonight's p50 cannot be a regression beyond the threshold."""
    t = trend[trend["concurrency"] == trend["concurrency"].min()].copy()
    t["target"] = t["stack"] + "/" + t["handler"] + " " + t["level"]
    targets = sorted(t["target"].unique())
    base: dict[tuple[str, str], float] = {}
    if baseline is not None and not baseline.empty and "p50_a_ms" in baseline:
        b = baseline[baseline["concurrency"] == t["concurrency"].min()]
        for r in b.itertuples():
            base[(f"{r.stack}/{r.handler} {r.level}", str(r.op))] = float(r.p50_a_ms)
    tonight = str(t.sort_values("started_at")["run_id"].iloc[-1]) if not t.empty else ""
    fig, axes = plt.subplots(len(targets), 1, figsize=(9, 2.6 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets, strict=True):
        g = t[t["target"] == target]
        for op, og in g.groupby("op"):
            og = og.sort_values("started_at")
            when = pd.to_datetime(og["started_at"])
            (line,) = ax.plot(when, og["ms"], ".-", label=str(op))
            p50 = base.get((str(target), str(op)))
            earlier = when[og["run_id"] != tonight]
            if p50 is not None and len(earlier):
                span = [earlier.min(), when.max()]
                ax.fill_between(span, p50 / (1 + threshold), p50 * (1 + threshold), color=line.get_color(), alpha=0.12)
        ax.set_title(target, loc="left", fontsize=10)
        ax.set_ylabel("p50 (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    if base:
        axes[-1, 0].set_xlabel(f"shaded: each op's baseline p50 within ±{100 * threshold:g}% (no regression inside)")
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)
