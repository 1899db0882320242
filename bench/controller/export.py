"""A run's figures in the formats other tools already read (`hopbench export RUN --format F`).

- `openmetrics`: OpenMetrics text (Prometheus reads it; node_exporter's textfile collector reads
  the same lines from a `.prom` file). Gauges, per node, target, level, concurrency and op:
  `hopbench_op_latency_seconds{...,quantile="0.5|0.9|0.99"}`, `hopbench_op_samples`,
  `hopbench_op_failed`; per run `hopbench_run_info` (run id, node, harness commit: the only series
  naming the run, so the others keep their labels night after night),
  `hopbench_run_timestamp_seconds` (start) and `hopbench_run_complete`; with a nightly check,
  `hopbench_regression` (1 where the gate flagged a regression, else 0); with level image, per
  image, link shape and mode (bench.controller.pulls) `hopbench_pull_throughput_bytes_per_second`
  (compressed bytes over the p50), `hopbench_pull_wire_bytes` (median per pull) and, where the
  workers of a round pulled one image together, `hopbench_pull_fetches`. No timestamps on
  samples (the textfile collector refuses them).
- `kube-burner`: a JSON list, one document per target and op in the shape of kube-burner's
  latency quantiles (`pkg/measurements/metrics`: quantileName, uuid, P99, P95, P50, max, avg in
  ms, timestamp, metricName, jobName, metadata), for Elasticsearch/OpenSearch dashboards.
  metricName is `hopbenchLatencyQuantilesMeasurement`; quantileName the op ("PodStartup" and
  "PodTeardown" for the per-lifecycle sums at level cri); uuid is derived from the run id (the
  same run always gets the same uuid); metadata names node, stack, handler, level, concurrency,
  versions, sample count, scenario hash and harness commit. Figures keep their fractions of a
  millisecond (kube-burner writes whole ms; Elasticsearch coerces either into an existing field).
- `perfdata`: clusterloader2's PerfData (`pkg/measurement/util/perftype.go`) for pod start-up
  from level kube, what Perfdash reads: one document per target and concurrency, data items
  pod_startup (created to Ready, seen by the watch), create_to_schedule (PodScheduled) and
  schedule_to_watch (SandboxReady + PodReady), Perc50/Perc90/Perc99 in ms, file names
  `PodStartupLatency_PodStartupLatency_<target>_c<n>_<run id>.json`.
- `csv`: every sample, one row each, the columns of samples.parquet.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.controller import headline, kube, pulls, stats
from bench.controller.run import Run, emulated_nodes
from bench.errors import InputError
from bench.node.nodeinfo import EMULATED

FORMATS = ("openmetrics", "kube-burner", "perfdata", "csv")
KUBE_BURNER_METRIC = "hopbenchLatencyQuantilesMeasurement"
PERFDATA_VERSION = "1.0"
# uuid5 namespace for run ids: a run exported twice gets the same uuid.
RUN_NAMESPACE = uuid.UUID("6b1f0a3e-9c52-5d0e-8a51-7c1d2f4e9b30")
SUM_NAMES = {"pod start-up": "PodStartup", "pod teardown": "PodTeardown"}


def run_uuid(run_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, run_id))


def _label(value: Any) -> str:
    """An OpenMetrics label value: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, Any]) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"


def _num(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    return f"{float(x):.9g}"


def _started(meta: dict[str, Any]) -> float:
    try:
        return dt.datetime.fromisoformat(str(meta.get("started_at"))).timestamp()
    except ValueError:
        return math.nan


def _measured(samples: pd.DataFrame) -> pd.DataFrame:
    return samples[~samples["warmup"].astype(bool)] if not samples.empty else samples


def openmetrics(
    meta: dict[str, Any],
    samples: pd.DataFrame,
    nightly: dict[str, Any] | None = None,
    pull_rows: pd.DataFrame | None = None,
) -> str:
    """The run as OpenMetrics text, ending with `# EOF`. The run id is on the info and timestamp
    series only: the op series keep the same labels night after night (a label that changes every
    run would make a new series each night)."""
    run = {"scenario": meta.get("scenario", {}).get("name", "")}
    info = {
        "run_id": meta["run_id"],
        **run,
        "node": meta.get("node", ""),
        "commit": meta.get("harness", {}).get("commit") or "",
        # Figures of a node whose CPU was emulated: functional, not for comparison.
        "emulated": ",".join(emulated_nodes(meta)),
    }
    summary = stats.summarize(samples)
    lines: list[str] = []

    def family(name: str, help_text: str, unit: str = "", kind: str = "gauge") -> None:
        lines.append(f"# TYPE {name} {kind}")
        if unit:
            lines.append(f"# UNIT {name} {unit}")
        lines.append(f"# HELP {name} {help_text}")

    family("hopbench_run", "The run these figures come from.", kind="info")
    lines.append(f"hopbench_run_info{_labels(info)} 1")
    family("hopbench_run_timestamp_seconds", "Start of the run (Unix time).", "seconds")
    lines.append(f"hopbench_run_timestamp_seconds{_labels(run)} {_num(_started(meta))}")
    family("hopbench_run_complete", "1 when the run completed, 0 when it failed or was cut short.")
    lines.append(f"hopbench_run_complete{_labels(run)} {1 if meta.get('status') == 'complete' else 0}")
    keys = [
        (
            {
                **run,
                "node": r.node,
                "stack": r.stack,
                "handler": r.handler,
                "level": r.level,
                "concurrency": int(r.concurrency),
                "op": r.op,
            },
            r,
        )
        for r in summary.itertuples()
    ]
    what = "Latency quantile of one op, warm-up excluded, failed calls not timed."
    family("hopbench_op_latency_seconds", what, "seconds")
    for labels, r in keys:
        if int(r.n) == 0:
            continue
        for q, col in (("0.5", "p50_ms"), ("0.9", "p90_ms"), ("0.99", "p99_ms")):
            value = float(getattr(r, col)) / 1e3
            lines.append(f"hopbench_op_latency_seconds{_labels({**labels, 'quantile': q})} {_num(value)}")
    family("hopbench_op_samples", "Measured samples of one op (warm-up excluded).")
    for labels, r in keys:
        lines.append(f"hopbench_op_samples{_labels(labels)} {int(r.n)}")
    family("hopbench_op_failed", "Failed calls of one op.")
    for labels, r in keys:
        lines.append(f"hopbench_op_failed{_labels(labels)} {int(r.failed)}")
    if nightly and nightly.get("rows") is not None:
        family("hopbench_regression", "1 where the nightly gate flagged a regression against the baseline nights.")
        for row in nightly["rows"]:
            labels = {
                **run,
                "node": meta.get("node", ""),
                **{k: row.get(k, "") for k in ("stack", "handler", "level", "concurrency", "op")},
            }
            lines.append(f"hopbench_regression{_labels(labels)} {1 if row.get('verdict') == 'regression' else 0}")
    if pull_rows is not None and not pull_rows.empty:
        _pull_families(lines, family, run, meta, pull_rows)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _pull_families(
    lines: list[str], family: Any, run: dict[str, str], meta: dict[str, Any], rows: pd.DataFrame
) -> None:
    def labels(r: Any) -> str:
        keys = ("stack", "handler", "concurrency", "image", "link", "mode")
        return _labels(
            {**run, "node": meta.get("node", ""), **{k: r[k] for k in keys}, "same": str(bool(r["same"])).lower()}
        )

    for name, col, scale, what, unit in (
        (
            "hopbench_pull_throughput_bytes_per_second",
            "MiB/s",
            pulls.MIB,
            "The image's compressed bytes over the p50 of its PullImage.",
            "bytes_per_second",
        ),
        ("hopbench_pull_wire_bytes", "wire MB", 1e6, "What the registry link carried per pull (median).", "bytes"),
        (
            "hopbench_pull_fetches",
            "fetches",
            1.0,
            "A round's wire bytes over the image's, where its workers pulled one image together.",
            "",
        ),
    ):
        chosen = rows.dropna(subset=[col])
        if name == "hopbench_pull_fetches":
            chosen = chosen[chosen["same"]]
        if chosen.empty:
            continue
        family(name, what, unit)
        for _, r in chosen.iterrows():
            lines.append(f"{name}{labels(r)} {_num(float(r[col]) * scale)}")


def _versions(meta: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, str]]:
    return {
        (str(t.get("node", meta.get("node", ""))), str(t.get("stack")), str(t.get("handler"))): t.get("versions", {})
        for t in meta.get("targets", [])
        if t.get("available")
    }


def _quantiles(ms: np.ndarray) -> dict[str, float]:
    return {
        "P99": round(float(np.percentile(ms, 99)), 3),
        "P95": round(float(np.percentile(ms, 95)), 3),
        "P50": round(float(np.percentile(ms, 50)), 3),
        "max": round(float(ms.max()), 3),
        "avg": round(float(ms.mean()), 3),
    }


def kube_burner(meta: dict[str, Any], samples: pd.DataFrame) -> list[dict[str, Any]]:
    """One kube-burner latency-quantiles document per node, target, level, concurrency and op."""
    scen = meta.get("scenario", {})
    versions = _versions(meta)
    common = {
        "uuid": run_uuid(meta["run_id"]),
        "timestamp": dt.datetime.fromtimestamp(_started(meta), dt.UTC).isoformat().replace("+00:00", "Z"),
        "metricName": KUBE_BURNER_METRIC,
        "jobName": str(scen.get("name", "hopbench")),
    }
    harness = meta.get("harness", {})
    emulated = set(emulated_nodes(meta))

    def metadata(node: str, stack: str, handler: str, level: str, conc: int, n: int) -> dict[str, Any]:
        return {
            "runId": meta["run_id"],
            "node": node,
            "stack": stack,
            "handler": handler,
            "target": f"{stack}/{handler}",
            "level": level,
            "concurrency": conc,
            "samples": n,
            "versions": versions.get((node, stack, handler), {}),
            "scenarioSha256": scen.get("sha256", ""),
            "harnessCommit": harness.get("commit", ""),
            "emulated": EMULATED if node in emulated else "",
        }

    docs = []
    m = _measured(samples)
    m = m[m["ok"].astype(bool)] if not m.empty else m
    for (node, stack, handler, level, conc, op), g in m.groupby(
        ["node", "stack", "handler", "level", "concurrency", "op"], sort=True, observed=True
    ):
        ms = g["duration_ns"].to_numpy(float) / 1e6
        docs.append(
            {
                "quantileName": str(op),
                **common,
                **_quantiles(ms),
                "metadata": metadata(str(node), str(stack), str(handler), str(level), int(conc), len(ms)),
            }
        )
    for measure, ops in headline.MEASURES.items():
        life = headline.per_lifecycle(samples, ops)
        for (node, target), g in life.groupby(["node", "target"], sort=True):
            stack, _, handler = str(target).partition("/")
            ms = g["ms"].to_numpy(float)
            docs.append(
                {
                    "quantileName": SUM_NAMES[measure],
                    **common,
                    **_quantiles(ms),
                    "metadata": {
                        **metadata(str(node), stack, handler, headline.LEVEL, 1, len(ms)),
                        "ops": list(ops),
                    },
                }
            )
    return docs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")


def perfdata(meta: dict[str, Any], samples: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """File name -> clusterloader2 PerfData of pod start-up, per target and concurrency (level kube)."""
    s = _measured(samples)
    s = s[(s["level"] == "kube") & s["ok"].astype(bool) & s["op"].isin(kube.STARTUP_OPS)] if not s.empty else s
    out: dict[str, dict[str, Any]] = {}
    if s.empty:
        return out
    keys = [k for k in ("node", "stack", "handler", "concurrency", "iteration", "worker") if k in s.columns]
    wide = s.pivot_table(index=keys, columns="op", values="duration_ns", aggfunc="sum").dropna()
    scheduled, sandbox, ready = kube.STARTUP_OPS
    parts = {
        "create_to_schedule": wide[scheduled],
        "schedule_to_watch": wide[sandbox] + wide[ready],
        "pod_startup": wide[scheduled] + wide[sandbox] + wide[ready],
    }
    frame = pd.DataFrame(parts).reset_index()
    emulated = set(emulated_nodes(meta))
    for (node, stack, handler, conc), g in frame.groupby(["node", "stack", "handler", "concurrency"], sort=True):
        items = []
        for metric in parts:
            ms = g[metric].to_numpy(float) / 1e6
            data = {f"Perc{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}
            items.append({"data": data, "unit": "ms", "labels": {"Metric": metric}})
        doc = {
            "version": PERFDATA_VERSION,
            "dataItems": items,
            "labels": {
                "run_id": meta["run_id"],
                "node": str(node),
                "target": f"{stack}/{handler}",
                "concurrency": str(int(conc)),
                "pods": str(len(g)),
                "emulated": EMULATED if str(node) in emulated else "",
            },
        }
        name = f"PodStartupLatency_PodStartupLatency_{_slug(f'{stack}_{handler}')}_c{int(conc)}_{meta['run_id']}.json"
        out[name] = doc
    return out


def write(run: Run | Path, fmt: str, out: Path | None) -> list[Path]:
    """Export the run in `fmt` to `out` (a file; a folder for perfdata); the default is beside the run's data."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    run = run if isinstance(run, Run) else Run(run)
    run_dir, meta, samples = run.path, run.meta, run.samples
    if samples.empty:
        raise InputError(f"{run_dir}: the run has no samples to export")
    default = {
        "openmetrics": run_dir / "hopbench.prom",
        "kube-burner": run_dir / f"{KUBE_BURNER_METRIC}.json",
        "perfdata": run_dir / "perfdata",
        "csv": run_dir / "samples.csv",
    }
    target = out or default[fmt]
    if fmt == "perfdata":
        docs = perfdata(meta, samples)
        if not docs:
            raise InputError(f"{run_dir}: no pod start-up of level kube in this run (perfdata needs level kube)")
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, doc in docs.items():
            paths.append(_write_atomic(target / name, json.dumps(doc, indent=2) + "\n"))
        return paths
    if fmt == "openmetrics":
        text = openmetrics(meta, samples, run.json("nightly.json"), pulls.of(run) if pulls.applies(run) else None)
    elif fmt == "kube-burner":
        text = json.dumps(kube_burner(meta, samples), indent=2) + "\n"
    else:
        emulated = set(run.emulated)
        if emulated:  # a column only where it says something: a node's figures are not for comparison
            samples = samples.assign(emulated=[EMULATED if n in emulated else "" for n in samples["node"]])
        text = samples.to_csv(index=False)
    return [_write_atomic(target, text)]


def _write_atomic(path: Path, text: str) -> Path:
    """Write through a temporary file and a rename: a collector never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
