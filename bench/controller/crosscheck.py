"""The crosscheck: hopbench's figures beside critest's, beside the daemons' own, and the harness's own cost.

Per target and op (critest's nine ops), from one interleaved run (scenarios/crosscheck.yaml):

- **critest**: the reference tool's p50 (level `critest`);
- **hopbench, critest's requests** (level `cri-critest`): p50 and its ratio to critest's, the
  interval from pairs of the same round (bench.controller.drift); the two *agree* when the
  median ratio is within ±5% ("no, clearly" when its whole interval is beyond). Both
  CreateContainer figures hold an ImageStatus call before the CreateContainer call: critest
  times them together;
- **hopbench, kubelet's requests** (level `cri`, the ops it has): p50 and its ratio to the
  critest-request figure: how much the request's realism changes the op;
- **the daemon's clock**: the mean time the daemon itself spent per call of that op while
  level cri-critest ran (its counters read around every burst: bench.node.metrics), beside the
  client's own log of the same calls (warm-up and untimed calls included, as the counters
  include them); the gap is gRPC transport plus the client. Beside it, the daemon's own mean
  while critest's bursts ran: where critest and hopbench differ, it says whether the daemon
  itself worked longer (the node, critest's own process) or the difference is client-side.

The null rows (stack "null": nullcri answers every call at once) are the harness's own cost per
op, hopbench's client against critest's; `null/limit.json` the ops per second one hopbench
client thread gets out of it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.controller import drift, stats
from bench.controller.render import Bullets, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.node.critest import OPS

AGREE = 0.05  # the goal: critest and hopbench with critest's requests within 5% at the median


def daemon_figures(run: Run) -> list[dict[str, Any]]:
    """Every daemon-metrics artifact of the run, one entry per stack, handler and level."""
    out: list[dict[str, Any]] = []
    for path in run.artifacts("daemon-metrics", "*.json"):
        try:
            out += json.loads(run.text(path))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def op_of(call: str) -> str:
    """A daemon's name for a call -> the CRI op: '/runtime.v1.RuntimeService/RunPodSandbox' -> 'RunPodSandbox'."""
    return call.rsplit("/", 1)[-1]


def server_means(figures: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """(stack, handler, level, op) -> the daemon's calls and mean ms, and the client's over its own
    calls of that method in the same bursts (timed or not), where the level logs them."""
    out: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for f in figures:
        mine = {op_of(k): v for k, v in (f.get("client_calls") or {}).items()}
        for call, v in (f.get("calls") or {}).items():
            count, seconds = float(v.get("count", 0)), float(v.get("seconds", 0))
            if count <= 0:
                continue
            op = op_of(call)
            row = {"daemon calls": count, "daemon mean ms": seconds / count * 1000}
            c = mine.get(op)
            if c and float(c.get("count", 0)) > 0:
                row["client calls"] = float(c["count"])
                row["client mean ms"] = float(c["seconds"]) / float(c["count"]) * 1000
            out[(f["stack"], f["handler"], f["level"], op)] = row
    return out


def table(samples: pd.DataFrame, figures: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per target and critest op (module docstring)."""
    if samples.empty or not samples["level"].isin(["critest", "cri-critest"]).any():
        return pd.DataFrame()
    m = stats.measured_ms(samples)
    server = server_means(figures)
    rows = []
    targets = m[m["level"].isin(["critest", "cri-critest"])][["stack", "handler"]].drop_duplicates()
    for stack, handler in sorted(map(tuple, targets.to_numpy())):
        here = m[(m["stack"] == stack) & (m["handler"] == handler)]
        for op in OPS:
            ref, mine, kub = (
                here[(here["level"] == lv) & (here["op"] == op)] for lv in ("critest", "cri-critest", "cri")
            )
            if ref.empty and mine.empty:
                continue
            row: dict[str, Any] = {"target": f"{stack}/{handler}", "op": op, "n": int(min(len(ref), len(mine)))}
            row["critest p50 ms"] = float(ref["ms"].median()) if len(ref) else math.nan
            row["hopbench (critest requests) p50 ms"] = float(mine["ms"].median()) if len(mine) else math.nan
            r = drift.paired_ratio(ref, mine) if len(ref) and len(mine) else {}
            row["ratio"], row["ratio_lo"], row["ratio_hi"] = (r.get(k, math.nan) for k in ("ratio", "lo", "hi"))
            row["agree"] = _agree(row["ratio"], row["ratio_lo"], row["ratio_hi"])
            row["hopbench (kubelet requests) p50 ms"] = float(kub["ms"].median()) if len(kub) else math.nan
            k = drift.paired_ratio(mine, kub) if len(kub) and len(mine) else {}
            row["kubelet/critest requests"] = k.get("ratio", math.nan)
            row["kubelet/critest lo"], row["kubelet/critest hi"] = k.get("lo", math.nan), k.get("hi", math.nan)
            d = server.get((stack, handler, "cri-critest", op), {})
            row["daemon calls"] = int(d.get("daemon calls", 0))
            row["daemon mean ms"] = d.get("daemon mean ms", math.nan)
            row["client calls"] = int(d.get("client calls", 0))
            row["client mean ms"] = d.get("client mean ms", math.nan)
            row["client − daemon ms"] = row["client mean ms"] - row["daemon mean ms"]
            row["daemon mean ms while critest ran"] = server.get((stack, handler, "critest", op), {}).get(
                "daemon mean ms", math.nan
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _agree(ratio: float, lo: float, hi: float) -> str:
    """'yes' when the median ratio is within ±AGREE; 'no, clearly' when its whole interval is beyond."""
    if math.isnan(ratio):
        return "–"
    if abs(ratio - 1) <= AGREE:
        return "yes"
    if hi < 1 - AGREE or lo > 1 + AGREE:
        return "no, clearly"
    return "no"


def overhead(samples: pd.DataFrame) -> pd.DataFrame:
    """The null target per op: hopbench's and critest's p50 and p90 (µs), and the difference of the p50s."""
    m = stats.measured_ms(samples)
    m = m[m["stack"] == "null"]
    rows = []
    for op in OPS:
        h = m[(m["level"] == "cri-critest") & (m["op"] == op)]["ms"].to_numpy() * 1000
        c = m[(m["level"] == "critest") & (m["op"] == op)]["ms"].to_numpy() * 1000
        if not len(h) and not len(c):
            continue
        rows.append(
            {
                "op": op,
                "n": int(min(len(h), len(c))),
                "hopbench p50 µs": float(np.median(h)) if len(h) else math.nan,
                "hopbench p90 µs": float(np.percentile(h, 90)) if len(h) else math.nan,
                "critest p50 µs": float(np.median(c)) if len(c) else math.nan,
                "critest p90 µs": float(np.percentile(c, 90)) if len(c) else math.nan,
                "hopbench − critest p50 µs": float(np.median(h) - np.median(c)) if len(h) and len(c) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def limit(run: Run) -> dict[str, Any]:
    """The null target's limit (ops per second from one client thread), or {}."""
    try:
        data = run.json("null/limit.json")
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def daemon_view(figures: list[dict[str, Any]], levels: set[str]) -> pd.DataFrame:
    """Every call a daemon timed while one of `levels` ran, beside the client's own log of the
    same calls (warm-up and untimed calls included on both sides)."""
    rows = []
    for (stack, handler, level, op), d in sorted(server_means(figures).items()):
        if level not in levels or "client calls" not in d:
            continue
        daemon = next((str(f.get("daemon", "")) for f in figures if f["stack"] == stack), "")
        rows.append(
            {
                "target": f"{stack}/{handler}",
                "level": level,
                "daemon": daemon,
                "op": op,
                "daemon calls": int(d["daemon calls"]),
                "client calls": int(d["client calls"]),
                "daemon mean ms": d["daemon mean ms"],
                "client mean ms": d["client mean ms"],
                "client − daemon ms": d["client mean ms"] - d["daemon mean ms"],
            }
        )
    return pd.DataFrame(rows)


def crosscheck_sections(run: Run) -> list[Section]:
    """critest beside hopbench, the daemons' own clocks, the null server."""
    from bench.node.metrics import COVERS

    samples = run.samples
    figures = daemon_figures(run)
    out: list[Section] = []
    both = table(samples, figures)
    if not both.empty:
        real = both[~both["target"].str.startswith("null/")]
        sec = Section(
            "Crosscheck: critest, hopbench and the daemons",
            [
                Para(
                    "Per op, interleaved in the same rounds on the same node: cri-tools' `critest -benchmark` "
                    "(level critest), hopbench's CRI client sending critest's own requests (level cri-critest: "
                    "ratio to critest with its 95% interval from same-round pairs; *agree* when the median ratio is "
                    f"within ±{AGREE:.0%}), and hopbench with kubelet's requests (level cri: ratio to "
                    "the critest-request figure, how much request realism changes the op). The daemon columns are "
                    "the daemon's own mean per call while level cri-critest ran, beside the client's mean over the "
                    "same calls (the gap is gRPC transport plus the client), and the daemon's own mean while "
                    "critest ran: where critest and hopbench differ, it tells the daemon's share from the client's."
                )
            ],
            summary=True,
        )
        shown = real if not real.empty else both
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
            Para(f"{n_agree} of {len(shown)} op(s) agree within ±{AGREE:.0%} at the median (stacks only).")
        )
        sec.blocks.append(Table(both, 2))
        daemons = sorted({str(f.get("daemon")) for f in figures if f.get("daemon")})
        if daemons:
            sec.blocks.append(Bullets([f"{d}: {COVERS.get(d, '?')}" for d in daemons]))
        out.append(sec)
    over = overhead(samples)
    if not over.empty:
        lim = limit(run)
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
    view = daemon_view(figures, levels)
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


VIEW = View("crosscheck", crosscheck_sections)
