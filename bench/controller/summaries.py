"""Per-run summaries, cached beside the samples: what history needs without the raw samples.

A year of nights is millions of samples; the nightly gate, the trend chart and `hopbench runs`
need per row (node, stack, handler, level, op, concurrency) only its count, median and spread.
`summary.parquet` in each run folder holds them, stamped with the samples.parquet it was made
from (size and modification time): a stale or missing summary is rebuilt on first use and written
back when the folder is writable. The gate's night (bench.controller.gate.Night) is built from a
row's log median, its MAD-based sigma and its count, exactly as from the samples.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.controller import gate, stats
from bench.controller.results import freshen_samples, load_samples

SUMMARY_FILE = "summary.parquet"
KEY = ["node", *stats.COMPARE_KEY]
COLUMNS = [*KEY, "n", "p50_ms", "log_median", "sigma"]
SOURCE = b"hopbench.summary_source"
# Bump when the summary's columns or their meaning change: older caches are rebuilt.
VERSION = "1"


def _source(run_dir: Path) -> str:
    st = (run_dir / "samples.parquet").stat()
    return f"{VERSION}:{st.st_size}:{st.st_mtime_ns}"


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per KEY of measured samples: n, p50_ms (numpy's median), log_median, sigma (MAD of the logs)."""
    m = stats.measured_ms(samples)
    m = m[m["ms"] > 0]
    if m.empty:
        return pd.DataFrame(columns=COLUMNS)
    m = m.assign(log=np.log(m["ms"].to_numpy()))
    g = m.groupby(KEY, observed=True, sort=True)
    out = g.agg(n=("ms", "size"), p50_ms=("ms", "median"), log_median=("log", "median"))
    dev = (m["log"] - g["log"].transform("median")).abs()
    out["sigma"] = gate.MAD_TO_SIGMA * dev.groupby([m[k] for k in KEY], observed=True, sort=True).median()
    return out.reset_index()[COLUMNS]


def run_summary(run_dir: Path) -> pd.DataFrame:
    """The run's summary, from the cache when it matches the samples, else computed (and cached)."""
    import pyarrow.parquet as pq

    freshen_samples(run_dir)  # the stamp below is the up-to-date parquet's
    cache = run_dir / SUMMARY_FILE
    source = _source(run_dir)
    if cache.exists():
        try:
            if (pq.read_schema(cache).metadata or {}).get(SOURCE, b"").decode() == source:
                return pd.read_parquet(cache)
        except OSError:
            pass  # unreadable cache: rebuild it
    cols = [*KEY, "warmup", "ok", "duration_ns"]
    summary = summarise(load_samples(run_dir, columns=cols))
    _write(cache, summary, source)
    return summary


def _write(path: Path, frame: pd.DataFrame, source: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SOURCE: source.encode()})
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    except OSError:
        return  # a read-only results folder: use the summary without caching it
    os.close(fd)
    pq.write_table(table, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def nights(summary: pd.DataFrame) -> dict[tuple[object, ...], gate.Night]:
    """The gate's night per compare key (stack, handler, level, op, concurrency) of one run's summary.

    A run of one node has one row per key; rows with fewer than 3 samples have no night (as gate.night)."""
    out = {}
    for r in summary[summary["n"] >= 3].itertuples(index=False):
        key = tuple(getattr(r, k) for k in stats.COMPARE_KEY)
        out[key] = gate.night_of(float(r.log_median), float(r.sigma), int(r.n))
    return out
