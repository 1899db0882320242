"""Other tools' results as hopbench runs: `hopbench import critest DIR`.

critest's benchmark mode (`critest -benchmark -benchmarking-output-dir DIR`) writes
`pod_benchmark_data.json` (CreatePod, StatusPod, StopPod, RemovePod per sample) and
`container_benchmark_data.json` (CreateContainer, StartContainer, StatusContainer, StopContainer,
RemoveContainer per sample): `operationsNames`, `numParallel`, and per datapoint its
`sampleIndex`, wall-clock `startTime` and `operationsDurationsNs` in the order of the names.
Each file found becomes samples of level `critest` under the CRI names (CreatePod ->
RunPodSandbox...; bench.ops.CRITEST_OPS), so the run compares with hopbench's own
level-critest runs and with other imports (`hopbench compare`), and shows in the notebooks.

critest does not say which runtime it ran against: the stack and handler come from the command
line, the versions from `--version name=value` or from the daemon itself (`--endpoint`: the CRI
Version call, as hopbench records them for its own runs). Every field read is checked: a file
that is not critest's gets an error naming the file, the field and what was expected; no run
folder is left behind by a failed import.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import RESULTS_SCHEMA_VERSION, __version__
from bench.controller.results import RunStore
from bench.controller.runner import git_commit
from bench.errors import ComponentError, InputError
from bench.ops import CRITEST_OPS

FILES = ("pod_benchmark_data.json", "container_benchmark_data.json")
MAX_BYTES = 256 * 2**20
LEVEL = "critest"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")


def _int(path: Path, field: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(f"{path}: field {field!r}: expected an integer >= {lo}, got {value!r}")
    return value


def read_critest(path: Path) -> list[dict[str, Any]]:
    """One critest benchmark file as rows: op (CRI name), sample, parallel, start_ns (wall clock), duration_ns."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"{path}: larger than {MAX_BYTES // 2**20} MiB, not a critest benchmark file")
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read critest's JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object (critest's benchmark data), got {type(data).__name__}")
    names = data.get("operationsNames")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path}: field 'operationsNames': expected a list of critest op names, got {names!r}")
    unknown = [n for n in names if n not in CRITEST_OPS]
    if unknown:
        raise InputError(f"{path}: field 'operationsNames': unknown op(s) {unknown}; expected {sorted(CRITEST_OPS)}")
    parallel = _int(path, "numParallel", data.get("numParallel", 1), 1)
    points = data.get("datapoints")
    if not isinstance(points, list):
        raise InputError(f"{path}: field 'datapoints': expected a list, got {type(points).__name__}")
    rows = []
    for i, point in enumerate(points):
        where = f"datapoints[{i}]"
        if not isinstance(point, dict):
            raise InputError(f"{path}: field {where!r}: expected an object, got {type(point).__name__}")
        sample = _int(path, f"{where}.sampleIndex", point.get("sampleIndex", i))
        start = _int(path, f"{where}.startTime", point.get("startTime"))
        durations = point.get("operationsDurationsNs")
        if not isinstance(durations, list) or len(durations) != len(names):
            raise InputError(
                f"{path}: field '{where}.operationsDurationsNs': expected {len(names)} durations (one per "
                f"operationsNames), got {durations!r}"
            )
        for name, ns in zip(names, durations, strict=True):
            ns = _int(path, f"{where}.operationsDurationsNs", ns)
            rows.append({"op": CRITEST_OPS[name], "sample": sample, "parallel": parallel, "start_ns": start, "ns": ns})
            start += ns
    return rows


def parse_versions(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"--version {item!r}: expected name=value (e.g. containerd=2.4.2)")
        out[name] = value
    return out


def daemon_versions(endpoint: str, timeout_s: float = 10.0) -> dict[str, str]:
    """The runtime's own name and version over CRI (the Version call), as `cri` in a run's versions."""
    from bench.node.cri import CriClient

    try:
        client = CriClient(endpoint, timeout_s=timeout_s)
        try:
            v = client.version()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - grpc raises its own types; said as a component error
        raise ComponentError(f"--endpoint {endpoint}: CRI Version call failed: {exc}") from None
    return {"cri": f"{v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})"}


def import_critest(
    src: Path,
    results: Path,
    stack: str,
    handler: str,
    node: str = "local",
    versions: dict[str, str] | None = None,
    command: str = "",
) -> Path:
    """critest's benchmark files in `src` as a new run under `results`; returns its folder."""
    for flag, value in (("--stack", stack), ("--handler", handler), ("--node", node)):
        if not NAME.match(value):
            raise InputError(f"{flag} {value!r}: expected a name (letters, digits, '.', '_', '@', '-')")
    if not src.is_dir():
        raise InputError(f"{src}: no such folder (critest's -benchmarking-output-dir)")
    found = [src / f for f in FILES if (src / f).is_file()]
    if not found:
        raise InputError(f"{src}: neither {FILES[0]} nor {FILES[1]} (critest -benchmark's output files)")
    per_file = {p: read_critest(p) for p in found}
    rows = [r for rs in per_file.values() for r in rs]
    if not rows:
        raise InputError(f"{src}: critest's files hold no datapoint")
    results.mkdir(parents=True, exist_ok=True)
    first, last = min(r["start_ns"] for r in rows), max(r["start_ns"] + r["ns"] for r in rows)
    stamp = dt.datetime.fromtimestamp(first / 1e9, dt.UTC)
    run_id = f"{stamp:%Y%m%dT%H%M%SZ}-critest-import-{node}-{secrets.token_hex(2)}"
    digest = hashlib.sha256()
    for p in found:
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    store = RunStore(results, run_id)
    try:
        for p, rs in per_file.items():
            for r in rs:
                store.add_sample(
                    {
                        "run_id": run_id,
                        "node": node,
                        "stack": stack,
                        "handler": handler,
                        "level": LEVEL,
                        "op": r["op"],
                        "iteration": r["sample"],
                        "concurrency": r["parallel"],
                        # Pod and container samples of one index share it, as in level critest.
                        "worker": 0,
                        "warmup": False,
                        "start_ns": r["start_ns"],
                        "duration_ns": r["ns"],
                        "ok": True,
                        "error": "",
                    }
                )
            store.add_artifact(f"critest/{p.name}", p.read_text())
        store.update_meta(
            schema_version=RESULTS_SCHEMA_VERSION,
            node=node,
            nodes=[node],
            status="complete",
            started_at=stamp.isoformat(timespec="seconds"),
            ended_at=dt.datetime.fromtimestamp(last / 1e9, dt.UTC).isoformat(timespec="seconds"),
            scenario={
                "name": "critest-import",
                "path": str(src),
                "sha256": digest.hexdigest(),
                "schedule": "block",
                "levels": [LEVEL],
                "description": f"critest -benchmark results imported from {src}",
            },
            scenario_text="",
            imported={"tool": "critest", "source": str(src), "files": [p.name for p in found]},
            targets=[
                {
                    "target": f"{stack}/{handler}",
                    "stack": stack,
                    "handler": handler,
                    "node": node,
                    "available": True,
                    "versions": versions or {},
                }
            ],
            harness={"name": "hopbench", "version": __version__, **git_commit(), "python": sys.version.split()[0]},
            command=command,
        )
        store.close()
    except BaseException:
        store.close()
        shutil.rmtree(store.dir, ignore_errors=True)
        raise
    return store.dir
