"""What every benchmark script shares: timing a child process (wall time, CPU, peak memory) and
printing a figure beside its goal. A benchmark prints; it never fails a build on a figure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_mib: float
    returncode: int
    stdout: str


def measure(argv: list[str], cwd: Path = REPO) -> Measured:
    """Run argv as a child and return its wall time, CPU time and peak resident memory (wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, out)


def figure(name: str, value: float, unit: str, goal: float | None = None, lower_is_better: bool = True) -> bool:
    """Print one figure with its goal and whether it meets it; returns whether it does."""
    if goal is None:
        print(f"  {name:<58} {value:>10.3g} {unit}")
        return True
    ok = value <= goal if lower_is_better else value >= goal
    sign = "<=" if lower_is_better else ">="
    print(f"  {name:<58} {value:>10.3g} {unit:<6} goal {sign} {goal:g} {unit}: {'met' if ok else 'MISSED'}")
    return ok
