"""One run folder, loaded once: the object every controller-side consumer takes.

A `Run` reads what its folder holds lazily and at most once: meta, samples, their summary,
memory, splits, calls, checks, events, nightly.json, and the artifacts features wrote beside
them (daemon metrics, kubelet scrapes, client load, the null runtime's limit). Views, the
report, exports and notebooks take a `Run` and never open files in the run folder themselves;
`derived` keeps a figure one view computes and another reuses (the headline uses the hop
costs and the memory per pod), so it too is computed once per run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from bench.controller import control, stats, summaries
from bench.controller.results import load_memory, load_meta, load_samples, read_jsonl, write_json_atomic

T = TypeVar("T")
# What a comparison reads of each run's samples (Parquet column pruning: not the timestamps,
# workers or error texts).
COMPARED_COLUMNS = ["node", *stats.COMPARE_KEY, "iteration", "warmup", "ok", "duration_ns"]


class Run:
    """A results folder (`results/<run-id>/`); a folder without meta.json is refused by name."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = load_meta(self.path)
        self._derived: dict[str, Any] = {}
        self._json: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @cached_property
    def samples(self) -> pd.DataFrame:
        return load_samples(self.path)

    @cached_property
    def summary(self) -> pd.DataFrame:
        return stats.summarize(self.samples)

    @cached_property
    def compared(self) -> pd.DataFrame:
        """What `hopbench compare` and the nightly gate read: COMPARED_COLUMNS only (from the
        loaded samples when the run has them, else a pruned read of the Parquet file)."""
        if "samples" in self.__dict__:
            return self.samples[COMPARED_COLUMNS]
        return load_samples(self.path, columns=COMPARED_COLUMNS)

    @cached_property
    def control(self) -> pd.DataFrame:
        """The control level's samples, for the node speed index (a Parquet row filter when
        nothing else of the samples is loaded: a year of nights reads only these rows)."""
        for loaded in ("samples", "compared"):
            if loaded in self.__dict__:
                frame: pd.DataFrame = getattr(self, loaded)
                return frame.loc[frame["level"] == control.LEVEL, COMPARED_COLUMNS].reset_index(drop=True)
        return load_samples(self.path, columns=COMPARED_COLUMNS, filters=[("level", "==", control.LEVEL)])

    @cached_property
    def night_summary(self) -> pd.DataFrame:
        """Count, median and spread per row, from the summary cached beside the samples
        (bench.controller.summaries): what history needs without the raw samples."""
        return summaries.run_summary(self.path)

    @cached_property
    def levels(self) -> frozenset[str]:
        s = self.samples
        return frozenset(str(v) for v in s["level"].unique()) if not s.empty else frozenset()

    @cached_property
    def memory(self) -> pd.DataFrame:
        return load_memory(self.path)

    @cached_property
    def splits(self) -> pd.DataFrame:
        return pd.DataFrame(read_jsonl(self.path / "splits.jsonl"))

    @cached_property
    def pulls(self) -> pd.DataFrame:
        """Level image: one row per timed PullImage (bytes on the link, node CPU, the image)."""
        return pd.DataFrame(read_jsonl(self.path / "pulls.jsonl"))

    @cached_property
    def spans(self) -> pd.DataFrame:
        """Scenario tracing: every span of the run, ours and the daemons' (bench.node.traces)."""
        if (self.path / "spans.parquet").exists():
            return pd.read_parquet(self.path / "spans.parquet")
        return pd.DataFrame(read_jsonl(self.path / "spans.jsonl"))

    @cached_property
    def calls(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "calls.jsonl")

    @cached_property
    def checks(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "checks.jsonl")

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "events.jsonl")

    @cached_property
    def problems(self) -> list[dict[str, Any]]:
        """The events a reader must see: warnings and errors."""
        return [e for e in self.events if e.get("event") in ("warning", "error")]

    @cached_property
    def nightly(self) -> dict[str, Any]:
        """nightly.json (the regression verdict `hopbench nightly` wrote), or {}."""
        data = self.json("nightly.json")
        return data if isinstance(data, dict) else {}

    @property
    def emulated(self) -> list[str]:
        """The run's nodes whose CPU was emulated (meta.json `emulated`, from each node's
        virtualization fact): their figures are functional, not for comparison."""
        return emulated_nodes(self.meta)

    @property
    def interleaved(self) -> bool:
        return bool(self.meta.get("scenario", {}).get("schedule") == "interleaved")

    def json(self, name: str) -> Any:
        """An artifact in JSON (a path inside the run folder), or None when the run has none."""
        if name not in self._json:
            path = self.path / name
            self._json[name] = json.loads(path.read_text()) if path.exists() else None
        return self._json[name]

    def write_json(self, name: str, data: Any) -> Path:
        """Write an artifact in JSON (atomically) and keep it as what the run now holds."""
        path = self.path / name
        write_json_atomic(path, data)
        self._json[name] = data
        self.__dict__.pop("nightly", None)
        return path

    def artifacts(self, folder: str, pattern: str) -> list[Path]:
        """The artifact files of one feature (`daemon-metrics`, `kube`, `client-load`), by name."""
        return sorted((self.path / folder).glob(pattern))

    def text(self, path: Path) -> str:
        """One artifact's text; the path must lie inside the run folder."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.path.resolve()):
            raise ValueError(f"{path} is not inside the run folder {self.path}")
        return resolved.read_text()

    def derived(self, key: str, compute: Callable[[Run], T]) -> T:
        """A figure computed from the run once, whichever view asks first."""
        if key not in self._derived:
            self._derived[key] = compute(self)
        value: T = self._derived[key]
        return value

    def siblings(self) -> Path:
        """The results root this run lies in (the nightly trend reads earlier runs there)."""
        return self.path.parent


def emulated_nodes(meta: dict[str, Any]) -> list[str]:
    """Nodes of a run (its meta.json) that ran emulated: `emulated.nodes`, or, for a run written
    before that field, each node's facts (`virtualization.emulated`)."""
    found = (meta.get("emulated") or {}).get("nodes") if isinstance(meta.get("emulated"), dict) else None
    if found is not None:
        return [str(n) for n in found]
    nodes = meta["nodes"] if isinstance(meta.get("nodes"), dict) else {}
    return sorted(
        str(name)
        for name, n in nodes.items()
        if isinstance(n, dict) and ((n.get("facts") or {}).get("virtualization") or {}).get("emulated")
    )


def as_run(run: Run | Path) -> Run:
    """A Run for a run or its folder."""
    return run if isinstance(run, Run) else Run(Path(run))
