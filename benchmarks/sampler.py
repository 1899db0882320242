"""The memory sampler's own cost with 300+ pod processes, before and after issue 16's rewrite.

    python -m benchmarks.sampler [--procs 320] [--sweeps 20]

Starts --procs real processes (the pods' own static pause binary from the images role when this
node is provisioned, else sleep), each in its own pod cgroup (pids controller,
<hierarchy>/hopbench-bench-<pid>/kubepods/besteffort/pod<uid>/<container id>, as kubelet's
cgroup parent and the runtimes lay them out), then sweeps them with the sampler of this tree and
with the one before the rewrite (bench/node/memory.py at 1584a6c, psutil: a full process scan
and classification each sweep, psutil.Process objects made anew), and prints each one's CPU per
sweep and its share of one core at 1 Hz (goal: at most 2%). The processes are stopped by their
PIDs and the cgroups removed at the end, whatever happens. The figure from a real density run
(daemons, shims, pods) is in that run's meta.json (`sampler`), see the issue's note.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import REPO, figure

BEFORE = "1584a6c"
PIDS = Path("/sys/fs/cgroup/pids")
PAUSE = Path("/var/lib/hopbench/images/bin/pause")


def old_memory_module() -> object | None:
    """bench/node/memory.py as it was at BEFORE (None outside a git clone holding it)."""
    try:
        text = subprocess.run(
            ["git", "show", f"{BEFORE}:bench/node/memory.py"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "memory_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("memory_before", path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["memory_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def cost(module: object, sweeps: int) -> tuple[float, int]:
    """CPU ms per sweep (the sampling thread's CPU clock, as the sampler reports it) and processes found."""
    sampler = module.Sampler(module.Classifier([]), 1.0, lambda rows: None)  # type: ignore[attr-defined]
    rows = sampler.sweep()  # the first sweep classifies everything: not the steady state
    c0 = time.thread_time_ns()
    for _ in range(sweeps):
        rows = sampler.sweep()
    return (time.thread_time_ns() - c0) / 1e6 / sweeps, len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=320)
    ap.add_argument("--sweeps", type=int, default=20)
    args = ap.parse_args()
    if not PIDS.is_dir() or os.geteuid() != 0:
        print(f"skipped: needs root and the cgroup v1 pids hierarchy at {PIDS}")
        return 0
    top = PIDS / f"hopbench-bench-{os.getpid()}"
    procs: list[subprocess.Popen[bytes]] = []
    made: list[Path] = []
    try:
        for _ in range(args.procs):
            cg = top / "kubepods" / "besteffort" / f"pod{uuid.uuid4()}" / uuid.uuid4().hex
            cg.mkdir(parents=True)
            made.append(cg)
            p = subprocess.Popen([str(PAUSE)] if PAUSE.exists() else ["sleep", "3600"])
            procs.append(p)
            (cg / "cgroup.procs").write_text(str(p.pid))
        from bench.node import memory

        what = PAUSE if PAUSE.exists() else "sleep"
        print(f"{args.procs} processes ({what}) in their own pod cgroups; {len(os.listdir('/proc'))} /proc entries")
        now, found = cost(memory, args.sweeps)
        figure("sampler now: CPU per sweep", now, "ms")
        print(f"    processes sampled per sweep: {found}")
        figure("sampler now: share of one core at 1 Hz", now / 10, "%", 2.0)
        old = old_memory_module()
        if old is None:
            print(f"  sampler before ({BEFORE}): not in this clone's history, not measured")
        else:
            before, found = cost(old, args.sweeps)
            figure(f"sampler before ({BEFORE}, psutil): CPU per sweep", before, "ms")
            figure(f"sampler before ({BEFORE}, psutil): share of one core at 1 Hz", before / 10, "%")
            print(f"    before / now: {before / now:.1f}x")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for cg in reversed(made):
            for d in (cg, cg.parent):
                if d.exists():
                    d.rmdir()
        for d in (top / "kubepods" / "besteffort", top / "kubepods", top):
            if d.exists():
                d.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
