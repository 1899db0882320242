"""Image pulls (level image): per stack and image of the ladder, cold and warm PullImage p50 with
its interval, the throughput it gives, what crossed the registry link and the node's CPU.

The durations are the samples' (ops `PullImage cold <rung>` and `PullImage warm <rung>`); the
bytes and CPU come from the level's Pull events (pulls.jsonl), one per timed PullImage. Throughput
is the image's compressed bytes over the median pull time (MiB/s); at concurrency above 1 the
pulls of one round share the link, and the wire bytes of each pull include the others'. An op
names its image (the ladder's rung), the link shape it was pulled under (` at 1gbit`; none: as
provisioned) and ` same` when the workers of a round pulled that one image together: there the
round's wire bytes over the image's bytes say how many times the stack fetched it (1: the pulls
were coalesced or waited for one another; c: each worker fetched its own).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bench.controller import charts, stats
from bench.controller.charts import plt
from bench.controller.render import Block, Image, Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View

MIB = 1024 * 1024
# The fewest pulls whose median has a distribution-free 95% interval (as the headline's MIN_N).
MIN_N = 6
STEP = re.compile(r"(?P<image>\S+)(?: at (?P<link>\S+))?(?P<same> same)?")


def step_of(op: str) -> tuple[str, str, str, bool]:
    """`PullImage cold 100mb-1l-one-gzip at 1gbit same` -> (cold, 100mb-1l-one-gzip, 1gbit, True)."""
    _, mode, rest = op.split(" ", 2)
    m = STEP.fullmatch(rest)
    if m is None:
        return mode, rest, "", False
    return mode, m["image"], m["link"] or "", bool(m["same"])


def pull_rows(run: Run) -> pd.DataFrame:
    """One row per stack, handler, concurrency, image and mode: n, p50 with its interval, MiB/s,
    wire MB and CPU seconds (medians)."""
    samples = run.samples
    if samples.empty or "image" not in set(samples["level"]):
        return pd.DataFrame()
    ok = samples[(samples["level"] == "image") & samples["ok"] & ~samples["warmup"]]
    ok = ok[ok["op"].str.startswith("PullImage ")]
    facts = run.pulls
    by_op: dict[tuple[str, str], pd.DataFrame] = {}
    if not facts.empty:
        good = facts[facts["ok"] & ~facts["warmup"]]
        by_op = {(str(s), str(o)): g for (s, o), g in good.groupby(["stack", "op"])}
    rows = []
    for (stack, handler, conc, op), g in ok.groupby(["stack", "handler", "concurrency", "op"], sort=True):
        mode, image, link, same = step_of(str(op))
        ms = g["duration_ns"].to_numpy() / 1e6
        p50 = float(np.median(ms))
        lo, hi = stats.quantile_ci(ms, 0.5) if len(ms) >= MIN_N else (float("nan"), float("nan"))
        f = by_op.get((str(stack), str(op)), pd.DataFrame())
        f = f[f["concurrency"] == conc] if not f.empty else f
        blob = float(f["blob_bytes"].median()) if not f.empty else float("nan")
        round_wire = float("nan")
        if not f.empty and "round_wire_bytes" in f and (f["round_wire_bytes"] >= 0).any():
            # One figure per round: every worker's event carries the round's bytes.
            per_round = f[f["round_wire_bytes"] >= 0].groupby(f["iteration"] // int(conc))["round_wire_bytes"].first()
            round_wire = float(per_round.median())
        rows.append(
            {
                "stack": stack,
                "handler": handler,
                "concurrency": int(conc),
                "image": image,
                "link": link or "as provisioned",
                "same": same,
                "mode": mode,
                "layers": int(f["layers"].median()) if not f.empty else 0,
                "n": len(ms),
                "p50 (ms)": p50,
                "CI low": lo,
                "CI high": hi,
                "MiB/s": blob / MIB / (p50 / 1000) if p50 > 0 and blob == blob else float("nan"),
                "image MB": blob / 1e6,
                "wire MB": float(f["wire_bytes"].median()) / 1e6 if not f.empty else float("nan"),
                "round wire MB": round_wire / 1e6,
                "fetches": round_wire / blob if blob == blob and blob > 0 else float("nan"),
                "node CPU s": float(f["cpu_s"].median()) if not f.empty else float("nan"),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    # The ladder's order (each step's first pull in the run), cold before warm.
    first = ok.assign(step=ok["op"].str.split(" ", n=2).str[2]).groupby("step")["start_ns"].min()
    out["_order"] = [
        first.get(f"{i}{'' if lk == 'as provisioned' else ' at ' + lk}{' same' if sm else ''}", 0)
        for i, lk, sm in zip(out["image"], out["link"], out["same"], strict=True)
    ]
    keys = ["stack", "handler", "concurrency", "_order", "mode"]
    return out.sort_values(keys).drop(columns="_order").reset_index(drop=True)


def pull_sentences(rows: pd.DataFrame) -> list[str]:
    """For each image of the ladder and link shape (cold, one pull at a time): the stack that
    pulls it fastest, named only when its interval lies below every other stack's, with its p50
    and MiB/s; and, at concurrency above 1, how many times each stack fetched one image its
    workers pulled together."""
    if rows.empty:
        return []
    cold = rows[(rows["mode"] == "cold") & (rows["concurrency"] == 1) & ~rows["same"]]
    links = cold["link"].nunique() > 1
    clear, unclear, few = [], [], []
    for (image, link), g in cold.groupby(["image", "link"], sort=False):
        if g["stack"].nunique() < 2:
            continue
        name = f"{image} at {link}" if links else str(image)
        g = g.sort_values("p50 (ms)")
        best, rest = g.iloc[0], g.iloc[1:]
        if g[["CI low", "CI high"]].isna().any().any():
            few.append(name)
        elif float(best["CI high"]) < float(rest["CI low"].min()):
            clear.append(
                f"{name} on {best['stack']} ({best['p50 (ms)']:.0f} ms [{best['CI low']:.0f}, {best['CI high']:.0f}], "
                f"{best['MiB/s']:.0f} MiB/s)"
            )
        else:
            unclear.append(name)
    out = []
    if clear:
        out.append("Fastest cold pull, by image (its interval below every other stack's): " + "; ".join(clear) + ".")
    if unclear:
        out.append("No stack pulls clearly fastest (the intervals overlap): " + ", ".join(unclear) + ".")
    if few:
        out.append(f"Too few cold pulls for an interval (fewer than {MIN_N}): " + ", ".join(few) + ".")
    same = rows[(rows["mode"] == "cold") & (rows["concurrency"] > 1) & rows["same"]].dropna(subset=["fetches"])
    if not same.empty:
        parts = [
            f"{r['stack']} {r['fetches']:.1f}× ({r['image']}, {r['concurrency']} at once)"
            for _, r in same.sort_values(["image", "concurrency", "stack"]).iterrows()
        ]
        out.append(
            "One image pulled by every worker of a round at once, fetched (round wire bytes over the image's): "
            + "; ".join(parts)
            + "."
        )
    return out


def throughput_chart(rows: pd.DataFrame) -> str:
    """Cold-pull MiB/s against the image's compressed size, a line per stack and link shape
    (concurrency 1, distinct images)."""
    cold = rows[(rows["mode"] == "cold") & (rows["concurrency"] == 1) & ~rows["same"]].dropna(subset=["MiB/s"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    links = cold["link"].nunique() > 1
    for (stack, link), g in cold.groupby(["stack", "link"], sort=True):
        g = g.sort_values("image MB")
        ax.plot(g["image MB"], g["MiB/s"], marker="o", label=f"{stack} at {link}" if links else str(stack))
    ax.set_xscale("log")
    charts.plain_log_ticks(ax.xaxis)
    ax.set_xlabel("image, compressed MB (log)")
    ax.set_ylabel("cold pull, MiB/s (p50)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return charts.png(fig)


def of(run: Run) -> pd.DataFrame:
    """The run's pull table, computed once (the section and the headline both use it)."""
    return run.derived("pulls", pull_rows)


def applies(run: Run) -> bool:
    return "image" in run.levels


def pull_sections(run: Run) -> list[Section]:
    rows = of(run)
    if rows.empty:
        return []
    registry = (run.meta.get("node_facts") or {}).get("registry") or {}
    shape = registry.get("shape") or {}
    link = (
        f"Registry host: CNCF Distribution {registry.get('version', '?')} at {registry.get('address', '?')}, "
        f"link as provisioned: rate {shape.get('rate') or 'unshaped'}, added round trip {shape.get('rtt_ms', 0)} ms"
        + (
            "; the rows with a link shape were pulled under it, set with tc between rounds"
            " (rate: tbf; round trip: netem)."
            if (rows["link"] != "as provisioned").any()
            else "."
        )
        if registry
        else "The run's metadata names no registry host."
    )
    blocks: list[Block] = [
        Para(
            "PullImage through each stack's CRI, kubelet's request, from the node's registry host. *cold*: nothing "
            "of the image in the store (checked after each RemoveImage); *warm*: every layer there, the manifest "
            "resolved again (imagePullPolicy: Always on an unchanged tag). MiB/s is the image's compressed size "
            "over the p50. *same*: every worker of a round pulled one image at once; *fetches*: the round's wire "
            "bytes over the image's (1: fetched once). " + link
        ),
        Table(rows.round(2)),
    ]
    if not rows[(rows["mode"] == "cold") & (rows["concurrency"] == 1) & ~rows["same"]].empty:
        blocks.append(Image("Cold pull throughput against image size", throughput_chart(rows)))
    return [Section("Image pulls", blocks)]


VIEW = View("pulls", pull_sections, applies)
