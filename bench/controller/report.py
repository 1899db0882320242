"""The self-contained HTML report of one run (charts inlined as PNG, no external files)."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.controller import density, hops, stats, upgrade  # noqa: E402
from bench.controller.results import load_memory, load_run, read_jsonl  # noqa: E402
from bench.ops import PARTS  # noqa: E402

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
pre{background:#f7f7f7;padding:.75rem;overflow-x:auto;font-size:.85rem}
.bad{color:#a00;font-weight:bold}.ok{color:#070}
img{max-width:100%}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _measured_series(samples: pd.DataFrame) -> pd.DataFrame:
    """Measured samples with `ms` and a `series` label: target, level and concurrency."""
    m = stats.measured_ms(samples)
    return m.assign(series=m["stack"] + "/" + m["handler"] + " " + m["level"] + " c=" + m["concurrency"].astype(str))


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
    for ax, op in zip(axes[:, 0], ops, strict=True):
        series = per_op[op]
        data = [measured[(measured["op"] == op) & (measured["series"] == s)]["ms"].to_numpy() for s in series]
        ax.boxplot(data, orientation="horizontal", widths=0.6, showfliers=False, tick_labels=series)
        for i, d in enumerate(data, start=1):
            ax.scatter(d, i + rng.uniform(-0.18, 0.18, len(d)), s=6, alpha=0.45, color="tab:blue")
        ax.set_xscale("log")
        ax.set_xlim(lo * 0.8, hi * 1.25)
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(op, loc="left", fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("latency (ms, log scale); box: quartiles, whiskers 1.5 IQR, dots: every sample")
    fig.tight_layout()
    return _png(fig)


def cdf_chart(samples: pd.DataFrame) -> str:
    """Empirical CDF of each op, one line per target/level/concurrency, in a grid of panels."""
    measured = _measured_series(samples)
    ops = stats.op_order(list(measured["op"].unique()))
    cols = 3
    rows = (len(ops) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, op in zip(axes.flat, ops, strict=False):
        for series, g in measured[measured["op"] == op].groupby("series"):
            x = np.sort(g["ms"].to_numpy())
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=str(series))
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


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def summary_table(summary: pd.DataFrame) -> str:
    head = (
        "<tr><th class=l>target</th><th class=l>level</th><th>conc.</th><th class=l>op</th><th>n</th><th>p50 ms</th>"
        "<th>p50 95% CI</th><th>p90 ms</th><th>p99 ms</th><th>failed</th><th>warm-up</th></tr>"
    )
    order = {op: i for i, op in enumerate(stats.op_order(list(summary["op"].unique())))}
    summary = summary.assign(_o=summary["op"].map(order)).sort_values(
        ["stack", "handler", "level", "concurrency", "_o"]
    )
    rows = []
    for r in summary.itertuples():
        failed = f"<span class=bad>{r.failed}</span>" if r.failed else "0"
        rows.append(
            f"<tr><td class=l>{html.escape(r.stack)}/{html.escape(r.handler)}</td>"
            f"<td class=l>{html.escape(r.level)}</td><td>{r.concurrency}</td>"
            f"<td class=l>{html.escape(r.op)}</td><td>{r.n}</td><td>{_fmt(getattr(r, 'p50_ms', None))}</td>"
            f"<td>{_fmt(getattr(r, 'p50_lo_ms', None))} – {_fmt(getattr(r, 'p50_hi_ms', None))}</td>"
            f"<td>{_fmt(getattr(r, 'p90_ms', None))}</td><td>{_fmt(getattr(r, 'p99_ms', None))}</td>"
            f"<td>{failed}</td><td>{r.warmup}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


START_OPS = ("RunPodSandbox", "CreateContainer", "StartContainer")
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
    labels = [f"{r.target}  {r._2}" for r in t[["target", "cri op"]].itertuples()]
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
    fig, axes = plt.subplots(1, len(targets) + 2, figsize=(4.2 * (len(targets) + 2), 3.6), squeeze=False)
    colours = {"daemons": "#6baed6", "shims": "#fd8d3c", "pods": "#74c476"}
    for ax, target in zip(axes[0], targets, strict=False):
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
    ax = axes[0][len(targets)]
    x = np.arange(len(table))
    for offset, kind, colour in ((-0.2, "PSS", "#3182bd"), (0.2, "RSS", "#bdbdbd")):
        mid = table[f"per pod {kind} (MB)"].to_numpy(dtype=float)
        err = [mid - table[f"per pod {kind} CI low"].to_numpy(dtype=float), table[f"per pod {kind} CI high"] - mid]
        ax.bar(x + offset, mid, width=0.4, yerr=err, capsize=3, color=colour, label=kind)
    ax.set_xticks(x, table["target"], fontsize=8)
    ax.set_ylabel("MB per running pod (95% CI)")
    ax.set_title("memory per pod", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[0][len(targets) + 1]
    for target, g in starts.groupby("target") if not starts.empty else []:
        ax.plot(g["pods running"], g["ms"], ".-", label=target)
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


def analyse(run_dir: Path, samples: pd.DataFrame) -> Analysis:
    levels = set(samples["level"]) if not samples.empty else set()
    has_lower = "cri" in levels and bool(levels & {"engine", "containerd", "oci"})
    splits = load_splits(run_dir)
    memory = load_memory(run_dir)
    return Analysis(
        hop_costs=hops.differential(samples) if has_lower else pd.DataFrame(),
        split=hops.split_table(splits) if not splits.empty else pd.DataFrame(),
        memory=memory,
        memory_per_pod=density.overhead(memory) if not memory.empty else pd.DataFrame(),
        nightly=_load_nightly(run_dir),
        upgrade=upgrade.version_changes(samples),
    )


UPGRADE_TEXT = (
    "Instances of one stack at different versions ran side by side in this run, interleaved in the "
    "same node and time. Ratio = p50 of the newer version / p50 of the older (below 1: faster after "
    "the upgrade), with a 95% percentile-bootstrap interval; the verdict is as in hopbench compare "
    "(clear: interval excludes 1 and Mann-Whitney p < 0.05; regression or improvement beyond 10%). "
    "<i>pod start</i> and <i>pod teardown</i> sum the CRI ops kubelet waits for, per lifecycle."
)


def upgrade_sections(a: Analysis) -> list[str]:
    t = a.upgrade
    if t.empty:
        return []
    return [
        "<h2>What the upgrade changes (newer version / older, per op)</h2>",
        f"<p>{UPGRADE_TEXT}</p>",
        "<ul>"
        + "".join(
            f"<li>{html.escape(upgrade.sentence(r))}</li>"
            for _, r in t[t["op"].isin(["pod start", "pod teardown"])].iterrows()
        )
        + "</ul>",
        t.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:.3g}", border=0),
    ]


def density_sections(a: Analysis, samples: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    memory = a.memory
    if memory.empty:
        return []
    table = a.memory_per_pod
    steps = density.by_step(memory)
    if table.empty:
        return ["<h2>Memory per pod</h2><p class=bad>No hold sweep was recorded.</p>"]
    starts = density.start_latency(samples) if not samples.empty else pd.DataFrame()
    fmt = {"float_format": lambda x: f"{x:.2f}", "border": 0, "index": False}
    sampler = meta.get("sampler", {})
    cost = "; ".join(
        f"{html.escape(t)}: {s.get('sweeps')} sweeps, {s.get('sweep_cpu_ms_mean') or 0:.1f} ms CPU each, "
        f"{100 * (s.get('cpu_share_of_one_core') or 0):.1f}% of one core, interval kept p50 "
        f"{s.get('interval_kept_ms_p50') or 0:.0f} ms (max {s.get('interval_kept_ms_max') or 0:.0f})"
        for t, s in sampler.items()
    )
    return [
        "<h2>Memory per pod (level density)</h2>",
        "<p>Each target is filled with running pods step by step; a sampler on the node reads RSS, PSS and USS of "
        "the stack's daemons, its shims (attributed to pods through the container id on their command line) and "
        "the pods' processes (attributed by their pod cgroup). Per pod is the slope of a least-squares line of "
        "daemons + shims + pods against the pods running, over every sweep taken while the pods of a step ran, "
        "with a 95% bootstrap interval. PSS shares pages among their users and is the figure to budget with; "
        "RSS counts shared pages once per process.</p>",
        f"<img alt='memory against pods' src='{density_chart(steps, table, starts)}'>",
        table.to_html(**fmt),
        "<h3>Median per step (MB)</h3>",
        steps.to_html(**fmt),
        f"<p>Sampler's own cost: {cost or 'not recorded'}.</p>",
    ]


def load_splits(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(read_jsonl(run_dir / "splits.jsonl"))


def hop_sections(a: Analysis, samples: pd.DataFrame) -> list[str]:
    """Cross-level latencies, differential hop costs, the in-situ split and its check, the trace's own cost."""
    out: list[str] = []
    fmt = {"float_format": lambda x: f"{x:.1f}", "border": 0, "index": False}
    levels = set(samples["level"]) if not samples.empty else set()
    if "cri" in levels and levels & {"engine", "containerd", "oci"}:
        lat = hops.latencies(samples)
        if not lat.empty:
            wide = lat.pivot_table(index=["target", "cri op"], columns="level", values="p50 (ms)", sort=False)
            wide = wide[[lv for lv in hops.LEVEL_ORDER if lv in wide.columns]].reset_index()
            out += [
                "<h2>The same work at each level (p50 per lifecycle, ms, concurrency 1)</h2>",
                "<p>Each cell sums the ops of that level that do what the CRI op does (mapping in "
                "<code>bench/controller/hops.py</code>, checked against the runtime calls the split level recorded). "
                "<code>oci</code> is the runtime binary alone, shared by every stack.</p>",
                wide.to_html(na_rep="–", **fmt),
            ]
        diff = a.hop_costs
        if not diff.empty:
            out += [
                "<h2>Hop cost between adjacent levels (differential, concurrency 1)</h2>",
                "<p>Median of the upper level's ops minus the median of the lower level's, per lifecycle, with a "
                "95% percentile-bootstrap interval (both sides resampled). A hop's cost includes waiting: "
                "StopContainer returns once the process has exited, the runtime's <code>kill</code> once the signal "
                "is sent.</p>",
                diff.to_html(**fmt),
            ]
    if "split" in levels:
        table = a.split
        if not table.empty:
            worst = table.loc[table["gap %"].abs().idxmax()]
            bad = table[~table["adds up"]]
            verdict = (
                f"<p class=ok>Every op's part medians add up to its median within 5% "
                f"(largest gap {worst['gap %']:+.1f}%, {html.escape(str(worst['target']))} {worst['cri op']}).</p>"
                if bad.empty
                else f"<p class=bad>{len(bad)} op(s) whose part medians miss the op median by more than 5%: "
                + ", ".join(f"{html.escape(str(r.target))} {r._2} {r._11:+.1f}%" for r in bad.itertuples())
                + ".</p>"
            )
            out += [
                "<h2>Where each CRI op's time goes (in-situ split, concurrency 1)</h2>",
                "<p>Level <code>split</code> repeats the CRI lifecycles with every OCI runtime and CNI plugin call "
                "timed by the wrapper the stacks run them through (same monotonic clock as the CRI call). Each op "
                "is cut into: <b>before</b> the first call (the CRI server and the daemons under it), <b>network</b> "
                "(CNI calls: the pod network of RunPodSandbox, its teardown), <b>runtime</b> (inside the OCI "
                "runtime's calls), <b>between</b> calls (shim and daemon work between two calls), <b>after</b> the "
                "last call. The parts of each sample add up to it exactly; the table gives each part's median and "
                "whether those medians add up to the op's median.</p>",
                verdict,
                f"<img alt='stacked split per op' src='{split_chart(table)}'>",
                table.to_html(**fmt),
            ]
        overhead = hops.trace_overhead(samples)
        if not overhead.empty:
            out += [
                "<h3>What recording the calls costs</h3>",
                "<p>The same op's median with the trace on (level split) and off (level cri), run one after the "
                "other in this run: the wrapper forks and waits for the runtime instead of exec'ing it while "
                "recording.</p>",
                overhead.to_html(**fmt),
            ]
    return out


def cli_vs_api(samples: pd.DataFrame) -> pd.DataFrame:
    """Starting a pod through each stack's CLI beside the same work through CRI.

    For the cri level the per-lifecycle sum of RunPodSandbox, CreateContainer and
    StartContainer (concurrency 1, warm-up excluded) is what `crictl run` asks for in one
    process; the difference is the CLI's own cost (process start-up, config parsing, its
    extra status calls)."""
    ok = samples[samples["ok"] & ~samples["warmup"] & (samples["concurrency"] == 1)]
    rows = []
    for (stack, handler), g in ok.groupby(["stack", "handler"], sort=True):
        per_life = hops.per_lifecycle_ms(g[g["level"] == "cri"], START_OPS)
        row: dict[str, object] = {"target": f"{stack}/{handler}"}
        row["cri start (ms)"] = float(np.median(per_life)) if len(per_life) else float("nan")
        for op, cg in g[g["level"] == "cli"].groupby("op"):
            row[f"{op} (ms)"] = float((cg["duration_ns"] / 1e6).median())
        if len(row) > 2 or stack == "none":
            rows.append(row)
    return pd.DataFrame(rows)


def build_report(run_dir: Path) -> Path:
    meta, samples = load_run(run_dir)
    checks = read_jsonl(run_dir / "checks.jsonl")
    events = [e for e in read_jsonl(run_dir / "events.jsonl") if e.get("event") in ("warning", "error")]
    summary = stats.summarize(samples)
    node = meta.get("node_facts", {})
    scen = meta.get("scenario", {})
    passed = sum(1 for c in checks if c.get("ok"))
    failed_checks = [c for c in checks if not c.get("ok")]
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>hopbench {e(meta['run_id'])}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>hopbench run {e(meta['run_id'])}</h1>",
        f"<p>Scenario <b>{e(scen.get('name', '?'))}</b> on node <b>{e(meta.get('node', '?'))}</b>, "
        f"{e(str(meta.get('started_at', '?')))} → {e(str(meta.get('ended_at', '?')))}, status "
        f"<b class={'ok' if meta.get('status') == 'complete' else 'bad'}>{e(str(meta.get('status')))}</b>.</p>",
        f"<p>{e(scen.get('description', ''))}</p>",
        "<h2>Workload checks</h2>",
        f"<p>{passed} pod lifecycles verified through CRI (container running with its ready line, then exited 0 "
        f"after StopContainer); <span class={'bad' if failed_checks else 'ok'}>{len(failed_checks)} failed</span>.</p>",
    ]
    if failed_checks:
        parts.append("<ul>" + "".join(f"<li>{e(json.dumps(c))}</li>" for c in failed_checks[:20]) + "</ul>")
    parts.append("<h2>Latency per op</h2>")
    if samples.empty:
        parts.append("<p class=bad>No samples.</p>")
    else:
        parts.append(summary_table(summary))
        if (samples["ok"] & ~samples["warmup"]).any():
            parts.append(f"<img alt='latency distribution per op' src='{latency_chart(samples)}'>")
            parts.append("<h3>Cumulative distributions</h3>")
            parts.append(f"<img alt='latency CDF per op' src='{cdf_chart(samples)}'>")
        else:
            parts.append("<p class=bad>No successful measured sample: no chart.</p>")
    analysis = analyse(run_dir, samples)
    parts += upgrade_sections(analysis)
    parts += hop_sections(analysis, samples)
    parts += density_sections(analysis, samples, meta)
    parts += nightly_sections(analysis, run_dir, meta)
    if not samples.empty and (samples["level"] == "cli").any():
        table = cli_vs_api(samples)
        parts += [
            "<h2>Command line beside the API (p50, ms)</h2>",
            "<p>Whole commands timed by hyperfine (process start-up included; the workload runs "
            "<code>exit 0</code>). <i>cri start</i> is RunPodSandbox + CreateContainer + StartContainer per "
            "lifecycle through CRI at concurrency 1, what <code>crictl run</code> asks for in one process. "
            "<i>none/…</i> is the OCI runtime's own <code>run</code> on a prepared bundle.</p>",
            table.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:.1f}", border=0),
        ]
    parts += [
        "<h2>Method</h2>",
        "<p>Each op is timed on the node with the monotonic clock around the single CRI gRPC call, nothing else "
        "inside the interval. The requests are those kubelet sends for an ordinary BestEffort pod (see "
        "<code>bench/kubelet.py</code>). Warm-up lifecycles are kept in the data and excluded from the "
        "statistics; failed calls are counted, not timed. p50's interval is distribution-free (binomial order "
        "statistics); missing bounds mean too few samples. No outlier is removed. Samples of level "
        "<code>cli</code> are whole commands timed by hyperfine (its warm-up runs are not kept); their "
        "<code>start_ns</code> is the start of the hyperfine invocation, not of each run.</p>",
        "<h2>Targets</h2><table><tr><th class=l>target</th><th class=l>available</th>"
        "<th class=l>versions / reason</th></tr>",
    ]
    for t in meta.get("targets", []):
        detail = t.get("reason") or "; ".join(f"{k}: {v}" for k, v in t.get("versions", {}).items())
        parts.append(
            f"<tr><td class=l>{e(t['target'])}</td><td class=l>{'yes' if t['available'] else 'no'}</td>"
            f"<td class=l>{e(detail)}</td></tr>"
        )
    parts.append("</table>")
    env = {
        "harness": meta.get("harness", {}),
        "kernel": node.get("kernel"),
        "os": node.get("os", {}).get("PRETTY_NAME") if isinstance(node.get("os"), dict) else None,
        "cpu": node.get("cpu"),
        "memory": node.get("memory"),
        "cgroups": node.get("cgroups"),
        "capabilities": node.get("capabilities"),
        "init": node.get("init"),
        # Debian packages on the node; the targets may run other builds (see Targets for their versions).
        "distribution packages (targets: see their versions)": node.get("packages"),
        "loadavg at start": node.get("loadavg"),
    }
    parts += [
        "<h2>Environment</h2>",
        f"<pre>{e(json.dumps(env, indent=2, default=str))}</pre>",
        "<h2>Scenario</h2>",
        f"<p>{e(scen.get('path', ''))}, sha256 {e(scen.get('sha256', ''))}</p>",
        f"<pre>{e(meta.get('scenario_text', ''))}</pre>",
        "<h2>Reproduce</h2>",
        f"<pre>{e(meta.get('command', ''))}</pre>",
    ]
    if events:
        parts.append("<h2>Warnings and errors</h2><ul>")
        parts += [f"<li>{e(ev.get('event', ''))}: {e(str(ev.get('message', '')))}</li>" for ev in events[:200]]
        parts.append("</ul>")
    parts.append("</body></html>")
    out = run_dir / "report.html"
    out.write_text("\n".join(parts))
    (run_dir / "report.md").write_text(markdown_summary(analysis, meta, samples, summary, passed, failed_checks))
    return out


def _md_table(frame: pd.DataFrame, digits: int = 1) -> str:
    if frame.empty:
        return "_none_\n"
    cols = list(frame.columns)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """p50 [95% CI] per op (rows) and target (columns), level cri at concurrency 1 (else the first level)."""
    if summary.empty:
        return pd.DataFrame()
    level = "cri" if (summary["level"] == "cri").any() else str(summary["level"].iloc[0])
    s = summary[(summary["level"] == level) & (summary["concurrency"] == summary["concurrency"].min())].copy()
    s["target"] = s["stack"] + "/" + s["handler"]
    if s["node"].nunique() > 1:
        s["target"] = s["node"] + " " + s["target"]
    s["cell"] = [f"{r.p50_ms:.1f} [{_fmt(r.p50_lo_ms)}, {_fmt(r.p50_hi_ms)}]" if r.n else "–" for r in s.itertuples()]
    wide = s.pivot_table(index="op", columns="target", values="cell", aggfunc="first")
    order = stats.op_order(list(wide.index))
    return wide.loc[order].reset_index().rename(columns={"op": f"op ({level}, p50 ms [95% CI])"})


def markdown_summary(
    a: Analysis,
    meta: dict[str, Any],
    samples: pd.DataFrame,
    summary: pd.DataFrame,
    passed: int,
    failed_checks: list[dict[str, Any]],
) -> str:
    """A summary for an architecture decision record: headline numbers, method, environment, reproduce."""
    scen = meta.get("scenario", {})
    node = meta.get("node_facts", {})
    os_name = node.get("os", {}).get("PRETTY_NAME") if isinstance(node.get("os"), dict) else None
    memory_gib = float(node.get("memory", {}).get("total_bytes", 0) or 0) / 2**30
    lines = [
        f"# hopbench run {meta['run_id']}",
        "",
        f"Scenario **{scen.get('name', '?')}** (sha256 `{str(scen.get('sha256', ''))[:16]}`) on node(s) "
        f"**{meta.get('node', '?')}**, {meta.get('started_at', '?')} → {meta.get('ended_at', '?')}, "
        f"status **{meta.get('status')}**. {passed} workload checks passed, {len(failed_checks)} failed.",
        "",
        "## Headline",
        "",
        _md_table(headline(summary)),
    ]
    if not a.upgrade.empty:
        t = a.upgrade
        lines += [
            "## What the upgrade changes (newer / older, p50 ratio, 95% bootstrap CI)",
            "",
            *[f"- {upgrade.sentence(r)}" for _, r in t[t["op"].isin(["pod start", "pod teardown"])].iterrows()],
            "",
            _md_table(t.drop(columns=["p"]), 3),
        ]
    diff = a.hop_costs
    if not diff.empty:
        lines += [
            "## Hop costs (ms, 95% bootstrap CI)",
            "",
            _md_table(diff[["target", "cri op", "hop", "hop cost (ms)", "CI low", "CI high"]]),
        ]
    table = a.split
    if not table.empty:
        cols = ["target", "cri op", "op p50 (ms)", *[f"{p} (ms)" for p in PARTS], "gap %"]
        lines += ["## Where each CRI op's time goes (medians, ms)", "", _md_table(table[cols])]
    mem = a.memory_per_pod
    if not mem.empty:
        cols = [
            "target",
            "daemons at 0 pods PSS (MB)",
            "per pod PSS (MB)",
            "per pod PSS CI low",
            "per pod PSS CI high",
            "per pod RSS (MB)",
            "shims per pod PSS (MB)",
        ]
        lines += ["## Memory per running pod", "", _md_table(mem[cols], 2)]
    nightly = a.nightly
    if nightly:
        rows = pd.DataFrame(nightly.get("rows", []))
        lines += [
            "## Against the previous nights",
            "",
            f"{nightly['regressions']} regression(s), {nightly['improvements']} improvement(s) against "
            f"{len(nightly['baseline_runs'])} earlier run(s) (threshold {100 * nightly['threshold']:g}%).",
            "",
        ]
        if not rows.empty:
            flagged = rows[rows["verdict"] != "no clear change"]
            cols = ["stack", "handler", "level", "op", "concurrency", "p50_a_ms", "p50_b_ms", "ratio", "ratio_lo"]
            lines += [_md_table(flagged[[*cols, "ratio_hi", "p_value", "verdict"]], 3)]
    lines += [
        "## Method",
        "",
        "Each op is timed on the node with the monotonic clock around one call (CRI gRPC, Engine API, containerd "
        "API or the runtime binary). Warm-up lifecycles are kept and excluded; failed calls are counted, not timed; "
        "no outlier is removed. p50 intervals are distribution-free (binomial order statistics); hop costs, ratios "
        "and memory slopes use percentile bootstraps; run comparisons add a Mann-Whitney U test.",
        "",
        "## Environment",
        "",
        f"- kernel {node.get('kernel', {}).get('release', '?')}, {os_name or '?'}, cgroups "
        f"{node.get('cgroups', {}).get('mode', '?')}, {node.get('cpu', {}).get('logical', '?')} CPUs "
        f"({node.get('cpu', {}).get('model', '?')}), memory {memory_gib:.1f} GiB",
        f"- hopbench {meta.get('harness', {}).get('version', '?')}, commit {meta.get('harness', {}).get('commit')}"
        f"{' (dirty)' if meta.get('harness', {}).get('dirty') else ''}",
    ]
    for t in meta.get("targets", []):
        if t.get("available"):
            versions = "; ".join(f"{k} {v}" for k, v in t.get("versions", {}).items())
            lines.append(f"- {t.get('node', meta.get('node'))} {t['target']}: {versions}")
    lines += ["", "## Reproduce", "", "```", str(meta.get("command", "")), "```", ""]
    return "\n".join(lines)


def _load_nightly(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "nightly.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def trend_chart(trend: pd.DataFrame) -> str:
    """p50 per run over time, one panel per target, one line per op (lowest concurrency)."""
    t = trend[trend["concurrency"] == trend["concurrency"].min()].copy()
    t["target"] = t["stack"] + "/" + t["handler"] + " " + t["level"]
    targets = sorted(t["target"].unique())
    fig, axes = plt.subplots(len(targets), 1, figsize=(9, 2.6 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets, strict=True):
        g = t[t["target"] == target]
        for op, og in g.groupby("op"):
            og = og.sort_values("started_at")
            ax.plot(pd.to_datetime(og["started_at"]), og["ms"], ".-", label=str(op))
        ax.set_title(target, loc="left", fontsize=10)
        ax.set_ylabel("p50 (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def nightly_sections(a: Analysis, run_dir: Path, meta: dict[str, Any]) -> list[str]:
    nightly = a.nightly
    if not nightly:
        return []
    from bench.controller.history import trend

    rows = pd.DataFrame(nightly.get("rows", []))
    e = html.escape
    out = [
        "<h2>Against the previous nights</h2>",
        f"<p>Rolling baseline: the {len(nightly['baseline_runs'])} most recent complete run(s) of this scenario on "
        f"this node, pooled ({e(', '.join(nightly['baseline_runs'])) or 'none yet'}). A regression is a clear change "
        f"(bootstrap interval of the ratio of medians excludes 1, Mann-Whitney p &lt; {nightly['alpha']:g}) whose "
        f"ratio is above {1 + nightly['threshold']:.2f}, confirmed against the spread between nights: tonight's "
        "median beyond every baseline night's, with at least 3 baseline nights (else <i>unconfirmed</i>).</p>",
        f"<p class={'bad' if nightly['regressions'] else 'ok'}>{nightly['regressions']} regression(s), "
        f"{nightly['improvements']} improvement(s).</p>",
    ]
    if not rows.empty:
        order = {"regression": 0, "improvement": 1, "clear but small": 3, "no clear change": 4}
        rows = rows.assign(_o=rows["verdict"].map(order).fillna(2)).sort_values("_o").drop(columns="_o")
        out.append(rows.to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0))
    history = trend(run_dir.parent, str(meta.get("scenario", {}).get("name")), str(meta.get("node")))
    if not history.empty and history["run_id"].nunique() > 1:
        out.append(f"<img alt='p50 trend per op' src='{trend_chart(history)}'>")
    return out
