"""Run history under results/: listing, comparing two runs, and the nightly regression check.

The nightly check sets tonight's run against the last `history` complete runs of the same
scenario (by name) on the same node, row by row (stack, handler, level, op, concurrency), with
the gate of bench.controller.gate: each row's night summarised by its log median, the node's
night-to-night drift estimated from all rows of the baseline, a single-night and a two-night
look, Holm's correction across the night's rows, and the threshold on the ratio. A row with
fewer than MIN_BASELINE_RUNS earlier nights is "too few nights" and never a regression.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.controller import control, gate, stats, summaries
from bench.controller.run import Run, as_run, emulated_nodes
from bench.errors import InputError
from bench.node.nodeinfo import EMULATED
from bench.stacks import kind_of, version_of

MIN_BASELINE_RUNS = 3
KEY = stats.COMPARE_KEY


def list_runs(root: Path) -> pd.DataFrame:
    rows = []
    for meta_path in sorted(root.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(meta, dict):
            continue  # not a run's meta.json
        scen = meta.get("scenario")
        scen = scen if isinstance(scen, dict) else {}
        rows.append(
            {
                "run_id": meta.get("run_id", meta_path.parent.name),
                "scenario": scen.get("name", "?"),
                "scenario_sha256": str(scen.get("sha256", ""))[:12],
                "node": meta.get("node", "?"),
                "status": meta.get("status", "?"),
                "started_at": meta.get("started_at", ""),
                "samples": meta.get("samples", 0),
                "emulated": bool(emulated_nodes(meta)),
                "path": str(meta_path.parent),
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "scenario",
            "scenario_sha256",
            "node",
            "status",
            "started_at",
            "samples",
            "emulated",
            "path",
        ],
    )
    return frame.sort_values("started_at").reset_index(drop=True)


def compare_dirs(
    a: Run | Path, b: Run | Path, threshold: float = 0.10, alpha: float = 0.05, across_versions: bool = False
) -> pd.DataFrame:
    """B against A, row by row. Rows match on the stack instance (containerd@2.4.2), so two runs
    of different versions share no row; `across_versions` matches them on the stack instead
    (each run must then hold one instance per stack) and names both versions in the row."""
    ra, rb = as_run(a), as_run(b)
    if bool(ra.emulated) != bool(rb.emulated):
        which, other = (ra, rb) if ra.emulated else (rb, ra)
        raise InputError(
            f"{which.path}: ran emulated on {', '.join(which.emulated)} ({EMULATED}); {other.path} did not:"
            " an emulated CPU's times say nothing about a real one's, so the two runs are not compared"
        )
    sa, sb = ra.compared, rb.compared
    if not across_versions:
        return stats.compare_runs(sa, sb, threshold, alpha)
    va, vb = _one_instance_per_stack(ra.path, sa), _one_instance_per_stack(rb.path, sb)
    frame = stats.compare_runs(
        sa.assign(stack=sa["stack"].map(kind_of)), sb.assign(stack=sb["stack"].map(kind_of)), threshold, alpha
    )
    if frame.empty:
        return frame
    return frame.assign(stack=[f"{k}@{va.get(k, '?')}→{vb.get(k, '?')}" for k in frame["stack"]])


def _one_instance_per_stack(run: Path, samples: pd.DataFrame) -> dict[str, str]:
    """{stack: version} of a run, refusing a run with two versions of one stack."""
    found: dict[str, set[str]] = {}
    for name in samples["stack"].astype(str).unique():
        found.setdefault(kind_of(name), set()).add(version_of(name) or "?")
    several = {k: sorted(v) for k, v in found.items() if len(v) > 1}
    if several:
        raise InputError(
            f"{run}: several versions of one stack in the run ({several}): compare them within the run "
            "(the report's upgrade section), not across runs"
        )
    return {k: next(iter(v)) for k, v in found.items()}


def baseline_runs(root: Path, candidate: dict[str, Any], history: int) -> list[Path]:
    """The last `history` complete runs of the candidate's scenario and node, newest first; only
    runs that ran emulated when the candidate did, and only runs that did not when it did not."""
    runs = list_runs(root)
    same = runs[
        (runs["emulated"] == bool(emulated_nodes(candidate)))
        & (runs["scenario"] == candidate.get("scenario", {}).get("name"))
        & (runs["node"] == candidate.get("node"))
        & (runs["status"] == "complete")
        & (runs["run_id"] != candidate.get("run_id"))
        & (runs["started_at"] < str(candidate.get("started_at", "~")))
    ]
    return [Path(p) for p in same.sort_values("started_at", ascending=False)["path"].head(history)]


def nightly_check(
    run_dir: Run | Path, root: Path, history: int = 7, threshold: float = 0.10, alpha: float = 0.05
) -> dict[str, Any]:
    """Tonight's run against the earlier nights (bench.controller.gate); writes and returns nightly.json's content.

    The last `history` complete runs of the scenario on the node are the single-night baseline; one
    more is read for the two-night look (the previous night and tonight against the `history` before)."""
    run = as_run(run_dir)
    meta = run.meta
    base = [Run(p) for p in baseline_runs(root, meta, history + 1)]
    result: dict[str, Any] = {
        "run_id": meta["run_id"],
        "baseline_runs": [r.path.name for r in base[:history]],
        "previous_run": base[0].path.name if base else "",
        "history": history,
        "threshold": threshold,
        "alpha": alpha,
        "method": "gate",
        "rows": [],
        "regressions": 0,
        "improvements": 0,
    }
    if base:
        nights = [_nights(p) for p in reversed(base)]  # oldest first
        rows: dict[Any, tuple[list[gate.Night], gate.Night | None, gate.Night]] = {}
        for key, t in _nights(run).items():
            per_night = [nt.get(key) for nt in nights]
            earlier = [n for n in per_night if n is not None]
            if not earlier:
                continue
            previous = per_night[-1]
            rows[key] = (earlier, previous, t)
        verdicts = gate.decide(rows, history, threshold, alpha, MIN_BASELINE_RUNS)
        table = []
        for k, v in sorted(verdicts.items(), key=lambda kv: str(kv[0])):
            earlier, _, t = rows[k]
            base_nights = earlier[-history:]
            table.append(
                {
                    **dict(zip(KEY, k, strict=True)),  # type: ignore[call-overload]
                    "n_a": sum(n.n for n in base_nights),
                    "n_b": t.n,
                    "nights": len(base_nights),
                    "p50_a_ms": math.exp(sum(n.log_median for n in base_nights) / len(base_nights)),
                    "p50_b_ms": math.exp(t.log_median),
                    "ratio": v.ratio,
                    "ratio_lo": v.ratio_lo,
                    "ratio_hi": v.ratio_hi,
                    "ratio_tonight": v.ratio_tonight,
                    "p_value": v.p_value,
                    "look": v.look,
                    "verdict": v.verdict,
                }
            )
        idx = control.index(pd.concat([r.control for r in base[:history]], ignore_index=True), run.control)
        result["control"] = idx
        if idx:
            for r in table:
                r["ratio_vs_control"] = r["ratio_tonight"] / idx["ratio"]
        result["control_sentence"] = control.sentence(idx, "the baseline nights", "tonight") if idx else ""
        result["rows"] = json.loads(pd.DataFrame(table).to_json(orient="records")) if table else []
        result["regressions"] = sum(1 for r in table if r["verdict"] == "regression")
        result["improvements"] = sum(1 for r in table if r["verdict"] == "improvement")
    run.write_json("nightly.json", result)
    return result


def _nights(run: Run) -> dict[tuple[Any, ...], gate.Night]:
    """The gate's night per compare key, from the run's cached summary (bench.controller.summaries).

    A run of several nodes pools each key's samples over its nodes, so it is summarised from
    the samples instead (a median does not pool)."""
    summary = run.night_summary
    if summary["node"].nunique() <= 1:
        return summaries.nights(summary)
    m = stats.measured_ms(run.compared)
    out = {k: gate.night(g["ms"].to_numpy()) for k, g in m.groupby(KEY, observed=True)}
    return {k: v for k, v in out.items() if v is not None}


def trend(root: Path, scenario: str, node: str) -> pd.DataFrame:
    """p50 per run of one scenario and node, for the trend chart: run, started_at, key columns, p50_ms."""
    runs = list_runs(root)
    runs = runs[(runs["scenario"] == scenario) & (runs["node"] == node)]
    frames = []
    for r in runs.itertuples():
        try:
            run = Run(Path(r.path))
            summary = run.night_summary
        except (OSError, ValueError):
            continue
        if summary.empty:
            continue
        if summary["node"].nunique() > 1:  # several nodes in one run: pool their samples per key
            m = stats.measured_ms(run.compared)
            p50 = m.groupby(KEY, observed=True)["ms"].median().reset_index()
        else:
            p50 = summary[[*KEY, "p50_ms"]].rename(columns={"p50_ms": "ms"})
        frames.append(p50.assign(run_id=r.run_id, started_at=r.started_at, status=r.status))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
