"""Synthetic run folders for the harness's own benchmarks: realistic shape, made-up durations.

A run holds interleaved rounds of pod lifecycles (the seven CRI ops) of each target, a control
lifecycle per round, lognormal durations with a slow drift, and the files a real run leaves:
meta.json, the samples journal and samples.parquet. Nothing here is a measurement: these folders
exist to time hopbench's analysis (benchmarks/analysis.py), never to be reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench import RESULTS_SCHEMA_VERSION
from bench.controller.results import SAMPLE_COLUMNS, write_json_atomic, write_samples_parquet
from bench.ops import POD_LIFECYCLE_OPS

TARGETS = (("containerd@2.4.2", "runc"), ("crio@1.36.3", "runc"))
CONTROL_OPS = ("cpu-loop", "syscall-loop", "runc-create", "runc-start", "runc-kill", "runc-delete")
BASE_MS = {op: 5.0 + 20.0 * i for i, op in enumerate(POD_LIFECYCLE_OPS)}


def samples(run_id: str, node: str, n: int, seed: int, targets=TARGETS, concurrencies=(1, 2), shift: float = 1.0):
    """About n samples: rounds of one lifecycle per target (and one control lifecycle) per concurrency."""
    rng = np.random.default_rng(seed)
    blocks = [
        (s, h, "cri", op, BASE_MS[op] * shift * (1.05 if s.startswith("crio") else 1.0))
        for s, h in targets
        for op in POD_LIFECYCLE_OPS
    ]
    blocks += [("control", "runc", "control", op, 3.0) for op in CONTROL_OPS]
    rounds = max(1, n // (len(blocks) * len(concurrencies)))
    it = np.tile(np.arange(rounds), len(blocks) * len(concurrencies))
    conc = np.repeat(np.asarray(concurrencies), len(blocks) * rounds)
    which = np.tile(np.repeat(np.arange(len(blocks)), rounds), len(concurrencies))
    base = np.array([b[4] for b in blocks])[which]
    ms = base * (1.0 + 0.1 * it / rounds) * rng.lognormal(0.0, 0.15, len(it))
    size = len(it)
    frame = pd.DataFrame(
        {
            "run_id": np.full(size, run_id, dtype=object),
            "node": np.full(size, node, dtype=object),
            "stack": np.array([b[0] for b in blocks], dtype=object)[which],
            "handler": np.array([b[1] for b in blocks], dtype=object)[which],
            "level": np.array([b[2] for b in blocks], dtype=object)[which],
            "op": np.array([b[3] for b in blocks], dtype=object)[which],
            "iteration": it,
            "concurrency": conc,
            "worker": it % conc,
            "warmup": it < 2,
            "start_ns": 1_700_000_000_000_000_000 + it * 1_000_000_000,
            "duration_ns": (ms * 1e6).astype("int64"),
            "ok": np.ones(size, dtype=bool),
            "error": np.full(size, None, dtype=object),
        }
    )
    return frame.astype(SAMPLE_COLUMNS)


def make_run(
    root: Path,
    run_id: str,
    n: int,
    *,
    node: str = "local",
    scenario: str = "synthetic",
    started_at: str = "2026-01-01T00:00:00+00:00",
    seed: int = 0,
    journal: bool = True,
    shift: float = 1.0,
) -> Path:
    """One complete run folder of about n samples; returns its path."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    frame = samples(run_id, node, n, seed, shift=shift)
    if journal:
        with open(run_dir / "samples.jsonl", "w") as fh:
            for rec in frame.astype(object).where(frame.notna(), None).to_dict("records"):
                fh.write(json.dumps(rec) + "\n")
    write_samples_parquet(run_dir, frame)
    write_json_atomic(
        run_dir / "meta.json",
        {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "run_id": run_id,
            "node": node,
            "status": "complete",
            "started_at": started_at,
            "ended_at": started_at,
            "samples": len(frame),
            "scenario": {"name": scenario, "seed": seed, "schedule": "interleaved"},
            "synthetic": True,
        },
    )
    return run_dir
