"""The analysis at lab scale: a year of nights (10 M sample rows) and one large run (1 M samples).

    python -m benchmarks.analysis [--dir /var/cache/hopbench/bench] [--rows 10000000] [--nodes 10] [--nights 365]

Builds synthetic run folders once (benchmarks.synth: the shape of real runs, made-up durations;
kept in --dir for the next time) and times, each in its own process (wall time, peak memory):

- `hopbench runs` over every run;
- `hopbench compare` of two nights;
- the nightly gate of the last night against its history (bench.controller.history.nightly_check);
- the trend of one node over the year (history.trend, what the nightly report and notebook chart);
- a notebook query over all 10 M rows: p50 per night of one op on every node (pyarrow dataset,
  only the columns it needs), and notebooks/nightly_trends.ipynb end to end (papermill, with
  its kernel's start) on one node's year;
- `hopbench report` and `hopbench compare` of a 1 M-sample run.

Goals (issue 16): each year-of-nights figure <= 10 s and 2 GiB; the 1 M report <= 20 s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
from pathlib import Path

from benchmarks.common import PYTHON, figure, measure

HOPBENCH = [PYTHON, "-m", "bench"]
FIRST_NIGHT = datetime.datetime(2025, 1, 1, 2, 0, tzinfo=datetime.UTC)


def _make_night_run(root: Path, i: int, run_id: str, per_run: int, nodes: int, nights: int) -> None:
    from bench.controller import summaries
    from benchmarks.synth import make_run

    night, node = divmod(i, nodes)
    run = make_run(
        root,
        run_id,
        per_run,
        node=f"node{node:02d}",
        scenario="nightly",
        started_at=(FIRST_NIGHT + datetime.timedelta(days=night)).isoformat(),
        seed=i,
        journal=False,
        shift=1.2 if night == nights - 1 and node == 0 else 1.0,
    )
    summaries.run_summary(run)  # as the runner leaves it at the end of a run


def build_year(root: Path, rows: int, nodes: int, nights: int) -> list[str]:
    from concurrent.futures import ProcessPoolExecutor

    per_run = rows // (nodes * nights)
    marker = root / f".complete-v2-{rows}-{nodes}-{nights}"
    ids = [f"night{n:04d}-node{k:02d}" for n in range(nights) for k in range(nodes)]
    if marker.exists():
        return ids
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = [(root, i, r, per_run, nodes, nights) for i, r in enumerate(ids)]
        done = pool.map(_make_night_run, *(list(col) for col in zip(*jobs, strict=True)), chunksize=50)
        for i, _ in enumerate(done):
            if i % 500 == 0:
                print(f"  built {i}/{len(ids)} runs", file=sys.stderr)
    marker.touch()
    return ids


NOTEBOOK_QUERY = """
import sys, pyarrow.dataset as ds, pyarrow.compute as pc
from pathlib import Path
root = Path(sys.argv[1])
files = sorted(str(p) for p in root.glob("*/samples.parquet"))
data = ds.dataset(files, format="parquet")
t = data.to_table(
    columns=["run_id", "node", "duration_ns"],
    filter=(pc.field("op") == "CreateContainer") & (pc.field("level") == "cri") & ~pc.field("warmup") & pc.field("ok"),
)
p50 = t.group_by(["run_id", "node"]).aggregate([("duration_ns", "approximate_median")])
print(t.num_rows, p50.num_rows)
"""

NIGHTLY_NOTEBOOK = """
import sys, papermill
papermill.execute_notebook(
    "notebooks/nightly_trends.ipynb", sys.argv[2], kernel_name="python3", progress_bar=False,
    parameters={"results_dir": sys.argv[1], "scenario": "nightly", "node": "node00"},
)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/var/cache/hopbench/bench", type=Path)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--large", type=int, default=1_000_000, help="samples of the large run")
    args = ap.parse_args()
    year = args.dir / "year"
    print(f"a year of nights: {args.nights} nights x {args.nodes} nodes, {args.rows:,} sample rows in {year}")
    ids = build_year(year, args.rows, args.nodes, args.nights)
    results = year.as_posix()
    ok = True
    last, before = ids[-args.nodes], ids[-2 * args.nodes]  # node00 tonight and the night before
    for name, argv in (
        ("hopbench runs (every run)", [*HOPBENCH, "runs", "--results", results]),
        ("hopbench compare (two nights of one node)", [*HOPBENCH, "compare", "--results", results, before, last]),
        (
            "nightly gate (last night vs 7 nights)",
            [
                PYTHON,
                "-c",
                "import sys; from pathlib import Path; from bench.controller.history import nightly_check; "
                "r = nightly_check(Path(sys.argv[1]) / sys.argv[2], Path(sys.argv[1])); print(r['regressions'])",
                results,
                last,
            ],
        ),
        (
            "trend of one node over the year",
            [
                PYTHON,
                "-c",
                "import sys; from pathlib import Path; from bench.controller.history import trend; "
                "print(len(trend(Path(sys.argv[1]), 'nightly', 'node00')))",
                results,
            ],
        ),
        ("notebook query: p50 per night, every node, all rows", [PYTHON, "-c", NOTEBOOK_QUERY, results]),
        (
            "notebooks/nightly_trends.ipynb over the year (papermill)",
            [PYTHON, "-c", NIGHTLY_NOTEBOOK, results, str(args.dir / "nightly_trends.out.ipynb")],
        ),
    ):
        m = measure(argv)
        if m.returncode != 0:
            print(m.stdout[-3000:])
            print(f"  {name}: FAILED (exit {m.returncode})")
            ok = False
            continue
        ok &= figure(f"{name}: time", m.wall_s, "s", 10.0)
        ok &= figure(f"{name}: peak memory", m.peak_mib, "MiB", 2048.0)
        if name.startswith("nightly gate"):
            print(f"    regressions found on the last night of node00 (it was made 20% slower): {m.stdout.strip()}")

    large = args.dir / "large"
    print(f"a large run: {args.large:,} samples in {large}")
    marker = large / f".complete-{args.large}"
    if not marker.exists():
        from benchmarks.synth import make_run

        if large.exists():
            shutil.rmtree(large)
        large.mkdir(parents=True)
        make_run(large, "large-a", args.large, seed=1)
        make_run(large, "large-b", args.large, seed=2, shift=1.05)
        marker.touch()
    for name, argv, goal in (
        ("hopbench report of the large run", [*HOPBENCH, "report", "--results", str(large), "large-a"], 20.0),
        (
            "hopbench compare of two large runs",
            [*HOPBENCH, "compare", "--results", str(large), "large-a", "large-b"],
            20.0,
        ),
    ):
        m = measure(argv)
        if m.returncode != 0:
            print(m.stdout[-3000:])
            ok = False
            continue
        ok &= figure(f"{name}: time", m.wall_s, "s", goal)
        figure(f"{name}: peak memory", m.peak_mib, "MiB")
    print("all goals met" if ok else "some goals missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
