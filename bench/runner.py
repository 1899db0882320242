"""The controller side of a run: scenario → transport → agent events → results store → report."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import __version__, report, stats
from bench.results import RunStore
from bench.scenario import Scenario
from bench.transport import Transport, TransportError

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def new_run_id(scenario: str, node: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{scenario}-{node}-{secrets.token_hex(2)}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RunResult:
    def __init__(self, store: RunStore, report_path: Path | None, ok: bool) -> None:
        self.store, self.report_path, self.ok = store, report_path, ok

    @property
    def dir(self) -> Path:
        return self.store.dir


def execute(
    scenario: Scenario,
    transport: Transport,
    results_root: Path,
    console: Console | None = None,
    command: str | None = None,
) -> RunResult:
    console = console or Console(stderr=True)
    run_id = new_run_id(scenario.name, transport.node)
    store = RunStore(results_root, run_id)
    store.update_meta(
        node=transport.node,
        harness={"name": "hopbench", "version": __version__, **git_commit(), "python": sys.version.split()[0]},
        command=command or shlex.join(["hopbench", "run", "--scenario", scenario.path]),
        scenario=scenario.to_dict(),
        scenario_text=scenario.text,
        started_at=_now(),
    )
    job = {"run_id": run_id, "node": transport.node, "scenario": scenario.to_dict()}
    errors: list[str] = []
    failed_checks = 0
    done: dict[str, Any] = {}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(f"{run_id}", total=None)
    interrupts: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Ctrl-C or SIGTERM: ask the agent to stop and clean up, keep reading what it sends.
        if not interrupts:
            console.print("[yellow]interrupted: the agent is removing its pods, wait for it…[/]")
        interrupts.append(signum)
        transport.interrupt()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with progress:
            try:
                for ev in transport.run_agent(job):
                    failed_checks += _handle(ev, store, progress, task, console, errors, done)
            except TransportError as exc:
                errors.append(str(exc))
                store.add_event({"event": "error", "message": str(exc)})
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    interrupted = bool(interrupts)
    store.close()
    available = [t for t in store.meta.get("targets", []) if t.get("available")]
    if not available and not store.samples and not errors:
        errors.append(
            "no available target on this node: provision it (hopbench provision) or check the scenario's targets"
        )
    status = (
        "interrupted" if interrupted or done.get("interrupted") else ("complete" if done and not errors else "failed")
    )
    store.update_meta(
        ended_at=_now(), status=status, errors=errors, failed_checks=failed_checks, samples=len(store.samples)
    )
    report_path = None
    if store.samples:
        print_summary(store, console)
        report_path = report.build_report(store.dir)
    ok = status == "complete" and failed_checks == 0 and not any(not s["ok"] for s in store.samples)
    return RunResult(store, report_path, ok)


def list_targets(transport: Transport) -> list[dict[str, Any]]:
    """Every stack/handler pair of the node with availability, reason and component versions."""
    job = {
        "run_id": f"targets-{secrets.token_hex(4)}",
        "node": transport.node,
        "mode": "targets",
        "scenario": {"targets": ["all"], "timeout_s": 30},
    }
    targets: list[dict[str, Any]] = []
    errors = []
    for ev in transport.run_agent(job):
        if ev.get("event") == "targets":
            targets = ev["targets"]
        elif ev.get("event") == "error":
            errors.append(str(ev.get("message")))
    if errors:
        raise RuntimeError("; ".join(errors))
    return targets


def _handle(
    ev: dict[str, Any],
    store: RunStore,
    progress: Progress,
    task: TaskID,
    console: Console,
    errors: list[str],
    done: dict[str, Any],
) -> int:
    """Store or show one agent event; returns 1 for a failed workload check, else 0."""
    kind = ev.get("event")
    if kind == "sample":
        store.add_sample(ev)
    elif kind == "memory":
        store.add_memory(ev["rows"])
    elif kind == "sampler":
        store.update_meta(sampler={**store.meta.get("sampler", {}), ev["target"]: ev["stats"]})
    elif kind in ("split", "call"):
        store.add_record(f"{kind}s.jsonl", ev)
    elif kind == "check":
        store.add_check(ev)
        return 0 if ev.get("ok") else 1
    elif kind == "lifecycle":
        progress.advance(task)
    elif kind == "plan":
        progress.update(task, total=ev["lifecycles"])
    elif kind == "plan_add":
        progress.update(task, total=(progress.tasks[0].total or 0) + ev["lifecycles"])
    elif kind == "artifact":
        store.add_artifact(ev["name"], ev["content"])
    elif kind == "tool":
        store.update_meta(tools={**store.meta.get("tools", {}), ev["name"]: ev["version"]})
    elif kind == "meta":
        store.update_meta(node_facts=ev["node"])
    elif kind == "targets":
        store.update_meta(targets=ev["targets"])
        for t in ev["targets"]:
            if not t["available"]:
                console.print(f"[yellow]{t['target']} unavailable: {t['reason']}[/]")
    elif kind == "meta_end":
        store.update_meta(node_end=ev)
    elif kind == "info":
        store.add_event(ev)
        console.print(f"[dim]{ev.get('message')}[/]")
    elif kind in ("warning", "error"):
        store.add_event(ev)
        console.print(f"[{'red' if kind == 'error' else 'yellow'}]{kind}: {ev.get('message')}[/]")
        if kind == "error":
            errors.append(str(ev.get("message")))
    elif kind == "done":
        done.update(ev)
    return 0


def print_summary(store: RunStore, console: Console) -> None:
    import pandas as pd

    summary = stats.summarize(pd.DataFrame(store.samples))
    order = {op: i for i, op in enumerate(stats.op_order(list(summary["op"].unique())))}
    summary = summary.assign(_o=summary["op"].map(order)).sort_values(
        ["stack", "handler", "level", "concurrency", "_o"]
    )
    table = Table(title=f"{store.run_id}: latency per op (ms, warm-up excluded)")
    for col in ("target", "level", "conc", "op", "n", "p50", "p90", "p99", "failed"):
        table.add_column(col, justify="left" if col in ("target", "level", "op") else "right")
    for r in summary.itertuples():
        table.add_row(
            f"{r.stack}/{r.handler}",
            r.level,
            str(r.concurrency),
            r.op,
            str(r.n),
            *(f"{getattr(r, c, float('nan')):.1f}" for c in ("p50_ms", "p90_ms", "p99_ms")),
            str(r.failed),
        )
    console.print(table)


def run_playbook(playbook: str = "site.yml", inventory: str | None = None, extra: list[str] | None = None) -> int:
    """ansible-playbook from the repository's ansible/ folder (its ansible.cfg applies)."""
    ansible_dir = REPO / "ansible"
    exe = Path(sys.executable).with_name("ansible-playbook")
    argv = [str(exe) if exe.exists() else "ansible-playbook", playbook]
    if inventory:
        argv += ["-i", inventory]
    argv += extra or []
    env = {**os.environ, "ANSIBLE_CONFIG": str(ansible_dir / "ansible.cfg")}
    return subprocess.run(argv, cwd=ansible_dir, env=env, check=False).returncode
