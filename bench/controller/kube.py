"""Levels kube and kubelet in the report: pod startup as a user sees it, the kubelet's own view
of the CRI ops beside the `cri` level's, and the kubelet's memory.

Inputs: the samples, the kubelet metrics each level scraped before and after its lifecycles
(artifacts kube/<level>-<stack>-metrics-{before,after}.txt, Prometheus text) and the memory rows
those levels sampled (phase = the level's name, role kubelet for the kubelet itself).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.controller import density, hops, stats
from bench.controller.render import Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.levelnames import KUBE_LEVELS
from bench.node.metrics import Metrics, parse_prometheus
from bench.ops import KUBE_LIFECYCLE_OPS

# kubelet_runtime_operations_duration_seconds' operation_type for each CRI op of a pod lifecycle.
OPERATION_TYPE = {
    "RunPodSandbox": "run_podsandbox",
    "CreateContainer": "create_container",
    "StartContainer": "start_container",
    "StopContainer": "stop_container",
    "RemoveContainer": "remove_container",
    "StopPodSandbox": "stop_podsandbox",
    "RemovePodSandbox": "remove_podsandbox",
}
STARTUP_OPS = KUBE_LIFECYCLE_OPS[:3]
# The upstream SLO: pod startup (creation to containers started, seen by a watch) p99 <= 5 s.
STARTUP_SLO_MS = 5000.0
# Node e2e density test limits (test/e2e_node/density_test.go): kubelet RSS 50-100 MiB,
# runtime 500 MiB, checked at 35 to 100 pods per node.
KUBELET_LIMIT_MIB = (50, 100)
RUNTIME_LIMIT_MIB = 500

Scrapes = dict[tuple[str, str], tuple[Metrics, Metrics]]


def histogram_delta(
    before: Metrics,
    after: Metrics,
    name: str,
    **match: str,
) -> tuple[float, float, list[tuple[float, float]]]:
    """count, sum and cumulative (le, count) buckets of a histogram's growth between two scrapes."""
    want = set(match.items())

    def pick(suffix: str) -> dict[frozenset[tuple[str, str]], float]:
        return {lab: v for (n, lab), v in after.items() if n == name + suffix and want <= set(lab)}

    def grown(suffix: str) -> dict[frozenset[tuple[str, str]], float]:
        return {lab: v - before.get((name + suffix, lab), 0.0) for lab, v in pick(suffix).items()}

    count = sum(grown("_count").values())
    total = sum(grown("_sum").values())
    buckets: dict[float, float] = {}
    for lab, v in grown("_bucket").items():
        le = dict(lab).get("le", "+Inf")
        edge = math.inf if le == "+Inf" else float(le)
        buckets[edge] = buckets.get(edge, 0.0) + v
    return count, total, sorted(buckets.items())


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile: linear inside the bucket the q-th observation falls in."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    prev_edge, prev_count = 0.0, 0.0
    for edge, count in buckets:
        if count >= rank:
            if math.isinf(edge):
                return prev_edge
            if count == prev_count:
                return edge
            return prev_edge + (edge - prev_edge) * (rank - prev_count) / (count - prev_count)
        prev_edge, prev_count = edge, count
    return math.nan


def scrapes(run: Run) -> Scrapes:
    """(level, stack ident) -> the kubelet's metrics before and after, parsed once per run."""
    return run.derived("kubelet_scrapes", _scrapes)


def _scrapes(run: Run) -> Scrapes:
    out = {}
    for after in run.artifacts("kube", "*-metrics-after.txt"):
        stem = after.name[: -len("-metrics-after.txt")]
        level, _, ident = stem.partition("-")
        before = after.with_name(f"{stem}-metrics-before.txt")
        if level in KUBE_LEVELS and ident and before.exists():
            out[(level, ident)] = (parse_prometheus(run.text(before)), parse_prometheus(run.text(after)))
    return out


def _stack_of(ident: str, samples: pd.DataFrame) -> str:
    for stack in samples["stack"].unique() if not samples.empty else []:
        if str(stack).replace("@", "-") == ident:
            return str(stack)
    return ident


def kubelet_view(scraped: Scrapes, samples: pd.DataFrame) -> pd.DataFrame:
    """Per level, stack and CRI op: the kubelet's own latency (mean, bucket p50) beside the cri level's."""
    rows = []
    cri = samples[(samples["level"] == "cri") & samples["ok"] & ~samples["warmup"]] if not samples.empty else samples
    for (level, ident), (before, after) in scraped.items():
        stack = _stack_of(ident, samples)
        name = "kubelet_runtime_operations_duration_seconds"
        for op, kind in OPERATION_TYPE.items():
            count, total, buckets = histogram_delta(before, after, name, operation_type=kind)
            mine = cri[(cri["stack"] == stack) & (cri["op"] == op)]["duration_ns"].to_numpy(dtype=float) / 1e6
            rows.append(
                {
                    "level": level,
                    "stack": stack,
                    "cri op": op,
                    "kubelet calls": int(count),
                    "kubelet mean (ms)": 1000 * total / count if count else math.nan,
                    "kubelet p50 (ms, buckets)": 1000 * bucket_quantile(buckets, 0.5),
                    "cri level n": len(mine),
                    "cri level mean (ms)": float(mine.mean()) if len(mine) else math.nan,
                    "cri level p50 (ms)": float(np.median(mine)) if len(mine) else math.nan,
                }
            )
    return pd.DataFrame(rows)


def kubelet_calls(scraped: Scrapes, samples: pd.DataFrame) -> pd.DataFrame:
    """Per level and stack: every CRI call the kubelet made while the level ran, per pod started."""
    rows = []
    for (level, ident), (before, after) in scraped.items():
        name = "kubelet_runtime_operations_duration_seconds_count"
        grown = {
            dict(lab).get("operation_type", ""): v - before.get((n, lab), 0.0)
            for (n, lab), v in after.items()
            if n == name
        }
        pods = grown.get("run_podsandbox", 0.0)
        lifecycle = set(OPERATION_TYPE.values())
        other = {k: v for k, v in grown.items() if k not in lifecycle and v > 0}
        top = sorted(other.items(), key=lambda kv: -kv[1])[:4]
        rows.append(
            {
                "level": level,
                "stack": _stack_of(ident, samples),
                "pods started": int(pods),
                "CRI calls": int(sum(grown.values())),
                "calls per pod": sum(grown.values()) / pods if pods else math.nan,
                "besides the lifecycle": ", ".join(f"{k} {v:.0f}" for k, v in top),
            }
        )
    return pd.DataFrame(rows)


def kubelet_slis(scraped: Scrapes, samples: pd.DataFrame) -> pd.DataFrame:
    """The kubelet's pod start histograms (mean per pod) and its image pulls (mean per pull) beside
    level kube's watched startup."""
    rows = []
    for (level, ident), (before, after) in scraped.items():
        row: dict[str, object] = {"level": level, "stack": _stack_of(ident, samples)}
        # kubelet_image_pull_duration_seconds: the pulls inside pod start (scenario pull.in_pod_start);
        # its smallest bucket is 1 s, so the mean is the figure, beside level kube's own phases.
        for metric in (
            "kubelet_pod_start_sli_duration_seconds",
            "kubelet_pod_start_duration_seconds",
            "kubelet_image_pull_duration_seconds",
        ):
            count, total, _ = histogram_delta(before, after, metric)
            if metric == "kubelet_image_pull_duration_seconds" and not count:
                continue  # no pull in pod start: no columns for it
            short = metric.removeprefix("kubelet_").removesuffix("_seconds")
            row[f"{short} n"] = int(count)
            row[f"{short} mean (ms)"] = 1000 * total / count if count else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def startup(samples: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Level kube's pod startup per lifecycle (PodScheduled + SandboxReady + PodReady: creation
    to Ready, seen by the watch), per stack and concurrency: p50, p90, p99 with intervals."""
    s = samples[(samples["level"] == "kube") & samples["ok"] & ~samples["warmup"]] if not samples.empty else samples
    s = s[s["op"].isin(STARTUP_OPS)] if not s.empty else s
    rows = []
    if s.empty:
        return pd.DataFrame()
    keys = ["stack", "handler", "concurrency", "iteration", "worker"]
    keys = [k for k in keys if k in s.columns]
    per = s.groupby(keys)["duration_ns"].agg(["sum", "count"]).reset_index()
    per = per[per["count"] == len(STARTUP_OPS)]
    for (stack, handler, conc), g in per.groupby(["stack", "handler", "concurrency"], sort=True):
        ms = g["sum"].to_numpy(dtype=float) / 1e6
        row: dict[str, object] = {"target": f"{stack}/{handler}", "concurrency": int(conc), "n": len(ms)}
        for q in (50, 90, 99):
            row[f"p{q} (ms)"] = float(np.percentile(ms, q))
            lo, hi = stats.quantile_ci(ms, q / 100, confidence)
            row[f"p{q} CI"] = f"[{lo:.0f}, {hi:.0f}]" if not math.isnan(lo) and not math.isnan(hi) else "n too small"
        row["within SLO (p99 ≤ 5 s)"] = bool(row["p99 (ms)"] <= STARTUP_SLO_MS)  # type: ignore[operator]
        rows.append(row)
    return pd.DataFrame(rows)


def kubelet_memory(memory: pd.DataFrame) -> pd.DataFrame:
    """Per level and stack: the kubelet's and the stack daemons' memory while the level ran (MiB)."""
    if memory.empty or "phase" not in memory.columns:
        return pd.DataFrame()
    m = memory[memory["phase"].isin(KUBE_LEVELS)]
    if m.empty:
        return pd.DataFrame()
    rows = []
    for (level, stack), g in m.groupby(["phase", "stack"], sort=True):
        if not stack:
            continue
        kubelet = g[g["role"] == "kubelet"]
        daemons = g[g["role"] == "daemon"].groupby("sweep")[["rss", "pss"]].sum()
        idle = kubelet[kubelet["pods_running"] == 0]
        mib = 1024 * 1024
        rows.append(
            {
                "level": level,
                "stack": stack,
                "kubelet RSS idle (MiB)": float(idle["rss"].median()) / mib if len(idle) else math.nan,
                "kubelet RSS max (MiB)": float(kubelet["rss"].max()) / mib if len(kubelet) else math.nan,
                "kubelet PSS max (MiB)": float(kubelet["pss"].max()) / mib if len(kubelet) else math.nan,
                "kubelet limit (MiB)": f"{KUBELET_LIMIT_MIB[0]}-{KUBELET_LIMIT_MIB[1]}",
                "runtime daemons RSS max (MiB)": float(daemons["rss"].max()) / mib if len(daemons) else math.nan,
                "runtime limit (MiB)": RUNTIME_LIMIT_MIB,
                "max pods running": int(g["pods_running"].max()) if g["pods_running"].notna().any() else 0,
                "sweeps": int(kubelet["sweep"].nunique()),
            }
        )
    return pd.DataFrame(rows)


# The dockershim question: the same static pod through a kubelet 1.23 with its in-tree
# dockershim and through level kubelet (1.36 + cri-dockerd) on the same dockerd.
DOCKERSHIM_MAPPING: dict[str, dict[str, tuple[str, ...]]] = {
    "pod start": {"dockershim": ("PodReady",), "kubelet": ("SandboxReady", "PodReady")},
    "pod stop": {"dockershim": ("PodDelete",), "kubelet": ("PodDelete",)},
}


def dockershim(samples: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per docker stack instance: pod start and stop through dockershim (kubelet 1.23) and through
    kubelet 1.36 + cri-dockerd, p50 per lifecycle at concurrency 1, the difference (what moving
    dockershim out of kubelet costs, with the version change) with its bootstrap interval."""
    rows = []
    if samples.empty or "dockershim" not in set(samples["level"].unique()):
        return pd.DataFrame()
    for (stack, handler), _ in samples[samples["level"] == "dockershim"].groupby(["stack", "handler"], sort=True):
        for what, by_level in DOCKERSHIM_MAPPING.items():
            shim = hops.per_lifecycle_ms(
                hops.level_samples(samples, str(stack), str(handler), "dockershim"), by_level["dockershim"]
            )
            out = hops.per_lifecycle_ms(
                hops.level_samples(samples, str(stack), str(handler), "kubelet"), by_level["kubelet"]
            )
            if len(shim) < 2 or len(out) < 2:
                continue
            diff, lo, hi = hops.bootstrap_median_diff(out, shim, confidence)
            rows.append(
                {
                    "target": f"{stack}/{handler}",
                    "pod": what,
                    "dockershim p50 (ms)": float(np.median(shim)),
                    "kubelet + cri-dockerd p50 (ms)": float(np.median(out)),
                    "out of tree - in tree (ms)": diff,
                    "CI low": lo,
                    "CI high": hi,
                    "n dockershim": len(shim),
                    "n kubelet": len(out),
                }
            )
    return pd.DataFrame(rows)


def dockershim_ops(view: pd.DataFrame) -> pd.DataFrame:
    """From the kubelets' own histograms (kubelet_view): each CRI op's mean through dockershim
    (in-process in kubelet 1.23) and through cri-dockerd (a gRPC hop from kubelet 1.36), per
    docker stack; the part of the difference that is the runtime call itself."""
    if view.empty or "dockershim" not in set(view["level"]):
        return pd.DataFrame()
    mean = "kubelet mean (ms)"
    cols = ["stack", "cri op", mean, "kubelet calls"]
    shim = view[view["level"] == "dockershim"][cols]
    out = view[view["level"] == "kubelet"][cols]
    both = shim.merge(out, on=["stack", "cri op"], suffixes=(" dockershim", " cri-dockerd"))
    both = both.dropna(subset=[f"{mean} dockershim", f"{mean} cri-dockerd"])
    both["cri-dockerd - dockershim (ms)"] = both[f"{mean} cri-dockerd"] - both[f"{mean} dockershim"]
    return both.reset_index(drop=True)


def applies(run: Run) -> bool:
    return bool(run.levels & set(KUBE_LEVELS))


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


def kube_sections(run: Run) -> list[Section]:
    """Pod startup through Kubernetes, the kubelet's own view of the CRI ops, its memory."""
    out: list[Section] = []
    samples, scraped = run.samples, scrapes(run)
    kube_startup = startup(samples) if "kube" in run.levels else pd.DataFrame()
    shim = dockershim(samples)
    view = kubelet_view(scraped, samples)
    if not kube_startup.empty:
        t = kube_startup
        out.append(
            Section(
                "Pod startup through the API server (level kube; creation to Ready, ms, 95% CI)",
                [Para(KUBE_TEXT), Table(t, 0)],
                summary=True,
            )
        )
    if not shim.empty:
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
                    Table(shim),
                    Para(
                        "The hop alone, as each kubelet times its runtime calls "
                        "(`kubelet_runtime_operations_duration_seconds`, mean per call over the level, every "
                        "concurrency): the in-process dockershim call against the gRPC call to cri-dockerd."
                    ),
                    Table(dockershim_ops(view)),
                ],
                summary=True,
            )
        )
    kubelet_tables = [
        (
            view,
            "The kubelet's own view of each CRI op beside the cri level's",
            "From `kubelet_runtime_operations_duration_seconds`, scraped from each kubelet's loopback port before "
            "and after the level (its growth in between: every pod the kubelet ran, warm-up and every concurrency "
            "included); the p50 is read from the histogram's buckets. The `cri` level's figures are its measured "
            "lifecycles at every concurrency. A kubelet removes sandboxes lazily (garbage collection), so "
            "RemovePodSandbox may show no calls.",
        ),
        (
            kubelet_calls(scraped, samples),
            "Every CRI call a kubelet made, per pod",
            "A kubelet asks far more than the seven lifecycle calls the `cri` level sends: status, list and version "
            "calls of its sync loop, PLEG and status manager, all of which the runtime serves while pods start.",
        ),
        (
            kubelet_slis(scraped, samples),
            "The kubelet's pod start histograms",
            "`kubelet_pod_start_sli_duration_seconds` starts at the pod's creationTimestamp, which the API server "
            "stores in whole seconds: its mean runs up to a second above the watched startup. "
            "`kubelet_pod_start_duration_seconds` starts when the kubelet first sees the pod.",
        ),
    ]
    for frame, title, text in kubelet_tables:
        if not frame.empty:
            out.append(Section(title, [Para(text), Table(frame)], level=3))
    memory = kubelet_memory(run.memory)
    if not memory.empty:
        out.append(
            Section(
                "Kubelet memory while the level ran (MiB)",
                [
                    Para(
                        "Sampled every second on the node (smaps_rollup, stat) while the level's pods started, ran and "
                        "went. Beside them the node e2e density tests' limits (kubelet 50-100 MiB RSS, runtime "
                        "500 MiB, at 35-100 pods per node): this run held at most the pods in the last column."
                    ),
                    Table(memory),
                    Para(
                        "Sampler's own cost (it runs while pods are timed): "
                        + (
                            density.sampler_cost({t: s for t, s in run.meta.get("sampler", {}).items() if " " in t})
                            or "not recorded"
                        )
                        + "."
                    ),
                ],
                summary=True,
            )
        )
    return out


VIEW = View("kube", kube_sections, applies)
