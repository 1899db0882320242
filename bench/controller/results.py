"""The results store: one folder per run under results/, written as the run goes.

    results/<run-id>/
      meta.json        schema version, harness, node facts, components, scenario, times, status
      samples.jsonl    journal: one JSON sample per line, appended and flushed as it arrives
      samples.parquet  the same samples as a tidy table, rewritten atomically every few
                       seconds and at the end (rebuilt from the journal if a run crashed)
      checks.jsonl     workload checks (the container really ran), one per lifecycle
      splits.jsonl     level split: each CRI op cut into before/network/runtime/between/after
      calls.jsonl      level split: every runtime and CNI call the wrapper recorded, with its op
      memory.jsonl     level density: one row per process and sweep (role, pod, RSS, PSS, USS, CPU)
      memory.parquet   the same rows as a table, rewritten as the run goes (rebuilt from the journal)
      events.jsonl     warnings and errors from the agent
      hyperfine/       hyperfine's own JSON export of every cli-level command
      report.html      made at the end (hopbench report RUN remakes it)

A crash loses at most the sample being written: the journal is flushed per line.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from bench import RESULTS_SCHEMA_VERSION
from bench.errors import ComponentError, InputError

SAMPLE_COLUMNS = {
    "run_id": "string",
    "node": "string",
    "stack": "string",
    "handler": "string",
    "level": "string",
    "op": "string",
    "iteration": "int64",
    "concurrency": "int64",
    "worker": "int64",
    "warmup": "bool",
    "start_ns": "int64",
    "duration_ns": "int64",
    "ok": "bool",
    "error": "string",
}


PARQUET_EVERY_S = 5.0


class RunNotFound(InputError, FileNotFoundError):
    """A folder that is not a hopbench run."""


class StoreError(ComponentError):
    """The results folder stopped taking writes (full, read-only, gone): the run cannot keep more."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` whole or not at all: a full disk leaves the old file, and no temporary one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _writes(method: Any) -> Any:
    """A RunStore method that writes: an OSError (ENOSPC, EROFS, EIO...) becomes one StoreError
    naming the folder, and the store stays broken: later writes are refused at once (a journal
    line never lands after a gap)."""

    @functools.wraps(method)
    def wrapper(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise StoreError(self.broken)
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            self.broken = f"results folder {self.dir}: cannot write ({exc.strerror or exc}) in {method.__name__}"
            raise StoreError(self.broken) from exc

    return wrapper


class RunStore:
    def __init__(self, root: Path, run_id: str) -> None:
        self.dir = root / run_id
        self.dir.mkdir(parents=True, exist_ok=False)
        self.run_id = run_id
        self.meta: dict[str, Any] = {"schema_version": RESULTS_SCHEMA_VERSION, "run_id": run_id, "status": "running"}
        self._files: dict[str, IO[str]] = {}
        self.samples: list[dict[str, Any]] = []
        self._flushed_at = 0.0
        self._flushed_n = 0
        self.memory: list[dict[str, Any]] = []
        self._memory_flushed_n = 0
        self._parquet_every = PARQUET_EVERY_S
        self.broken = ""  # why the folder stopped taking writes ('' while it takes them)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        fh = self._files.get(name)
        if fh is None:
            fh = self._files[name] = open(self.dir / name, "a", buffering=1)  # noqa: SIM115 - kept open for the run
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()

    @_writes
    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        write_json_atomic(self.dir / "meta.json", self.meta)

    @_writes
    def add_sample(self, sample: dict[str, Any]) -> None:
        row = {k: sample.get(k) for k in SAMPLE_COLUMNS}
        self._append("samples.jsonl", row)
        self.samples.append(row)
        if time.monotonic() - self._flushed_at > self._parquet_every:
            self.write_parquet()

    @_writes
    def add_record(self, name: str, record: dict[str, Any]) -> None:
        """One row of a journal other than the samples (splits.jsonl, calls.jsonl)."""
        self._append(name, {k: v for k, v in record.items() if k != "event"})

    @_writes
    def add_memory(self, rows: list[dict[str, Any]]) -> None:
        """One sweep of the memory sampler; memory.parquet follows every few seconds."""
        for row in rows:
            self._append("memory.jsonl", row)
        self.memory.extend(rows)
        if time.monotonic() - self._flushed_at > self._parquet_every:
            self.write_parquet()

    @_writes
    def add_check(self, check: dict[str, Any]) -> None:
        self._append("checks.jsonl", check)

    @_writes
    def add_event(self, event: dict[str, Any]) -> None:
        self._append("events.jsonl", {"wall_time": time.time(), **event})

    @_writes
    def add_artifact(self, name: str, content: str) -> None:
        """A raw file from the node (e.g. hyperfine's JSON export), kept beside the samples."""
        path = (self.dir / name).resolve()
        if self.dir.resolve() not in path.parents:
            raise InputError(f"artifact name {name!r} leaves the run folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    @_writes
    def write_parquet(self) -> None:
        """Rewrite the parquet tables from the rows so far. The journal is what a crash keeps; the
        tables follow every few seconds, and at least ten times as long as a rewrite took apart,
        so a large run (the whole table rewritten each time) spends at most a tenth of its time here."""
        t0 = time.monotonic()
        self._flushed_at = t0
        try:
            self._write_parquet()
        finally:
            self._parquet_every = max(PARQUET_EVERY_S, 10 * (time.monotonic() - t0))

    def _write_parquet(self) -> None:
        # The journals to the disk first, at each checkpoint and not per line (an fsync per sample
        # would put the controller's I/O into the node's timings): a disk that fails or a machine
        # that stops loses at most the lines since the last checkpoint, never the run folder.
        for fh in self._files.values():
            os.fsync(fh.fileno())
        if len(self.memory) != self._memory_flushed_n:
            write_memory_parquet(self.dir, self.memory)
            self._memory_flushed_n = len(self.memory)
        if len(self.samples) == self._flushed_n and (self.dir / "samples.parquet").exists():
            return
        write_samples_parquet(self.dir, self.samples)
        self._flushed_n = len(self.samples)

    def close(self) -> None:
        """The tables brought up to date (unless the folder is broken) and the journals closed."""
        try:
            if not self.broken:
                self.write_parquet()
                if "spans.jsonl" in self._files:
                    self._files["spans.jsonl"].flush()
                    write_spans_parquet(self.dir)
        finally:
            for fh in self._files.values():
                with contextlib.suppress(OSError):  # its last flush fails on a full disk: lines before stay
                    fh.close()
            self._files.clear()


# samples.parquet records how many bytes of samples.jsonl it holds (schema metadata): a reader
# compares that with the journal's size, and reads the journal only when it grew since.
JOURNAL_BYTES = b"hopbench.journal_bytes"


def write_spans_parquet(run_dir: Path) -> None:
    """spans.parquet from spans.jsonl (scenario tracing), once, when the run's folder closes."""
    import pandas as pd

    rows = read_jsonl(run_dir / "spans.jsonl")
    if rows:
        tmp = run_dir / "spans.parquet.tmp"
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        tmp.replace(run_dir / "spans.parquet")


def write_samples_parquet(run_dir: Path, rows: Any) -> None:
    """samples.parquet from a list of sample dicts or a frame, stamped with the journal size it covers."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    journal = run_dir / "samples.jsonl"
    covered = journal.stat().st_size if journal.exists() else 0
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    table = pa.Table.from_pandas(frame[list(SAMPLE_COLUMNS)].astype(SAMPLE_COLUMNS), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), JOURNAL_BYTES: str(covered).encode()})
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix="samples.parquet.")
    os.close(fd)
    pq.write_table(table, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, run_dir / "samples.parquet")


def samples_current(run_dir: Path) -> bool:
    """Whether samples.parquet holds the whole journal (without reading either)."""
    import pyarrow.parquet as pq

    parquet, journal = run_dir / "samples.parquet", run_dir / "samples.jsonl"
    if not parquet.exists():
        return False
    covered = (pq.read_schema(parquet).metadata or {}).get(JOURNAL_BYTES)
    if covered is None:  # written before the stamp: compare row counts the slow way
        return False
    size = journal.stat().st_size if journal.exists() else 0
    return int(covered) == size


MEMORY_COLUMNS = {
    "run_id": "string",
    "node": "string",
    "target": "string",
    "handler": "string",
    # Nullable: a level's sampler may leave them out (a row is never dropped for it).
    "step": "Int64",
    "pods_running": "Int64",
    "phase": "string",
    "t_ns": "int64",
    "sweep": "int64",
    "pid": "int64",
    "role": "string",
    "stack": "string",
    "name": "string",
    "pod": "string",
    "object_id": "string",
    "rss": "Int64",
    "pss": "Int64",
    "uss": "Int64",
    "pss_note": "string",
    "cpu_s": "float64",
}


def write_memory_parquet(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame([{k: r.get(k) for k in MEMORY_COLUMNS} for r in rows], columns=list(MEMORY_COLUMNS))
    frame = frame.astype(MEMORY_COLUMNS)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix="memory.parquet.")
    os.close(fd)
    frame.to_parquet(tmp, index=False)
    os.chmod(tmp, 0o644)
    os.replace(tmp, run_dir / "memory.parquet")


def load_memory(run_dir: Path) -> Any:
    """The run's memory samples (empty without level density); the parquet is rebuilt when stale."""
    import pandas as pd

    journal = read_jsonl(run_dir / "memory.jsonl")
    path = run_dir / "memory.parquet"
    frame = pd.read_parquet(path) if path.exists() else None
    if frame is None or len(frame) < len(journal):
        if not journal:
            return pd.DataFrame(columns=list(MEMORY_COLUMNS))
        write_memory_parquet(run_dir, journal)
        frame = pd.read_parquet(path)
    return frame


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The journal's rows; a torn last line (a crash mid-write) ends it: what came before is kept."""
    return read_jsonl_whole(path)[0]


def read_jsonl_whole(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The journal's rows and, when it ends in a torn line, a warning saying what was skipped ('' otherwise)."""
    if not path.exists():
        return [], ""
    rows = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                rest = len(raw) + len(fh.read())
                return rows, (
                    f"{path}: line {number} is torn (a crash mid-write?): it and the {rest} bytes from it on "
                    f"are skipped, the {len(rows)} rows before it kept"
                )
    return rows, ""


def load_meta(run_dir: Path) -> dict[str, Any]:
    meta_path = run_dir / "meta.json"
    if not meta_path.exists():
        raise RunNotFound(f"{run_dir}: no meta.json, not a hopbench run folder")
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{meta_path}: cannot read the run's meta.json: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("schema_version") != RESULTS_SCHEMA_VERSION:
        got = meta.get("schema_version")
        raise InputError(f"{meta_path}: field 'schema_version': expected {RESULTS_SCHEMA_VERSION}, got {got!r}")
    return meta


def load_samples(run_dir: Path, columns: list[str] | None = None, filters: Any = None) -> Any:
    """The run's samples, only `columns` (None: all) and the rows passing pyarrow `filters`.

    samples.parquet is read when it covers the whole journal (its stamp says so); otherwise it is
    rebuilt from the journal first (a run that crashed, or one still being written)."""
    load_meta(run_dir)  # a folder that is not a run (or of another schema) is refused by name
    return _read_samples(run_dir, columns, filters)


def _read_samples(run_dir: Path, columns: list[str] | None, filters: Any) -> Any:
    import pandas as pd

    return pd.read_parquet(freshen_samples(run_dir), columns=columns, filters=filters)


def freshen_samples(run_dir: Path) -> Path:
    """samples.parquet, rebuilt first from the journal when it does not hold all of it; its path."""
    parquet = run_dir / "samples.parquet"
    if not samples_current(run_dir):
        journal, torn = read_jsonl_whole(run_dir / "samples.jsonl")
        if torn:
            print(f"warning: {torn}", file=sys.stderr)
        if not parquet.exists() or len(journal) >= _rows(parquet):
            write_samples_parquet(run_dir, journal)
    return parquet


def _rows(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(parquet).num_rows)


def load_run(run_dir: Path, columns: list[str] | None = None, filters: Any = None) -> tuple[dict[str, Any], Any]:
    """meta and samples of a run (see load_samples for `columns` and `filters`)."""
    return load_meta(run_dir), _read_samples(run_dir, columns, filters)
