"""Soak: back-to-back runs of the default scenario on this node, and what the node holds after.

    python -m benchmarks.soak [--runs 100] [--scenario FILE] [--out DIR]

Takes the node's inventory (bench.node.leftovers: shims, conmon and pod processes, mounts, veths,
network namespaces, IPAM leases, pod cgroups and folders, dangling links and bytes under the
stacks' state directories, each daemon's open file descriptors) before the first run and after
each one, and prints a before / after / highest table at the end. Each run's exit status, wall
time and inventory go to DIR/soak.jsonl as they happen, so an interrupted soak keeps what it
measured: Ctrl-C ends it after the run in flight (the run itself is left to finish in its own
session).

The node must be provisioned (`hopbench provision`) and no other run may be going on (the node
lock refuses a second agent). Not a test: it prints figures, it fails nothing.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.node import leftovers

from .common import REPO

HOPBENCH = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hopbench"
DEFAULT_OUT = Path("/var/cache/hopbench/bench/soak")


def one_run(scenario: str | None, results: Path, report: bool = False) -> dict[str, Any]:
    # Without the report by default: it is controller-side work (charts) that touches nothing on
    # the node, and 100 runs are shorter by its seconds each (`hopbench report RUN` builds one).
    argv = [str(HOPBENCH), "run", "--results", str(results), *([] if report else ["--no-report"])]
    if scenario:
        argv += ["--scenario", scenario]
    before = set(results.iterdir()) if results.exists() else set()
    t0 = time.monotonic()
    # Its own session: a Ctrl-C meant for the soak does not interrupt the run in flight.
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, start_new_session=True)
    wall = time.monotonic() - t0
    made = sorted(set(results.iterdir()) - before) if results.exists() else []
    status = "?"
    if made:
        try:
            status = json.loads((made[-1] / "meta.json").read_text()).get("status", "?")
        except (OSError, ValueError):
            status = "no meta.json"
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 1),
        "status": status,
        "run": made[-1].name if made else "",
        "stderr_tail": proc.stderr[-400:] if proc.returncode else "",
    }


def _cell(value: float | None, mib: bool) -> str:
    if value is None:
        return "-"
    return f"{value / 2**20:.1f}" if mib else str(value)


def table(before: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: each quantity before the first run, after the last, and its highest after any run."""
    invs = [r["inventory"] for r in rows]
    after = invs[-1] if invs else before
    lines = ["| quantity | before | after | highest after a run |", "|---|---:|---:|---:|"]
    for key in leftovers.COUNTS:  # a count added since the soak began is "-" where it was not taken
        high = max((i[key] for i in invs if key in i), default=None)
        cells = [_cell(v, False) for v in (before.get(key), after.get(key), high)]
        lines.append(f"| {key} | {' | '.join(cells)} |")
    for group, mib in (("daemon fds", False), ("state bytes", True)):
        for name in sorted(set(before[group]) | set(after[group])):
            high = max((i[group].get(name, 0) for i in invs), default=None)
            cells = [_cell(v, mib) for v in (before[group].get(name), after[group].get(name), high)]
            lines.append(f"| {group}{' (MiB)' if mib else ''}: {name} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--scenario", default=None, help="scenario file (default: hopbench's default scenario)")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT}/<time>)")
    ap.add_argument("--report", action="store_true", help="build each run's report too (slower)")
    args = ap.parse_args()
    out = args.out or DEFAULT_OUT / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "soak.jsonl"
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: stop.append(signum))

    before = leftovers.take()
    with journal.open("a") as fh:
        fh.write(json.dumps({"before": before}) + "\n")
    print(f"soak: {args.runs} runs, results in {out}; before: {json.dumps(before)}", flush=True)
    rows: list[dict[str, Any]] = []
    for i in range(1, args.runs + 1):
        if stop:
            print("soak: interrupted, stopping after the runs done", flush=True)
            break
        row = one_run(args.scenario, out / "results", args.report)
        row["inventory"] = leftovers.take()
        row["grew"] = leftovers.grown(before, row["inventory"])
        rows.append(row)
        with journal.open("a") as fh:
            fh.write(json.dumps({"i": i, **row}) + "\n")
        inv = row["inventory"]
        print(
            f"run {i:3d}/{args.runs}: rc {row['rc']} {row['status']:<9} {row['wall_s']:6.1f} s  "
            f"shims {inv['shims']} conmon {inv['conmon']} mounts {inv['mounts']} veths {inv['veths']} "
            f"netns {inv['network namespaces']} leases {inv['IPAM leases']} pod cgroups {inv['pod cgroups']} "
            f"dangling links {inv['dangling links']}" + (f"  GREW {row['grew']}" if row["grew"] else ""),
            flush=True,
        )
    failed = [r for r in rows if r["rc"] != 0 or r["status"] != "complete"]
    walls = sorted(r["wall_s"] for r in rows)
    median = walls[len(walls) // 2] if walls else 0
    print(f"\n{len(rows)} runs, {len(failed)} not complete; run wall time median {median} s")
    print("\n".join(table(before, rows)))


if __name__ == "__main__":
    main()
