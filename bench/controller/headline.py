"""The answer on the first screen: which stack starts and stops a pod faster, by how much, how sure.

Per target (stack/handler, at level cri, one pod at a time, warm-up excluded):

- pod start-up: RunPodSandbox + CreateContainer + StartContainer summed per lifecycle (what
  kubelet waits for before the container runs), pod teardown: StopContainer + RemoveContainer +
  StopPodSandbox + RemovePodSandbox; p50 with its distribution-free 95% interval;
- each target's ratio to the best (lowest p50) with a 95% percentile-bootstrap interval: over the
  pairs of the same round when the schedule interleaved the targets (so a slow spell moves both
  sides), each side drawn on its own otherwise;
- memory per pod (PSS) when the run has a density level; the largest hop of each stack when it
  has lower levels; the fastest cold pull per image when it has level image.

Sentences are generated from those numbers and claim no more than the interval does: a ratio
whose interval holds 1 reads "no clear difference", a target is "the fastest" only when every
other one is clearly slower. Several nodes are never compared with each other: each node gets its
own findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.controller import density, drift, hops, pulls, stats
from bench.controller.charts import png, target_colours
from bench.controller.render import Bullets, Image, Section, Table, cell
from bench.controller.run import Run
from bench.controller.view import View
from bench.node.nodeinfo import EMULATED
from bench.ops import POD_START_OPS, POD_TEARDOWN_OPS

LEVEL = "cri"
MEASURES = {"pod start-up": POD_START_OPS, "pod teardown": POD_TEARDOWN_OPS}
VERBS = {"pod start-up": "starts a pod", "pod teardown": "tears a pod down"}
# Below this many lifecycles a target gets no ratio and no interval: 6 is the fewest for which the
# median has a distribution-free 95% interval (P(all 6 on one side) = 1/64 < 2.5%).
MIN_LIFECYCLES = 6


@dataclass
class Finding:
    """One measure of one target: p50 [lo, hi] in ms, and its ratio to the best [lo, hi]."""

    node: str
    target: str
    measure: str
    n: int
    p50: float
    lo: float
    hi: float
    best: str = ""
    ratio: float = math.nan
    ratio_lo: float = math.nan
    ratio_hi: float = math.nan
    paired: bool = False


@dataclass
class Headline:
    findings: list[Finding] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per target: each measure's p50 [CI] and ratio to the best [CI]."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for f in self.findings:
            row = rows.setdefault((f.node, f.target), {"node": f.node, "target": f.target})
            row[f"{f.measure} p50 ms [95% CI]"] = _ms_ci(f.p50, f.lo, f.hi)
            row[f"{f.measure} × best [95% CI]"] = "best" if f.target == f.best else _ratio_ci(f)
        table = pd.DataFrame(list(rows.values()))
        if not table.empty and table["node"].nunique() == 1:
            table = table.drop(columns="node")
        return table


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "?"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _ms_ci(p50: float, lo: float, hi: float) -> str:
    return f"{_fmt(p50)} [{_fmt(lo)}, {_fmt(hi)}]"


def _ratio_ci(f: Finding) -> str:
    if not math.isfinite(f.ratio):
        return "–"
    return f"{f.ratio:.2f} [{f.ratio_lo:.2f}, {f.ratio_hi:.2f}]"


def per_lifecycle(samples: pd.DataFrame, ops: tuple[str, ...]) -> pd.DataFrame:
    """node, target, iteration, ms: `ops` summed over each complete, successful, measured lifecycle
    of level cri at concurrency 1."""
    s = samples[
        (samples["level"] == LEVEL)
        & samples["op"].isin(ops)
        & samples["ok"].astype(bool)
        & ~samples["warmup"].astype(bool)
        & (samples["concurrency"] == 1)
    ]
    if s.empty:
        return pd.DataFrame(columns=["node", "target", "iteration", "ms"])
    s = s.assign(target=s["stack"].astype(str) + "/" + s["handler"].astype(str), node=s["node"].astype(str))
    per = s.groupby(["node", "target", "iteration"], observed=True)["duration_ns"].agg(["sum", "count"]).reset_index()
    per = per[per["count"] == len(ops)]
    return per.assign(ms=per["sum"] / 1e6)[["node", "target", "iteration", "ms"]]


def _ratio(best: pd.DataFrame, other: pd.DataFrame, paired: bool) -> tuple[float, float, float, bool]:
    """median(other)/median(best) with its interval; paired over shared iterations when asked and possible."""
    if paired:
        r = drift.paired_ratio(best, other)
        if r["pairs"] >= MIN_LIFECYCLES and math.isfinite(r["ratio"]):
            return r["ratio"], r["lo"], r["hi"], True
    ratio, lo, hi = stats.ratio_of_medians(best["ms"].to_numpy(float), other["ms"].to_numpy(float))
    return ratio, lo, hi, False


def findings(samples: pd.DataFrame, interleaved: bool) -> list[Finding]:
    """Each target's pod start-up and teardown, and its ratio to the best of its node."""
    out: list[Finding] = []
    if samples.empty:
        return out
    for measure, ops in MEASURES.items():
        life = per_lifecycle(samples, ops)
        for node, g in life.groupby("node", sort=True):
            per_target = dict(iter(g.groupby("target", sort=True)))
            found = []
            for target, tg in per_target.items():
                values = tg["ms"].to_numpy(float)
                lo, hi = stats.quantile_ci(values, 0.5)
                found.append(Finding(str(node), str(target), measure, len(values), float(np.median(values)), lo, hi))
            ranked = [f for f in found if f.n >= MIN_LIFECYCLES]
            if ranked:
                best = min(ranked, key=lambda f: f.p50)
                for f in found:
                    f.best = best.target
                    if f is not best and f.n >= MIN_LIFECYCLES:
                        f.ratio, f.ratio_lo, f.ratio_hi, f.paired = _ratio(
                            per_target[best.target], per_target[f.target], interleaved
                        )
            out += found
    return out


def clear(f: Finding) -> bool:
    """The interval of the ratio lies wholly above 1."""
    return math.isfinite(f.ratio_lo) and f.ratio_lo > 1


def measure_sentences(found: list[Finding], measure: str, prefix: str) -> list[str]:
    fs = [f for f in found if f.measure == measure]
    if not fs:
        return []
    ops = " + ".join(MEASURES[measure])
    best = next((f for f in fs if f.target == f.best), None)
    if best is None:
        few = ", ".join(f"{f.target} (n={f.n})" for f in fs)
        return [f"{prefix}{measure.capitalize()}: too few complete lifecycles to compare ({few})."]
    others = [f for f in fs if f is not best and math.isfinite(f.ratio)]
    how = "same-round pairs" if any(f.paired for f in others) else "each target resampled on its own"
    figures = f"{_fmt(best.p50)} ms [{_fmt(best.lo)}, {_fmt(best.hi)}] p50 over {best.n} lifecycles"
    if others and all(clear(f) for f in others):
        lead = f"{best.target} is the fastest, {figures}"
    elif others:
        lead = f"{best.target} has the lowest p50, {figures}, but is not clearly faster than every other target"
    else:
        lead = f"{best.target} is the only target with enough lifecycles, {figures}"
    out = [f"{prefix}{measure.capitalize()} ({ops}, one pod at a time): {lead}."]
    for f in sorted(others, key=lambda f: f.ratio):
        figures = f"{f.ratio:.2f}× [{f.ratio_lo:.2f}, {f.ratio_hi:.2f}]"
        if clear(f):
            out.append(
                f"{prefix}{f.target} {VERBS[measure]} {figures} slower than {best.target} "
                f"({_fmt(f.p50)} ms [{_fmt(f.lo)}, {_fmt(f.hi)}] p50; 95% interval over {how})."
            )
        elif math.isfinite(f.ratio_lo):
            out.append(
                f"{prefix}{f.target} and {best.target}: no clear difference in {measure} ({figures}; "
                f"the interval holds 1)."
            )
    for f in fs:
        if f is not best and not math.isfinite(f.ratio):
            out.append(f"{prefix}{f.target}: {f.n} complete lifecycle(s), too few for a ratio.")
    return out


def memory_sentences(per_pod: pd.DataFrame) -> list[str]:
    """Memory per running pod (PSS, with interval) per target from the density level."""
    need = {"target", "per pod PSS (MB)", "per pod PSS CI low", "per pod PSS CI high"}
    if per_pod.empty or not need <= set(per_pod.columns):
        return []
    t = per_pod.sort_values("per pod PSS (MB)")
    parts = [
        f"{r['target']} {_fmt(r['per pod PSS (MB)'])} MB [{_fmt(r['per pod PSS CI low'])}, "
        f"{_fmt(r['per pod PSS CI high'])}]"
        for _, r in t.iterrows()
    ]
    out = [f"Memory per running pod (PSS of daemons, shims and pods, density level): {'; '.join(parts)}."]
    if len(t) > 1:
        first, rest = t.iloc[0], t.iloc[1:]
        if float(first["per pod PSS CI high"]) < float(rest["per pod PSS CI low"].min()):
            out.append(f"{first['target']} uses the least memory per pod: its interval lies below every other's.")
        else:
            out.append("The memory-per-pod intervals overlap: no target clearly uses the least.")
    return out


def hop_sentences(hop_costs: pd.DataFrame) -> list[str]:
    """Per stack, the hop that costs the most in any one op (hop cost with interval)."""
    need = {"target", "cri op", "hop", "hop cost (ms)", "CI low", "CI high"}
    if hop_costs.empty or not need <= set(hop_costs.columns):
        return []
    out = []
    for target, g in hop_costs.groupby("target", sort=True):
        r = g.loc[g["hop cost (ms)"].idxmax()]
        sure = "" if float(r["CI low"]) > 0 else " (its interval reaches 0: not clearly above nothing)"
        out.append(
            f"Largest hop in {target}: {r['hop']} in {r['cri op']}, {_fmt(float(r['hop cost (ms)']))} ms "
            f"[{_fmt(float(r['CI low']))}, {_fmt(float(r['CI high']))}]{sure}."
        )
    return out


def build(
    samples: pd.DataFrame,
    interleaved: bool,
    memory_per_pod: pd.DataFrame | None = None,
    hop_costs: pd.DataFrame | None = None,
    pull_rows: pd.DataFrame | None = None,
) -> Headline:
    """The headline of a run: findings and the sentences that say them."""
    found = findings(samples, interleaved)
    nodes = sorted({f.node for f in found})
    sentences: list[str] = []
    for node in nodes:
        prefix = f"On {node}: " if len(nodes) > 1 else ""
        mine = [f for f in found if f.node == node]
        for measure in MEASURES:
            sentences += measure_sentences(mine, measure, prefix)
    sentences += memory_sentences(memory_per_pod if memory_per_pod is not None else pd.DataFrame())
    sentences += hop_sentences(hop_costs if hop_costs is not None else pd.DataFrame())
    sentences += pulls.pull_sentences(pull_rows if pull_rows is not None else pd.DataFrame())
    return Headline(found, sentences)


def chart_rows(h: Headline, summary: pd.DataFrame) -> pd.DataFrame:
    """What the dot-and-interval chart draws: label (pod sums first, then each op in lifecycle
    order), target, p50, lo, hi; level cri at concurrency 1."""
    rows = [
        {"label": f.measure, "target": f.target, "node": f.node, "p50": f.p50, "lo": f.lo, "hi": f.hi}
        for f in h.findings
    ]
    if not summary.empty:
        s = summary[(summary["level"] == LEVEL) & (summary["concurrency"] == 1) & (summary["n"] > 0)]
        rows += [
            {
                "label": str(r.op),
                "target": f"{r.stack}/{r.handler}",
                "node": str(r.node),
                "p50": r.p50_ms,
                "lo": r.p50_lo_ms,
                "hi": r.p50_hi_ms,
            }
            for r in s.itertuples()
        ]
    frame = pd.DataFrame(rows, columns=["label", "target", "node", "p50", "lo", "hi"])
    if frame["node"].nunique() > 1:
        frame["target"] = frame["node"] + " " + frame["target"]
    return frame


def chart(rows: pd.DataFrame, colours: dict[str, str]) -> Any:
    """Dot (p50) and line (its 95% interval) per target, one band per op, one shared x axis:
    logarithmic when the p50s span more than a factor 20, so small ops stay readable."""
    import matplotlib.pyplot as plt

    labels = [*[m for m in MEASURES if m in set(rows["label"])]]
    labels += stats.op_order([x for x in rows["label"].unique() if x not in MEASURES])
    targets = sorted(rows["target"].unique())
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.22 * len(labels) * max(2, len(targets))))
    step = 0.8 / max(1, len(targets))
    for i, target in enumerate(targets):
        t = rows[rows["target"] == target].set_index("label")
        ys, xs, lows, highs = [], [], [], []
        for j, label in enumerate(labels):
            if label in t.index:
                r = t.loc[label]
                ys.append(len(labels) - 1 - j + 0.4 - step * (i + 0.5))
                xs.append(float(r["p50"]))
                lows.append(float(r["lo"]) if math.isfinite(float(r["lo"])) else float(r["p50"]))
                highs.append(float(r["hi"]) if math.isfinite(float(r["hi"])) else float(r["p50"]))
        x = np.asarray(xs)
        err = [x - np.asarray(lows), np.asarray(highs) - x]
        ax.errorbar(xs, ys, xerr=err, fmt="o", ms=5, capsize=2, lw=1.4, color=colours.get(target), label=target)
    positive = rows["p50"][rows["p50"] > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        import matplotlib.ticker

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(range(len(labels)), labels[::-1], fontsize=9)
    for k in range(1, len(labels)):
        ax.axhline(k - 0.5, color="#dddddd", lw=0.8)
    if any(m in labels for m in MEASURES):
        ax.axhline(len(labels) - 0.5 - sum(m in labels for m in MEASURES), color="#888888", lw=1.2)
    ax.set_ylim(-0.5, len(labels) - 0.5)
    ax.set_xlabel("p50 (ms) with its 95% interval; level cri, one pod at a time")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(3, len(targets)), frameon=False)
    fig.tight_layout()
    return fig


def of(run: Run) -> Headline:
    """The run's headline, computed once (the report's first section and adr.md both use it)."""
    if run.emulated:  # no claim from an emulated CPU: the label alone, no finding
        return Headline([], [emulated_sentence(run.emulated)])
    return run.derived(
        "headline",
        lambda r: build(r.samples, r.interleaved, density.per_pod(r), hops.hop_costs(r), pulls.of(r)),
    )


def emulated_sentence(nodes: list[str]) -> str:
    return (
        f"**{EMULATED[0].upper() + EMULATED[1:]}.** {', '.join(nodes)} ran with an emulated CPU (QEMU without KVM):"
        " this run shows what works there, not how fast; `hopbench compare` and the nightly do not set it beside"
        " runs on real CPUs, and the headline makes no claim from it."
    )


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


def headline_sections(run: Run) -> list[Section]:
    """The answer first: sentences, the table they come from, the side-by-side chart; then p50
    per op and target."""
    h, summary = of(run), run.summary
    out = []
    if h.sentences:
        blocks: list[Any] = [Bullets(h.sentences)]
        table = h.table()
        if not table.empty:
            blocks.append(Table(table))
        rows = chart_rows(h, summary)
        if not rows.empty:
            colours = target_colours(rows["target"])
            blocks.append(Image("p50 per op and target, with 95% intervals", png(chart(rows, colours))))
        out.append(Section("Headline", blocks, summary=True))
    per_op = p50_per_op(summary)
    if not per_op.empty:
        out.append(Section("p50 per op", [Table(per_op)], summary=True, level=3 if h.sentences else 2))
    return out


VIEW = View("headline", headline_sections)
