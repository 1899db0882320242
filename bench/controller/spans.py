"""The components' own account (scenario `tracing: true`): span hops, a waterfall, what tracing costs.

The spans (spans.parquet, or spans.jsonl while a run is open) are ours (service `hopbench`: a
root `lifecycle` per lifecycle and a client span per CRI call, bench.node.traces) and the
daemons' own, joined by trace id: a runtime that read our `traceparent` made its server span a
child of our client span. For each client span:

- **client**: our call as we timed it;
- **server**: the runtime's span for that call (the child of ours);
- **transport**: client minus server (gRPC over the unix socket, both ends' marshalling; for
  Docker, whose cri-dockerd passes no trace context on, the server part is dockerd's Engine API
  handlers inside the call's window, joined by time at 1 in flight, and the rest, cri-dockerd's
  own work with its CNI set-up, counts here);
- **shim**: the spans under the server span that are calls to the shim or OCI runtime
  (containerd's ttrpc `containerd.task.v3.Task/*`, CRI-O's `runtimeOCI.*`), the outermost ones;
- **CNI**: likewise the network set-up and tear-down spans;
- **daemon**: server minus shim and CNI, the daemon's own work;
- **shim server**: where the shim traces too (containerd's runc shim built with the
  `shim_tracing` tag, instance `<kind>@<version>+traced-shim`), its own ttrpc server spans under
  those calls: the shim's work with runc's inside it; **ttrpc** is shim minus shim server, the
  round trips to the shim. NaN where the shim sent no span.

Per stack, handler, concurrency and op the table gives each part's median over the measured
lifecycles. The waterfall draws, per stack, the pod start-up of the lifecycle whose start-up is
the median one: each span a bar at its offset, labelled with its ms, nested by depth.

What tracing costs: a stack instance named `<kind>@<version>+traced` runs beside its untraced
twin in the same interleaved run; per op, the ratio of medians traced / untraced with its
percentile-bootstrap interval. Likewise what the shim_tracing build of the shim costs:
`+traced-shim` against `+traced` (the release-style shim), both exporting the daemon's spans.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from bench.controller import charts, stats
from bench.controller.charts import plt
from bench.controller.render import Block, Image, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.ops import POD_START_OPS
from bench.stacks import kind_of, kube_node_name, variant_of, version_of

OURS = "hopbench"
# containerd: its ttrpc calls to the shim; CRI-O: its oci package (conmon and runc, and the wait
# for the process), named by function as CRI-O names every span.
SHIM = re.compile(r"containerd\.task\.v\d+\.Task/|/internal/oci\.|runtimeOCI\b|\bconmon\b")
# containerd: cni.Setup, cni.Remove, cni.setup_pod_network; CRI-O: (*Server).networkStart/Stop.
CNI = re.compile(r"^cni\.|\.networkStart$|\.networkStop$")
PARTS = ("client", "server", "transport", "daemon", "shim", "CNI", "shim server", "ttrpc")
# The instances that export their own spans: the daemon's (+traced), and the daemon's and the shim's.
TRACED, TRACED_SHIM = "traced", "traced-shim"


def is_traced(stack: str) -> bool:
    return variant_of(stack) in (TRACED, TRACED_SHIM)


# The fewest lifecycles whose median has a distribution-free 95% interval.
MIN_N = 6


def _tree(spans: pd.DataFrame) -> tuple[dict[str, list[int]], dict[str, int]]:
    """children by parent span id, and row index by span id (within one run: ids are random)."""
    children: dict[str, list[int]] = defaultdict(list)
    index: dict[str, int] = {}
    for i, (sid, parent) in enumerate(zip(spans["span_id"], spans["parent_span_id"], strict=True)):
        index[str(sid)] = i
        if parent:
            children[str(parent)].append(i)
    return children, index


def _columns(spans: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """names, span ids and durations (ms) as plain arrays, made once (a column read per call is slow)."""
    dur = (spans["end_unix_ns"].to_numpy() - spans["start_unix_ns"].to_numpy()) / 1e6
    return spans["name"].to_numpy(dtype=object), spans["span_id"].to_numpy(dtype=object), dur


def _outermost_spans(
    root: int, cols: tuple[np.ndarray, np.ndarray, np.ndarray], children: dict[str, list[int]], pattern: re.Pattern[str]
) -> list[int]:
    """The outermost spans under `root` whose name matches `pattern` (one nested in another is
    left out: it counts within its parent)."""
    names, ids, _ = cols
    found, stack = [], list(children.get(str(ids[root]), []))
    while stack:
        i = stack.pop()
        if pattern.search(str(names[i])):
            found.append(i)
        else:
            stack.extend(children.get(str(ids[i]), []))
    return found


def _outermost(
    root: int, cols: tuple[np.ndarray, np.ndarray, np.ndarray], children: dict[str, list[int]], pattern: re.Pattern[str]
) -> float:
    """ms of the outermost spans under `root` whose name matches `pattern`."""
    return float(sum(cols[2][i] for i in _outermost_spans(root, cols, children, pattern)))


def _shim_servers(
    shims: list[int], cols: tuple[np.ndarray, np.ndarray, np.ndarray], children: dict[str, list[int]], kinds: np.ndarray
) -> float:
    """ms of the shim's own server spans under the daemon's shim calls `shims` (a shim built with
    shim_tracing answers each ttrpc call with a server span of the same name); NaN when none."""
    names, ids, dur = cols
    own = [j for i in shims for j in children.get(str(ids[i]), []) if kinds[j] == "server" and names[j] == names[i]]
    return float(sum(dur[j] for j in own)) if own else float("nan")


KUBELET = "kubelet"
CRI_METHOD = re.compile(r"^/?runtime\.v1\.(?:Runtime|Image)Service/(\w+)$")


def _callers(spans: pd.DataFrame) -> pd.DataFrame:
    """The client spans whose calls the table cuts up, with where they ran: ours (their own
    fields), and a kubelet's CRI calls at levels kube and kubelet, given the stack of the kubelet
    (its host.name is the stack's kubelet node name) and the lifecycle of that stack whose root
    span holds the call (calls outside every lifecycle, the kubelet's housekeeping, are left out)."""
    ours = spans[(spans["service"] == OURS) & (spans["span_kind"] == "client")].copy()
    ours["op"] = ours["name"]
    kubelet = spans[(spans["service"] == KUBELET) & (spans["span_kind"] == "client")]
    if kubelet.empty:
        return ours
    roots = spans[(spans["service"] == OURS) & (spans["name"] == "lifecycle")]
    by_node = {kube_node_name(str(st)): str(st) for st in roots["stack"].unique()}
    rows = []
    for _, row in kubelet.iterrows():
        m = CRI_METHOD.match(str(row["name"]))
        host = str(json.loads(str(row.get("attributes") or "{}")).get("host.name", ""))
        stack = by_node.get(host)
        if m is None or stack is None:
            continue
        life = roots[
            (roots["stack"] == stack)
            & (roots["start_unix_ns"] <= row["start_unix_ns"])
            & (roots["end_unix_ns"] >= row["end_unix_ns"])
        ]
        if life.empty:
            continue
        first = life.iloc[0]
        found = row.copy()
        for k in ("stack", "handler", "concurrency", "iteration", "warmup", "level"):
            found[k] = first[k]
        found["op"] = m.group(1)
        rows.append(found)
    return pd.concat([ours, pd.DataFrame(rows)]) if rows else ours


def call_parts(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per client span that called a runtime (ours; a kubelet's at levels kube and
    kubelet): where it ran and its parts in ms (NaN where the runtime sent no span for it)."""
    if spans.empty:
        return pd.DataFrame()
    spans = spans.reset_index(drop=True)
    if "level" not in spans:
        spans["level"] = ""
    children, _ = _tree(spans)
    services = spans["service"].to_numpy()
    start, end = spans["start_unix_ns"].to_numpy(), spans["end_unix_ns"].to_numpy()
    ids = spans["span_id"].to_numpy()
    callers = _callers(spans)
    engine = _engine_roots(spans)
    cols = _columns(spans)
    kinds = spans["span_kind"].to_numpy(dtype=object)
    rows = []
    for i, caller in callers.iterrows():
        client = (end[i] - start[i]) / 1e6
        server = [j for j in children.get(str(ids[i]), []) if services[j] not in (OURS, KUBELET)]
        row: dict[str, Any] = {
            k: caller[k] for k in ("stack", "handler", "level", "concurrency", "iteration", "warmup", "trace_id", "op")
        }
        row.update(client=client, caller=str(services[i]), joined="")
        if server:
            j = max(server, key=lambda k: end[k] - start[k])
            srv = (end[j] - start[j]) / 1e6
            shims = _outermost_spans(j, cols, children, SHIM)
            shim = float(sum(cols[2][k] for k in shims))
            cni = _outermost(j, cols, children, CNI)
            row.update(server=srv, transport=client - srv, shim=shim, CNI=cni, daemon=srv - shim - cni)
            own = _shim_servers(shims, cols, children, kinds)
            row.update(**{"shim server": own, "ttrpc": shim - own, "server service": services[j], "joined": "parent"})
        elif (found := _by_time(caller, int(start[i]), int(end[i]), engine)) is not None:
            # Docker: dockerd's Engine API handlers inside our call's window, one lifecycle at a
            # time (cri-dockerd passes no traceparent on); what is not theirs is cri-dockerd's
            # (its CNI included) and the transport.
            roots, service = found
            srv = float(sum(end[j] - start[j] for j in roots)) / 1e6
            shim = sum(_outermost(j, cols, children, SHIM) for j in roots)
            row.update(server=srv, transport=client - srv, shim=shim, CNI=0.0, daemon=srv - shim)
            row.update(**{"shim server": np.nan, "ttrpc": np.nan})
            row.update(**{"server service": service, "joined": f"time ({len(roots)} Engine API calls)"})
        else:
            row.update({p: np.nan for p in PARTS[1:]}, **{"server service": ""})
        rows.append(row)
    return pd.DataFrame(rows)


def _engine_roots(spans: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """dockerd's root server spans (its Engine API handlers start traces of their own) per
    service: (starts, ends, row indexes), sorted by start."""
    out = {}
    roots = spans[
        spans["service"].str.startswith("dockerd") & (spans["span_kind"] == "server") & (spans["parent_span_id"] == "")
    ].sort_values("start_unix_ns")
    for service, g in roots.groupby("service"):
        out[str(service)] = (
            g["start_unix_ns"].to_numpy(),
            g["end_unix_ns"].to_numpy(),
            g.index.to_numpy(),
        )
    return out


def _by_time(
    caller: pd.Series, start: int, end: int, engine: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[list[int], str] | None:
    """For a call to a traced Docker instance, one lifecycle in flight: dockerd's root spans that
    lie inside the call's window (the traced instance's dockerd is the one whose spans do)."""
    if kind_of(str(caller["stack"])) != "docker" or variant_of(str(caller["stack"])) != "traced":
        return None
    if int(caller["concurrency"]) != 1 or not engine:
        return None
    for service, (starts, ends, idx) in engine.items():
        lo, hi = np.searchsorted(starts, start), np.searchsorted(starts, end)
        inside = [int(idx[k]) for k in range(lo, hi) if ends[k] <= end]
        if inside:
            return inside, service
    return None


def hop_rows(spans: pd.DataFrame, parts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per stack, handler, concurrency and op: n, the share of calls the runtime traced, and the
    median of each part (ms); `parts`: call_parts(spans) when the caller has it already."""
    parts = call_parts(spans) if parts is None else parts
    if parts.empty:
        return pd.DataFrame()
    parts = parts[~parts["warmup"].astype(bool)]
    if parts.empty:
        return pd.DataFrame()
    rows = []
    keys = ["stack", "handler", "level", "concurrency", "op"]
    for (stack, handler, level, conc, op), g in parts.groupby(keys, sort=False):
        traced = g.dropna(subset=["server"])
        row: dict[str, Any] = {
            "stack": stack,
            "handler": handler,
            "level": level,
            "concurrency": int(conc),
            "op": op,
            "caller": ", ".join(sorted(set(g["caller"]))),
            "n": len(g),
            "traced": len(traced) / len(g),
        }
        for p in PARTS:
            values = (g if p == "client" else traced)[p].to_numpy(float)
            values = values[~np.isnan(values)]  # the shim's parts exist only where the shim traces
            row[f"{p} (ms)"] = float(np.median(values)) if len(values) else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {op: i for i, op in enumerate(stats.op_order(list(out["op"].unique())))}
    return out.sort_values(
        ["stack", "handler", "concurrency", "op"], key=lambda c: c.map(order) if c.name == "op" else c
    )


def missing_spans(parts: pd.DataFrame) -> list[str]:
    """Per traced instance (`+traced`, `+traced-shim`): how many of our calls (measured or not) got no server span
    of the runtime (dropped by its exporter, or a call it does not trace); for Docker, whose
    cri-dockerd passes no traceparent on, how many calls at 1 in flight had no dockerd span in
    their window."""
    out: list[str] = []
    if parts.empty:
        return out
    # The agent's start-up probes (level probe) wait for an exporter to connect: not counted.
    parts = parts[parts["level"] != "probe"]
    for stack, g in parts.groupby("stack", sort=True):
        if not is_traced(str(stack)):
            continue
        docker = kind_of(str(stack)) == "docker"
        if docker:  # joined by time, and only one lifecycle in flight
            g = g[g["concurrency"] == 1]
        none = int(g["server"].isna().sum())
        why = " at 1 in flight (dockerd's spans joined by time: cri-dockerd passes no traceparent on)" if docker else ""
        out.append(f"{stack} {none} of {len(g)}{why}")
    return out


def tracing_pairs(names: list[str], variant: str = TRACED, base_variant: str = "") -> list[tuple[str, str]]:
    """(base, variant) instance names: `containerd@2.4.2` and `containerd@2.4.2+traced`; with
    variant `traced-shim` and base_variant `traced`, the shim_tracing build against the release one."""
    present = set(names)
    out = []
    for name in sorted(present):
        if variant_of(name) == variant:
            base = f"{kind_of(name)}@{version_of(name).split('+', 1)[0]}" + (f"+{base_variant}" if base_variant else "")
            if base in present:
                out.append((base, name))
    return out


SHIM_COST = ("release shim", "shim_tracing shim")


def cost_rows(samples: pd.DataFrame, shim: bool = False) -> pd.DataFrame:
    """Per traced pair, level, handler, concurrency and op: the untraced and traced p50 and the
    ratio traced / untraced with its interval; `shim`: the same for the shim_tracing build of the
    runc shim against the release-style one (both instances traced)."""
    if samples.empty:
        return pd.DataFrame()
    names = [str(s) for s in samples["stack"].unique()]
    pairs = tracing_pairs(names, TRACED_SHIM, TRACED) if shim else tracing_pairs(names)
    a_name, b_name = SHIM_COST if shim else ("untraced", "traced")
    ok = samples[samples["ok"].astype(bool) & ~samples["warmup"].astype(bool)]
    rows = []
    for base, traced in pairs:
        both = ok[ok["stack"].isin([base, traced])]
        for (level, handler, conc, op), g in both.groupby(["level", "handler", "concurrency", "op"], sort=False):
            a = g[g["stack"] == base]["duration_ns"].to_numpy(float) / 1e6
            b = g[g["stack"] == traced]["duration_ns"].to_numpy(float) / 1e6
            if len(a) == 0 or len(b) == 0:
                continue
            ratio, lo, hi = stats.ratio_of_medians(a, b) if min(len(a), len(b)) >= MIN_N else (np.nan,) * 3
            rows.append(
                {
                    "stack": base,
                    "level": level,
                    "handler": handler,
                    "concurrency": int(conc),
                    "op": op,
                    "n": min(len(a), len(b)),
                    f"{a_name} p50 (ms)": float(np.median(a)),
                    f"{b_name} p50 (ms)": float(np.median(b)),
                    f"{b_name} / {a_name}": ratio,
                    "CI low": lo,
                    "CI high": hi,
                }
            )
    return pd.DataFrame(rows)


AGREE_MS, AGREE_SHARE = 2.0, 0.25


def three_views(run: Run) -> pd.DataFrame:
    """The runtime's part of each CRI op, and what sits above it, three ways, for each traced
    instance measured at levels cri, split and oci in the same run (concurrency 1, p50):

    - differential (bench.controller.hops): the op at level oci (the runtime alone, on
      hopbench's minimal spec) and cri minus oci;
    - split: the runtime's calls inside the stack (the timing wrapper) and the op minus them;
    - spans: the daemon's call to its shim or OCI runtime, and our client span minus it.

    `agree`: the split's runtime part fits inside the span's shim call (within 2 ms or 25 %): the
    two views see the same runtime calls in the same op; `why they differ` names the known cause
    where they do not, or where the shim call holds far more than the runtime."""
    from bench.controller import hops

    if run.spans.empty or not {"cri", "split"} <= run.levels:
        return pd.DataFrame()
    parts = of(run)
    if parts.empty:
        return parts
    # The shim's own spans of the split's lifecycles: the same runc calls the wrapper timed.
    at_split = parts[(parts["level"] == "split") & (parts["concurrency"] == 1)].set_index(["stack", "handler", "op"])
    parts = parts[(parts["level"] == "cri") & (parts["concurrency"] == 1)]
    split = hops.split_table(run.splits)
    diff = hops.hop_costs(run)
    rows = []
    for _, p in parts.iterrows():
        if not is_traced(str(p["stack"])) or pd.isna(p["shim (ms)"]) or not p["shim (ms)"]:
            continue
        target = f"{p['stack']}/{p['handler']}"
        sp = split[(split["target"] == target) & (split["cri op"] == p["op"])] if not split.empty else split
        df = diff[(diff["target"] == target) & (diff["cri op"] == p["op"])] if not diff.empty else diff
        oci = df[df["lower"].str.startswith("oci:")] if not df.empty else df
        cri = df[df["upper"].str.startswith("cri:")] if not df.empty else df
        row: dict[str, Any] = {
            "stack": p["stack"],
            "op": p["op"],
            "differential: runtime alone (ms)": float(oci["lower p50 (ms)"].iloc[0]) if not oci.empty else np.nan,
            "split: runtime in the stack (ms)": float(sp["runtime (ms)"].iloc[0]) if not sp.empty else np.nan,
            "spans: shim call (ms)": float(p["shim (ms)"]),
            "differential: above (ms)": (
                float(cri["upper p50 (ms)"].iloc[0]) - float(oci["lower p50 (ms)"].iloc[0])
                if not oci.empty and not cri.empty
                else np.nan
            ),
            "split: above (ms)": float(sp["op p50 (ms)"].iloc[0] - sp["runtime (ms)"].iloc[0])
            if not sp.empty
            else np.nan,
            "spans: above (ms)": float(p["client (ms)"] - p["shim (ms)"]),
        }
        runc, call = row["split: runtime in the stack (ms)"], row["spans: shim call (ms)"]
        # Where the shim traces (+traced-shim): its own server spans in the split's lifecycles,
        # whose runc calls the wrapper timed: the shim's own work is the rest.
        key = (p["stack"], p["handler"], p["op"])
        own = float(at_split.loc[key, "shim server (ms)"]) if key in at_split.index else np.nan
        row["split level: shim's own span (ms)"] = own
        row["shim's own work (ms)"] = own - runc
        # The runtime's processes run inside the daemon's call to them: the split's runtime part
        # fits in the span's shim call (which also holds the shim's or conmon's own work), and
        # in the shim's own span where it sent one.
        call = own if own == own else call
        row["agree"] = bool(runc <= call + max(AGREE_MS, AGREE_SHARE * call)) if runc == runc else False
        if not row["agree"]:  # the split counts runc calls the shim's spans do not hold (see KNOWN)
            row["shim's own work (ms)"] = np.nan
        row["why they differ"] = KNOWN.get((kind_of(str(p["stack"])), str(p["op"])), "")
        rows.append(row)
    return pd.DataFrame(rows)


# What this machine showed (scenarios/traces-hops.yaml), and why, per stack kind and op.
KNOWN = {
    ("containerd", "StopContainer"): (
        "containerd deletes the task in its exit handler, after Task/Kill returns and outside the"
        " StopContainer span's tree: the split counts runc delete in the op, the spans only the kill"
    ),
    ("containerd", "StopPodSandbox"): (
        "as for StopContainer: the pause container's task is deleted by the exit handler, outside the call's span tree"
    ),
    ("crio", "StopContainer"): (
        "CRI-O's oci StopContainer waits inside its call until the process has exited: the span's call"
        " holds the wait, the split only runc kill"
    ),
    ("crio", "RemoveContainer"): (
        "the stack's runc delete (CRI-O's spec, its cgroup clean-up) takes far longer than the runtime"
        " alone on hopbench's minimal spec: split and spans agree, the differential does not"
    ),
}

THREE_VIEWS_NOTE = (
    "Where two views cover the same hop they need not match, and why is known: the span's shim call holds"
    " the shim's own work and its ttrpc round trips (containerd) or conmon (CRI-O) besides runc, so it is at"
    " least the split's runtime part; the differential's runtime alone runs hopbench's minimal OCI spec (no"
    " seccomp filter, fewer mounts), not the stack's, so it is the smallest of the three; the split's wrapper"
    " and the traced twin's exporter each add their own small cost to the op they sit in."
)


def median_startup_trace(spans: pd.DataFrame, stack: str) -> str:
    """The trace id of `stack`'s measured lifecycle at concurrency 1 whose pod start-up (our client
    spans of RunPodSandbox, CreateContainer, StartContainer) is the median one; '' if none."""
    ours = spans[
        (spans["service"] == OURS)
        & (spans["span_kind"] == "client")
        & (spans["stack"] == stack)
        & (spans["concurrency"] == 1)
        & ~spans["warmup"].astype(bool)
        & spans["name"].isin(POD_START_OPS)
    ]
    if ours.empty:
        return ""
    per = ours.assign(ms=(ours["end_unix_ns"] - ours["start_unix_ns"]) / 1e6).groupby("trace_id")["ms"].sum()
    per = per.sort_values()
    return str(per.index[len(per) // 2])


def waterfall(spans: pd.DataFrame, stack: str, max_rows: int = 36) -> str:
    """One pod start-up of `stack` (the median one) as nested bars: our client spans at the top
    of each call, the runtime's spans below, each labelled with its ms."""
    trace = median_startup_trace(spans, stack)
    t = spans[spans["trace_id"] == trace].reset_index(drop=True)
    children, _ = _tree(t)
    starts = t["start_unix_ns"].to_numpy()
    calls = t[(t["service"] == OURS) & (t["span_kind"] == "client") & t["name"].isin(POD_START_OPS)]
    rows: list[tuple[int, int]] = []  # (index, depth), depth first

    def walk(i: int, depth: int) -> None:
        if len(rows) >= max_rows:
            return
        rows.append((i, depth))
        for j in sorted(children.get(str(t.at[i, "span_id"]), []), key=lambda k: starts[k]):
            walk(j, depth + 1)

    for i in calls.sort_values("start_unix_ns").index:
        walk(int(i), 0)
    t0 = float(min(starts[i] for i, _ in rows)) if rows else 0.0
    fig, ax = plt.subplots(figsize=(9, 0.28 * max(len(rows), 4) + 1))
    colours = {OURS: "#4c72b0"}
    palette = ["#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for y, (i, depth) in enumerate(rows):
        service = str(t.at[i, "service"])
        colour = colours.setdefault(service, palette[(len(colours) - 1) % len(palette)])
        x = (starts[i] - t0) / 1e6
        w = (t.at[i, "end_unix_ns"] - starts[i]) / 1e6
        ax.barh(y, max(w, 0.01), left=x, color=colour, height=0.8)
        ax.text(x, y, f" {'  ' * depth}{t.at[i, 'name']}  {w:.2f} ms", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_yticks([])
    ax.set_xlabel("ms from the pod start-up's first call")
    ax.set_title(f"{stack}: the median pod start-up, as its spans tell it", fontsize=9)
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return charts.png(fig)


def parts_of(run: Run) -> pd.DataFrame:
    """The run's calls cut into parts, computed once (the table, its notes and the three views use them)."""
    return run.derived("span-parts", lambda r: call_parts(r.spans))


def of(run: Run) -> pd.DataFrame:
    return run.derived("span-hops", lambda r: hop_rows(r.spans, parts_of(r)))


def applies(run: Run) -> bool:
    return bool((run.meta.get("scenario") or {}).get("tracing")) or not run.spans.empty


def span_sections(run: Run) -> list[Section]:
    spans = run.spans
    blocks: list[Block] = []
    if spans.empty:
        blocks.append(Para("The scenario asked for traces, but no span reached the results."))
        return [Section("Traces: the components' own account", blocks)]
    services = spans.groupby("service").size().to_dict()
    blocks.append(
        Para(
            "Spans per service: "
            + ", ".join(f"{k} {v}" for k, v in sorted(services.items()))
            + ". Our client span per CRI call carries its traceparent; a runtime that reads it (containerd, CRI-O)"
            " makes its server span a child of ours. *transport* is client minus server, *shim* the runtime's calls"
            " to its shim or OCI runtime, *CNI* the network set-up, *daemon* the server span minus those two."
            " cri-dockerd passes no traceparent on: a Docker call's server part is dockerd's Engine API spans"
            " inside its window, joined by time with one lifecycle in flight, and its transport holds"
            " cri-dockerd's own work (its CNI set-up too)."
        )
    )
    ours = spans[(spans["service"] == OURS) & (spans["span_kind"] == "client")]
    for stack in sorted(ours["stack"].unique()):
        if median_startup_trace(spans, str(stack)):
            blocks.append(Image(f"{stack}: the median pod start-up, span by span", waterfall(spans, str(stack))))
    rows = of(run)
    if not rows.empty:
        blocks.append(Table(rows.round(3)))
        missing = missing_spans(parts_of(run))
        if missing:
            blocks.append(
                Para("Calls of a traced instance with no span of the runtime under them: " + "; ".join(missing) + ".")
            )
    views = three_views(run)
    if not views.empty:
        blocks.append(
            Para(
                "The runtime's part of each op and what sits above it, three ways (differential, in-situ split,"
                " spans). " + THREE_VIEWS_NOTE
            )
        )
        blocks.append(Table(views.round(2)))
    cost = cost_rows(run.samples)
    if not cost.empty:
        blocks.append(
            Para("What tracing costs: each traced instance beside its untraced twin in the same interleaved run.")
        )
        blocks.append(Table(cost.round(3)))
    shim = cost_rows(run.samples, shim=True)
    if not shim.empty:
        blocks.append(
            Para(
                "What the shim's own tracing costs: containerd's runc shim built with the shim_tracing tag"
                " (+traced-shim) beside the release-style build (+traced), both instances exporting the daemon's"
                " spans, in the same interleaved run. Where the interval holds 1 the build costs nothing measurable."
            )
        )
        blocks.append(Table(shim.round(3)))
    return [Section("Traces: the components' own account", blocks)]


VIEW = View("traces", span_sections, applies)
