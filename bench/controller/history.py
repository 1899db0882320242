"""Run history under results/: listing, comparing two runs, and the nightly regression check.

The nightly check compares tonight's run with a rolling baseline: the samples of the last
`history` complete runs of the same scenario (by name) on the same node, pooled, so one odd
night does not become the reference. Each stack/handler/level/op/concurrency gets
bench.controller.stats.compare: a regression is a clear change (bootstrap interval of the ratio of
medians excludes 1, Mann-Whitney p < alpha) whose ratio is above 1 + threshold.

That test treats the lifecycles of a night as independent samples, but nights also differ
as a whole (the machine's state drifts): two runs of the same code a minute apart on the
2-core development machine gave 8 "clear" changes of 10-37% out of 70. So a verdict is
confirmed only against the spread between nights: a regression also needs tonight's median
above every baseline night's median, an improvement below every one, and at least
MIN_BASELINE_RUNS baseline nights; otherwise it is reported as "unconfirmed" and does not
count (no exit status 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.controller import stats
from bench.controller.results import load_run, write_json_atomic
from bench.errors import InputError
from bench.stacks import kind_of, version_of

MIN_BASELINE_RUNS = 3
KEY = stats.COMPARE_KEY


def list_runs(root: Path) -> pd.DataFrame:
    rows = []
    for meta_path in sorted(root.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        scen = meta.get("scenario", {})
        rows.append(
            {
                "run_id": meta.get("run_id", meta_path.parent.name),
                "scenario": scen.get("name", "?"),
                "scenario_sha256": str(scen.get("sha256", ""))[:12],
                "node": meta.get("node", "?"),
                "status": meta.get("status", "?"),
                "started_at": meta.get("started_at", ""),
                "samples": meta.get("samples", 0),
                "path": str(meta_path.parent),
            }
        )
    frame = pd.DataFrame(
        rows, columns=["run_id", "scenario", "scenario_sha256", "node", "status", "started_at", "samples", "path"]
    )
    return frame.sort_values("started_at").reset_index(drop=True)


def compare_dirs(
    a: Path, b: Path, threshold: float = 0.10, alpha: float = 0.05, across_versions: bool = False
) -> pd.DataFrame:
    """B against A, row by row. Rows match on the stack instance (containerd@2.4.2), so two runs
    of different versions share no row; `across_versions` matches them on the stack instead
    (each run must then hold one instance per stack) and names both versions in the row."""
    _, sa = load_run(a)
    _, sb = load_run(b)
    if not across_versions:
        return stats.compare_runs(sa, sb, threshold, alpha)
    va, vb = _one_instance_per_stack(a, sa), _one_instance_per_stack(b, sb)
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
    """The last `history` complete runs of the candidate's scenario and node, newest first."""
    runs = list_runs(root)
    same = runs[
        (runs["scenario"] == candidate.get("scenario", {}).get("name"))
        & (runs["node"] == candidate.get("node"))
        & (runs["status"] == "complete")
        & (runs["run_id"] != candidate.get("run_id"))
        & (runs["started_at"] < str(candidate.get("started_at", "~")))
    ]
    return [Path(p) for p in same.sort_values("started_at", ascending=False)["path"].head(history)]


def nightly_check(
    run_dir: Path, root: Path, history: int = 7, threshold: float = 0.10, alpha: float = 0.05
) -> dict[str, Any]:
    """Compare a run with its rolling baseline; writes and returns nightly.json's content."""
    meta, samples = load_run(run_dir)
    base = baseline_runs(root, meta, history)
    result: dict[str, Any] = {
        "run_id": meta["run_id"],
        "baseline_runs": [p.name for p in base],
        "history": history,
        "threshold": threshold,
        "alpha": alpha,
        "rows": [],
        "regressions": 0,
        "improvements": 0,
    }
    if base:
        nights = [load_run(p)[1].assign(_night=p.name) for p in base]
        pooled = pd.concat(nights, ignore_index=True)
        table = stats.compare_runs(pooled, samples, threshold, alpha)
        if not table.empty:
            table = confirm_between_nights(table, pooled, len(base))
        result["rows"] = json.loads(table.to_json(orient="records"))
        result["regressions"] = int((table["verdict"] == "regression").sum()) if not table.empty else 0
        result["improvements"] = int((table["verdict"] == "improvement").sum()) if not table.empty else 0
    write_json_atomic(run_dir / "nightly.json", result)
    return result


def confirm_between_nights(table: pd.DataFrame, pooled: pd.DataFrame, nights: int) -> pd.DataFrame:
    """Add each key's spread of per-night medians and confirm (or not) its verdict against it."""
    per_night = stats.measured_ms(pooled).groupby([*KEY, "_night"], observed=True)["ms"].median()
    spread = per_night.groupby(level=KEY, observed=True).agg(["min", "max", "count"]).reset_index()
    spread = spread.rename(columns={"min": "night_p50_min_ms", "max": "night_p50_max_ms", "count": "nights"})
    out = table.merge(spread, on=KEY, how="left")
    verdicts = []
    for r in out.itertuples():
        v = str(r.verdict)
        if v in ("regression", "improvement"):
            if nights < MIN_BASELINE_RUNS:
                v = f"unconfirmed {v}"
            elif (v == "regression" and r.p50_b_ms <= r.night_p50_max_ms) or (
                v == "improvement" and r.p50_b_ms >= r.night_p50_min_ms
            ):
                v = "within night-to-night spread"
        verdicts.append(v)
    return out.assign(verdict=verdicts)


def trend(root: Path, scenario: str, node: str) -> pd.DataFrame:
    """p50 per run of one scenario and node, for the trend chart: run, started_at, key columns, p50_ms."""
    runs = list_runs(root)
    runs = runs[(runs["scenario"] == scenario) & (runs["node"] == node)]
    frames = []
    for r in runs.itertuples():
        try:
            _, samples = load_run(Path(r.path))
        except (OSError, ValueError):
            continue
        m = stats.measured_ms(samples)
        if m.empty:
            continue
        p50 = m.groupby(KEY, observed=True)["ms"].median().reset_index()
        frames.append(p50.assign(run_id=r.run_id, started_at=r.started_at, status=r.status))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
