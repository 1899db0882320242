"""A wrapper around the hyperfine CLI: run one command set, read its JSON export.

hyperfine is the tool people trust for timing whole commands. hopbench runs it on the
node with warm-up, run count, a prepare command (before every run: it removes what the
previous run left) and a cleanup command (after the last run), exports its JSON, and turns
every timed run into a sample of level `cli`.

Both JSON layouts are read: hyperfine 2's (`schema_version` 2: `results[].measurements[]`
with `time_wall_clock` and `exit_code`) and hyperfine 1.x's (`results[].times` in seconds
and `exit_codes`). Warm-up runs are not in hyperfine's export, so they are not samples.

The timed command runs without a shell (`-N`): its argv is joined with shlex quoting and
split back by hyperfine. hyperfine always runs prepare and cleanup through `sh`; those
strings are built here from fixed paths and generated ids only, every part quoted.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ComponentError


class HyperfineError(ComponentError):
    """hyperfine failed or is missing; the message names the command and carries its stderr."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    argv: tuple[str, ...]
    prepare: str = ""
    cleanup: str = ""


@dataclass
class Result:
    command: str
    times_s: list[float]
    exit_codes: list[int | None] = field(default_factory=list)


def find() -> str:
    """hyperfine next to this Python (the PyPI wheel), then $HOPBENCH_HYPERFINE, then PATH."""
    candidates = [os.environ.get("HOPBENCH_HYPERFINE", ""), os.path.join(os.path.dirname(sys.executable), "hyperfine")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    found = shutil.which("hyperfine")
    if not found:
        raise HyperfineError("hyperfine is not installed (pip install astral-dev-toolchain-hyperfine or apt hyperfine)")
    return found


def version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return out.stdout.strip() or out.stderr.strip()


def parse_export(data: dict[str, Any]) -> list[Result]:
    """Results of a hyperfine JSON export, either layout; times in seconds."""
    results = []
    for r in data.get("results", []):
        if "measurements" in r:
            times, codes = [], []
            for m in r["measurements"]:
                wall = m["time_wall_clock"]
                scale = {"second": 1.0, "millisecond": 1e-3, "microsecond": 1e-6, "nanosecond": 1e-9}[wall["unit"]]
                times.append(float(wall["value"]) * scale)
                codes.append(m.get("exit_code"))
            results.append(Result(r["command"], times, codes))
        elif "times" in r:
            times = [float(t) for t in r["times"]]
            results.append(Result(r["command"], times, list(r.get("exit_codes", [None] * len(times)))))
        else:
            raise ValueError(f"hyperfine result for {r.get('command')!r} has neither 'measurements' nor 'times'")
    return results


def run(
    bench: Benchmark,
    runs: int,
    warmup: int,
    exe: str | None = None,
    timeout_s: float = 1800,
    stop: threading.Event | None = None,
) -> tuple[Result, str]:
    """Time one command; returns its result and hyperfine's raw JSON export.

    Setting `stop` ends hyperfine early and runs the cleanup command itself."""
    exe = exe or find()
    with tempfile.TemporaryDirectory(prefix="hopbench-hyperfine-") as work:
        export = os.path.join(work, "export.json")
        argv = [exe, "-N", "--style", "none", "--runs", str(runs), "--warmup", str(warmup), "--export-json", export]
        if bench.prepare:
            argv += ["--prepare", bench.prepare]
        if bench.cleanup:
            argv += ["--cleanup", bench.cleanup]
        command = shlex.join(bench.argv)
        argv.append(command)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise HyperfineError(f"cannot run hyperfine ({exe}): {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                out, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                    proc.terminate()
                    proc.communicate()
                    if bench.cleanup:  # hyperfine's own cleanup did not run
                        subprocess.run(["sh", "-c", bench.cleanup], capture_output=True, timeout=300, check=False)
                    why = "stopped" if stop is not None and stop.is_set() else f"timed out after {timeout_s:.0f} s"
                    raise HyperfineError(f"hyperfine {why} on: {command}") from None
        if proc.returncode != 0:
            detail = (err.strip() or out.strip())[-3000:]
            raise HyperfineError(f"hyperfine failed ({proc.returncode}) on: {command}\n{detail}")
        with open(export) as fh:
            raw = fh.read()
    (result,) = parse_export(json.loads(raw))
    return result, raw
