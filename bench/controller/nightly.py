"""The nightly view: tonight against the rolling baseline of earlier nights, and the p50 trend.

`hopbench nightly` writes the verdict to nightly.json (bench.controller.history and the gate's
method in bench.controller.gate); this view shows it, with a chart of every earlier run of the
same scenario on the same node in the results root.
"""

from __future__ import annotations

import pandas as pd

from bench.controller.charts import plt, png
from bench.controller.history import trend
from bench.controller.render import Image, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View


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
    return png(fig)


def applies(run: Run) -> bool:
    return bool(run.nightly)


def nightly_sections(run: Run) -> list[Section]:
    nightly, meta = run.nightly, run.meta
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
    history = trend(run.siblings(), str(meta.get("scenario", {}).get("name")), str(meta.get("node")))
    if not history.empty and history["run_id"].nunique() > 1:
        threshold = float(nightly.get("threshold", 0.10))
        section.blocks.append(Image("p50 trend per op", trend_chart(history, rows, threshold)))
    return [section]


VIEW = View("nightly", nightly_sections, applies)
