"""The SSH runner against a fleet: 8 or more nodes at once, each a network namespace with its own sshd.

    python -m benchmarks.fleet [--nodes 8] [--iterations 1500] [--slow-kbit 48]

The nodes are this machine's stacks reached through 8 addresses (tests/integration/sshnodes.py:
a veth pair and a real sshd per namespace, host keys verified), so every agent is uploaded,
started and streamed over its own SSH session. Each node runs level nullcri (the null CRI
server: ~0.5 ms per op, so the stream, not a runtime, sets the pace) for --iterations
lifecycles. Timed as a child (wait4): the controller's wall time, CPU and peak memory; then per
node the samples the results hold against the samples planned (nothing lost: journal, parquet
and plan agree), and each node's own span (first sample start to last end).

A second run rate-limits one node's link both ways (tc tbf, --slow-kbit) so it falls behind:
the others' spans should not grow with it. Everything started is stopped by PID; the
namespaces and links go at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import PYTHON, figure, measure

SCENARIO = """schema: 1
name: fleet
description: level nullcri on every node of the fleet, to load the SSH stream and the results writer
targets: [containerd/runc]
levels: [nullcri]
iterations: {iterations}
warmup: 0
concurrency: [1]
control: false
"""


def per_node(run: Path) -> dict[str, dict[str, float]]:
    from bench.controller.results import load_run, read_jsonl

    meta, samples = load_run(run)
    journal = len(read_jsonl(run / "samples.jsonl"))
    out: dict[str, dict[str, float]] = {}
    for node, g in samples.groupby("node", observed=True):
        end = (g["start_ns"] + g["duration_ns"]).max()
        out[str(node)] = {"samples": float(len(g)), "span_s": float((end - g["start_ns"].min()) / 1e9)}
    out["_total"] = {
        "samples": float(len(samples)),
        "journal": float(journal),
        "meta_samples": float(meta.get("samples", -1)),
    }
    return out


def one_run(work: Path, inventory: Path, scenario: Path, label: str) -> tuple[object, Path | None]:
    results = work / f"results-{label}"
    m = measure([PYTHON, "-m", "bench", "run", "-s", str(scenario), "-i", str(inventory), "--results", str(results)])
    runs = [p for p in results.iterdir() if p.is_dir()] if results.exists() else []
    return m, (runs[0] if runs else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--slow-kbit", type=int, default=48)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root (network namespaces, sshd)")
        return 0
    from bench.node.critest import OPS
    from tests.integration import sshnodes

    sshnodes.ensure_sshd()
    sshnodes.subnet_is_free()
    work = Path(tempfile.mkdtemp(prefix="hopbench-fleet-"))
    started: list[sshnodes.SSHNode] = []
    try:
        key, authorized = sshnodes.client_key(work)
        for i in range(args.nodes):
            started.append(sshnodes.start_node(work, i, authorized))
        known = work / "known_hosts"
        known.write_text("".join(f"{n.address} {n.host_key_pub}" for n in started))
        inventory = sshnodes.inventory(work, started, key, known, None)
        scenario = work / "fleet.yaml"
        scenario.write_text(SCENARIO.format(iterations=args.iterations))
        planned = 2 * args.iterations * len(OPS)  # levels cri-critest and critest against nullcri, 9 ops each
        print(
            f"{args.nodes} nodes over SSH, level nullcri, "
            f"{args.iterations} lifecycles each ({planned} samples per node)"
        )
        spans: dict[str, dict[str, float]] = {}
        for label in ("even", "one-slow"):
            if label == "one-slow":
                slow = started[-1]
                rate = f"{args.slow_kbit}kbit"
                tbf = [
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    "{dev}",
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "16kbit",
                    "latency",
                    "2s",
                ]
                sshnodes.sh(*(a.format(dev=slow.host_veth) for a in tbf))  # controller -> node
                ns_dev = "hbn" + slow.host_veth.removeprefix("hbs")
                sshnodes.sh(
                    "ip", "netns", "exec", slow.netns, *(a.format(dev=ns_dev) for a in tbf)
                )  # node -> controller
                print(f"second run: {slow.name}'s link limited to {rate} both ways")
            m, run = one_run(work, inventory, scenario, label)
            if run is None:
                print(m.stdout[-3000:])  # type: ignore[attr-defined]
                print(f"  {label}: no run folder")
                return 1
            nodes = per_node(run)
            total = nodes.pop("_total")
            spans[label] = {n: v["span_s"] for n, v in nodes.items()}
            wall, cpu, peak = m.wall_s, m.cpu_s, m.peak_mib  # type: ignore[attr-defined]
            print(f"[{label}] exit {m.returncode}, run {run.name}")  # type: ignore[attr-defined]
            figure(f"[{label}] controller wall time", wall, "s")
            figure(f"[{label}] controller CPU per node (share of one core)", cpu / wall / args.nodes * 100, "%")
            figure(f"[{label}] controller peak memory", peak, "MiB")
            figure(f"[{label}] controller peak memory per node", peak / args.nodes, "MiB")
            figure(f"[{label}] samples per second (all nodes)", total["samples"] / wall, "/s")
            lost = args.nodes * planned - total["samples"]
            figure(f"[{label}] samples lost (planned - stored)", lost, "", 0)
            same = total["samples"] == total["journal"] == total["meta_samples"]
            counts = f"journal {total['journal']:.0f}, parquet {total['samples']:.0f}, meta {total['meta_samples']:.0f}"
            print(f"    {counts}: {'agree' if same else 'DISAGREE'}")
            short = {n: v["samples"] for n, v in nodes.items() if v["samples"] != planned}
            print(
                f"    every node stored its {planned} samples" if not short else f"    nodes short of samples: {short}"
            )
        even, slow_run = spans["even"], spans["one-slow"]
        others = [n for n in even if n != started[-1].name]
        ratio = sorted(slow_run[n] / even[n] for n in others)
        figure("one slow node: the others' span, slow run / even run (median)", ratio[len(ratio) // 2], "x", 1.25)
        figure(
            f"one slow node: {started[-1].name}'s own span, slow / even",
            slow_run[started[-1].name] / even[started[-1].name],
            "x",
        )
        print(json.dumps({"even_span_s": even, "one_slow_span_s": slow_run}, indent=1))
    finally:
        for n in started:
            sshnodes.stop_node(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
