"""The concurrency sweep: where each stack saturates, and whether the client keeps up at 64 in flight.

    python -m benchmarks.concurrency [--run RESULTS/RUN_ID]

Without --run it runs `hopbench run --scenario scenarios/concurrency.yaml` (the node must be
provisioned: `hopbench provision`) into --results, then prints from the run: per target the
concurrency where it saturates and its throughput there, and at the highest concurrency the
agent's own queueing (start lag: worker released -> running; probe lag: a 5 ms timer thread's
lateness) and its CPU in cores. A client that sets the pace would show lags in the
milliseconds, or agent cores near one (one interpreter lock).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import PYTHON, REPO, figure, measure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="analyse this run folder instead of running the scenario")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    args = ap.parse_args()
    run = args.run
    if run is None:
        before = set(args.results.iterdir()) if args.results.exists() else set()
        m = measure([PYTHON, "-m", "bench", "run", "-s", "scenarios/concurrency.yaml", "--results", str(args.results)])
        new = sorted(set(args.results.iterdir()) - before) if args.results.exists() else []
        if m.returncode != 0 or not new:
            print(m.stdout[-4000:])
            print(f"the sweep failed (exit {m.returncode})")
            return 1
        run = new[-1]
        figure("sweep: wall time", m.wall_s, "s")
    from bench.controller import sweep
    from bench.controller.results import load_run

    _, samples = load_run(run)
    table = sweep.throughput(samples)
    knees = sweep.saturation(table)
    print(f"run {run.name}")
    for r in knees.itertuples():
        print(
            f"  {r.stack}/{r.handler}: saturates at {r.saturates_at} in flight, {r.per_s_there:.2f} lifecycles/s "
            f"[{r.per_s_there_lo:.2f}, {r.per_s_there_hi:.2f}] "
            f"(best {r.best_per_s:.2f}/s at {r.best_at}); lifecycle p50 {r.lifecycle_p50_ms_at_1:.0f} ms at 1, "
            f"{r.lifecycle_p50_ms_at_most:.0f} ms at {r.most}"
        )
    cols = [
        "stack",
        "handler",
        "concurrency",
        "bursts",
        "lifecycles",
        "per_s",
        "per_s_lo",
        "per_s_hi",
        "lifecycle_p50_ms",
    ]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    load = sweep.client_load(run)
    if load.empty:
        print("  no client-load figures in this run")
        return 0
    print(load.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    top = load[load["concurrency"] == load["concurrency"].max()].iloc[0]
    c = int(top["concurrency"])
    figure(f"client start lag at {c} in flight, p50", top["start_lag_p50_ms"], "ms")
    figure(f"client start lag at {c} in flight, p99", top["start_lag_p99_ms"], "ms")
    figure(f"client probe lag at {c} in flight, p99", top["probe_lag_p99_ms"], "ms")
    figure(f"agent CPU at {c} in flight", top["agent_cores"], "cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
