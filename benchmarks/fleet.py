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

    python -m benchmarks.fleet --lab [--iterations 1500] [--scenario FILE]

The same against the lab's nodes (`hopbench lab up --nodes N`, provisioned: site.yml, or at
least tests/integration/playbooks/nullcri_node.yml for level nullcri): pristine machines with
their own filesystems and daemons. A first run goes to its end; in a second, the last node's
power is cut (`hopbench lab poweroff --cut`: its link first, then every process) once it has
sent a tenth of its samples. The other nodes must store every planned sample, the controller
must say why the cut node ended, and every sample the cut node had sent before the cut must be
kept. The node boots again at the end. --scenario runs another scenario (a real stack's level
cri, say) in place of level nullcri; its samples per node are then compared between nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
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


class NodeSamples:
    """Samples of one node in a run's journal so far (what the controller has stored). Each call
    reads only what was appended since the last one: the watcher polls while the controller
    writes, and must not reread the whole journal on the controller's cores every time."""

    def __init__(self, results: Path, node: str) -> None:
        self.results, self.needle = results, f'"node": "{node}"'.encode()
        self.offset = self.count = 0

    def __call__(self) -> int:
        runs = [p for p in self.results.iterdir() if p.is_dir()] if self.results.exists() else []
        journal = runs[0] / "samples.jsonl" if runs else None
        if journal is None or not journal.exists():
            return self.count
        with open(journal, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line being written is counted on the next call
        self.offset += len(whole)
        self.count += whole.count(self.needle)
        return self.count


def cut_when_ready(results: Path, victim: str, threshold: int, cut: dict[str, float]) -> None:
    """Cut the lab node's power once the controller has stored `threshold` of its samples."""
    from bench.controller import lab

    sent = NodeSamples(results, victim)
    end = time.monotonic() + 1800
    while time.monotonic() < end and sent() < threshold:
        time.sleep(0.25)
    if sent() < threshold:
        return
    lab.poweroff(victim, cut=True)
    cut["at"] = time.time()
    cut["sent"] = sent()


def lab_main(args: argparse.Namespace) -> int:
    """The fleet on the lab's nodes: a run to its end, then a run with the last node's power cut."""
    import subprocess
    import threading

    from bench.controller import lab
    from bench.controller.results import load_meta
    from bench.node.critest import OPS

    state = lab.load_state()
    if not state or not state["nodes"]:
        print("skipped: no lab (hopbench lab up --nodes 4, then hopbench provision -i ansible/inventories/lab)")
        return 0
    names = sorted(state["nodes"], key=lambda n: state["nodes"][n]["index"])
    victim = names[-1]
    inventory = lab.inventory_dir()
    work = Path(tempfile.mkdtemp(prefix="hopbench-labfleet-"))
    scenario = work / "fleet.yaml"
    if args.scenario:
        scenario.write_text(Path(args.scenario).read_text())
        planned = None
    else:
        scenario.write_text(SCENARIO.format(iterations=args.iterations))
        planned = 2 * args.iterations * len(OPS)
    print(f"{len(names)} lab nodes over SSH ({', '.join(names)}), scenario {args.scenario or 'level nullcri'}")
    full: dict[str, float] = {}
    for label in ("to-the-end", "power-cut"):
        results = work / f"results-{label}"
        cut: dict[str, float] = {}
        watcher = None
        if label == "power-cut":
            threshold = max(1, int((planned or full.get(victim, 100)) / 10))
            watcher = threading.Thread(target=cut_when_ready, args=(results, victim, threshold, cut), daemon=True)
            watcher.start()
        m, run = one_run(work, inventory, scenario, label)
        if watcher is not None:
            watcher.join(timeout=60)
        if run is None:
            print(m.stdout[-3000:])
            print(f"  {label}: no run folder")
            return 1
        meta = load_meta(run)
        nodes = per_node(run)
        total = nodes.pop("_total")
        print(f"[{label}] exit {m.returncode}, status {meta.get('status')}, run {run}")
        figure(f"[{label}] controller wall time", m.wall_s, "s")
        figure(f"[{label}] samples stored (all nodes)", total["samples"], "")
        for name in names:
            got = nodes.get(name, {}).get("samples", 0.0)
            info = meta.get("nodes", {}).get(name, {})
            why = "; ".join(info.get("errors", []))[:200]
            print(f"    {name}: {got:.0f} samples, status {info.get('status')}{', ' + why if why else ''}")
            if label == "to-the-end":
                full[name] = got
        if label == "to-the-end":
            reference = planned if planned is not None else max(full.values())
            short = {n: v for n, v in full.items() if v != reference}
            print(f"    every node stored its {reference:.0f} samples" if not short else f"    short: {short}")
            continue
        if "at" not in cut:
            print(f"  {victim} did not send {threshold} samples: no cut")
            return 1
        others = [n for n in names if n != victim]
        reference = planned if planned is not None else full[others[0]]
        kept = nodes.get(victim, {}).get("samples", 0.0)
        figure(f"[{label}] {victim}: samples stored when its power was cut", cut["sent"], "")
        figure(f"[{label}] {victim}: samples kept after the run", kept, "")
        figure(f"[{label}] {victim}: samples lost that it had sent", max(0.0, cut["sent"] - kept), "", 0)
        figure(
            f"[{label}] the others: nodes short of their samples",
            sum(nodes.get(n, {}).get("samples", 0.0) != reference for n in others),
            "",
            0,
        )
        ended = meta.get("ended_at", "")
        print(f"    run ended {ended}; {victim}'s power cut at {time.strftime('%H:%M:%S', time.gmtime(cut['at']))}")
    print(f"booting {victim} again")
    subprocess.run([PYTHON, "-m", "bench", "lab", "reboot", victim], check=False)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--slow-kbit", type=int, default=48)
    ap.add_argument("--lab", action="store_true", help="the lab's nodes (hopbench lab up), with a power cut")
    ap.add_argument("--scenario", help="--lab: this scenario instead of level nullcri")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root (network namespaces, sshd)")
        return 0
    if args.lab:
        return lab_main(args)
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
