"""How much the node drifted during a run, and target comparisons that drift cannot bias.

Under the interleaved schedule (bench.node.schedule) round r at concurrency c holds iteration
r*c .. r*c+c-1 of every target and level, so a lifecycle's round is iteration // c. Per target,
level and concurrency the *trend* is the Theil-Sen slope of log(lifecycle time) over the
rounds (lifecycle time: the sum of its timed ops, complete measured lifecycles only), given as
the change from the first round to the last with the slope's 95% interval (scipy's
theilslopes; above TREND_POINTS lifecycles, through the median points of that many bins of
rounds). The *node's* trend is the same estimate on the per-round median, across targets,
of each lifecycle's time relative to its target's median: what every target shared.

Interleaving puts that drift on every target alike, so two targets compared within a run are
compared *in pairs*: iteration i of target A ran in the same round as iteration i of target B.
The ratio of medians keeps its usual point value; its bootstrap interval resamples the pairs
(the rounds), not each side on its own, so a shared slow spell moves both sides of a draw
together instead of widening or shifting the interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.controller import stats
from bench.controller.render import Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View

TARGET = ["node", "stack", "handler", "level", "concurrency"]


def lifecycles(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per complete measured lifecycle: TARGET, iteration, round, start_ns, ms (sum of its ops)."""
    if samples.empty:
        return pd.DataFrame(columns=[*TARGET, "iteration", "round", "start_ns", "ms"])
    s = samples[~samples["warmup"].astype(bool) & (samples["level"] != "cli")]
    keys = [*TARGET, "iteration"]
    grouped = s.groupby(keys, observed=True)
    frame = grouped.agg(
        ok=("ok", "all"), ops=("op", "nunique"), start_ns=("start_ns", "min"), ns=("duration_ns", "sum")
    ).reset_index()
    most = frame.groupby(TARGET, observed=True)["ops"].transform("max")
    frame = frame[frame["ok"] & (frame["ops"] == most)]
    return frame.assign(round=frame["iteration"].astype(int) // frame["concurrency"].astype(int), ms=frame["ns"] / 1e6)[
        [*TARGET, "iteration", "round", "start_ns", "ms"]
    ]


# Theil-Sen takes every pair of points: O(n^2) time and memory (25,000 rounds: 16 GB). Above this
# many points the rounds are cut into this many bins of equal width and the line is fitted
# through each bin's median point (median round, median log time): the same trend, fitted
# through points whose noise is the bin median's, so its interval stays honest.
TREND_POINTS = 400


def _trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Change from the first x to the last of exp(Theil-Sen line of y = log values), with its 95% interval."""
    from scipy.stats import theilslopes

    if len(np.unique(x)) < 3:
        return (math.nan, math.nan, math.nan)
    span = float(x.max() - x.min())
    if len(x) > TREND_POINTS:
        bins = np.minimum(((x - x.min()) / span * TREND_POINTS).astype(int), TREND_POINTS - 1)
        binned = pd.DataFrame({"bin": bins, "x": x, "y": y}).groupby("bin").median()
        x, y = binned["x"].to_numpy(), binned["y"].to_numpy()
    slope, _, lo, hi = theilslopes(y, x, 0.95)
    return tuple(float(math.expm1(v * span)) for v in (slope, lo, hi))  # type: ignore[return-value]


def per_target(samples: pd.DataFrame) -> pd.DataFrame:
    """The trend of every target, level and concurrency: rounds, change over the run and its interval (fractions)."""
    life = lifecycles(samples)
    rows = []
    for key, g in life.groupby(TARGET, sort=True, observed=True):
        change, lo, hi = _trend(g["round"].to_numpy(float), np.log(g["ms"].to_numpy(float)))
        rows.append(
            {
                **dict(zip(TARGET, key, strict=True)),
                "rounds": int(g["round"].nunique()),
                "p50_ms": float(g["ms"].median()),
                "change": change,
                "change_lo": lo,
                "change_hi": hi,
            }
        )
    return pd.DataFrame(rows)


def node_trend(samples: pd.DataFrame) -> dict[str, Any]:
    """What every target shared: per concurrency, the trend of the per-round median relative time.

    Returns {concurrency: {rounds, targets, change, change_lo, change_hi, spread}} where spread is
    the largest minus the smallest per-round median relative time (fractions)."""
    life = lifecycles(samples)
    out: dict[str, Any] = {}
    for conc, g in life.groupby("concurrency", sort=True, observed=True):
        rel = g["ms"] / g.groupby(TARGET, observed=True)["ms"].transform("median")
        per_round = np.log(rel).groupby(g["round"]).median()
        change, lo, hi = _trend(per_round.index.to_numpy(float), per_round.to_numpy(float))
        out[str(int(conc))] = {
            "rounds": int(len(per_round)),
            "targets": int(g.groupby(TARGET, observed=True).ngroups),
            "change": change,
            "change_lo": lo,
            "change_hi": hi,
            "spread": float(math.exp(per_round.max()) - math.exp(per_round.min())) if len(per_round) else math.nan,
        }
    return out


def paired_ratio(a: pd.DataFrame, b: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """B against A on the iterations both have (same round under interleaving): median(b)/median(a),
    its 95% bootstrap interval over the pairs, and the same interval drawing each side on its own."""
    pa, pb = a.groupby("iteration")["ms"].first(), b.groupby("iteration")["ms"].first()
    both = pa.index.intersection(pb.index)
    xa, xb = pa.loc[both].to_numpy(float), pb.loc[both].to_numpy(float)
    if len(both) < 2 or np.median(xa) <= 0:
        return {"pairs": float(len(both)), "ratio": math.nan, "lo": math.nan, "hi": math.nan}
    ratio, lo, hi = stats.ratio_of_medians(xa, xb, seed=seed, paired=True)
    _, ilo, ihi = stats.ratio_of_medians(xa, xb, seed=seed)
    return {
        "pairs": float(len(both)),
        "ratio": ratio,
        "lo": lo,
        "hi": hi,
        "independent_lo": ilo,
        "independent_hi": ihi,
    }


def side_by_side(samples: pd.DataFrame, level: str, concurrency: int) -> pd.DataFrame:
    """Every target of `level` at `concurrency` against the first (by name), op by op, in pairs."""
    m = stats.measured_ms(samples)
    m = m[(m["level"] == level) & (m["concurrency"] == concurrency)]
    if m.empty:
        return pd.DataFrame()
    m = m.assign(target=m["stack"].astype(str) + "/" + m["handler"].astype(str))
    names = sorted(m["target"].unique())
    if len(names) < 2:
        return pd.DataFrame()
    ref = names[0]
    rows = []
    for other in names[1:]:
        for op in stats.op_order(list(m["op"].unique())):
            a = m[(m["target"] == ref) & (m["op"] == op)]
            b = m[(m["target"] == other) & (m["op"] == op)]
            if a.empty or b.empty:
                continue
            r = paired_ratio(a, b)
            rows.append({"target": other, "against": ref, "op": op, **r})
    return pd.DataFrame(rows)


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:+.0f}%"


def conditions_sections(run: Run) -> list[Section]:
    """Schedule, drift, pairing, clock: what the comparison's fairness rests on."""
    samples, summary, meta = run.samples, run.summary, run.meta
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
    trend = node_trend(samples) if not samples.empty else {}
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
    per = per_target(samples) if not samples.empty else pd.DataFrame()
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
        pairs = side_by_side(samples, level, conc)
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


VIEW = View("conditions", conditions_sections)
