"""The controller side of a run: scenario → transport → agent events → results store → report."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import __version__
from bench.codec import to_data
from bench.controller import report, stats, summaries
from bench.controller.results import RunStore, StoreError
from bench.controller.transport import Transport, TransportError
from bench.messages import (
    Artifact,
    Call,
    Check,
    Done,
    Error,
    Event,
    Info,
    Job,
    Lifecycle,
    Memory,
    Meta,
    MetaEnd,
    Plan,
    PlanAdd,
    Pull,
    Sample,
    SamplerStats,
    Setting,
    Span,
    Split,
    Targets,
    Tool,
    Warning,
)
from bench.node.nodeinfo import EMULATED
from bench.scenario import Scenario

REPO = Path(__file__).resolve().parents[2]  # the repository: bench/controller/runner.py


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
    transport: Transport | list[Transport],
    results_root: Path,
    console: Console | None = None,
    command: str | None = None,
    build_report: bool = True,
) -> RunResult:
    """Run the scenario on every node at once (one agent per node), into one run folder.

    Each node's events are handled as they arrive; a node whose connection fails is marked
    incomplete (what it sent is kept), and, where the transport can, the controller reconnects
    to check that the node's agent removed its pods. The other nodes go on.
    """
    console = console or Console(stderr=True)
    if scenario.seed is None:
        # The schedule's shuffles are drawn from this seed: kept in meta.json, the run can be replayed.
        scenario = dataclasses.replace(scenario, seed=secrets.randbits(63))
    transports = transport if isinstance(transport, list) else [transport]
    names = [t.node for t in transports]
    run_id = new_run_id(scenario.name, names[0] if len(names) == 1 else f"{len(names)}nodes")
    try:
        store = RunStore(results_root, run_id)
    except OSError as exc:
        raise StoreError(
            f"--results {results_root}: cannot make the run folder {run_id}: {exc.strerror or exc}"
        ) from None
    store.update_meta(
        node=names[0] if len(names) == 1 else ",".join(names),
        nodes={n: {"status": "running"} for n in names},
        harness={"name": "hopbench", "version": __version__, **git_commit(), "python": sys.version.split()[0]},
        command=command or shlex.join(["hopbench", "run", "--scenario", scenario.path]),
        scenario=scenario.to_dict(),
        scenario_text=scenario.text,
        started_at=_now(),
    )
    errors: list[str] = []
    failed = [0]
    lock = threading.Lock()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    interrupts: list[int] = []
    outcome: dict[str, dict[str, Any]] = {n: {} for n in names}

    def on_signal(signum: int, _frame: object) -> None:
        # Ctrl-C or SIGTERM: ask every agent to stop and clean up, keep reading what they send.
        if not interrupts:
            console.print("[yellow]interrupted: the agents are removing their pods, wait for them…[/]")
        interrupts.append(signum)
        for t in transports:
            t.interrupt()

    def storage_failed(why: str, node_errors: list[str]) -> None:
        """The results folder stopped taking writes: stop every agent (they remove their pods) and
        say so; what the journals hold up to here stays."""
        node_errors.append(why)
        console.print(f"[red]{why}: stopping the run; every sample written before is kept[/]")
        for t in transports:
            t.interrupt()

    def drive(t: Transport, task: TaskID) -> None:
        done: dict[str, Any] = {}
        node_errors: list[str] = []
        started = False
        try:
            job = Job(run_id=run_id, node=t.node, scenario=dataclasses.replace(scenario, text=""))
            for ev in t.run_agent(job):
                started = True
                with lock:
                    if store.broken:  # nothing more can be kept: follow the agent to its end only
                        if isinstance(ev, Done):
                            done.update(ev.record())
                        continue
                    try:
                        failed[0] += _handle(ev, store, progress, task, console, node_errors, done, t.node)
                    except StoreError as exc:
                        storage_failed(str(exc), node_errors)
        except TransportError as exc:
            node_errors.append(str(exc))
            with lock:
                store.add_event({**Error(message=str(exc)).record(), "node": t.node})
                console.print(f"[red]{t.node}: {exc}[/]")
        except Exception as exc:  # noqa: BLE001 - a controller bug on one node: stop its agent, keep the rest
            t.interrupt()
            message = f"controller error while reading {t.node}: {type(exc).__name__}: {exc}"
            node_errors.append(message)
            with lock:
                store.add_event({**Error(message=message).record(), "node": t.node})
                console.print(f"[red]{message}[/]")
        info: dict[str, Any] = {"errors": node_errors}
        if done:
            info["status"] = "interrupted" if done.get("interrupted") else ("complete" if not node_errors else "failed")
        else:
            info["status"] = "incomplete"
            check = getattr(t, "check_left", None)
            if check is not None and started:  # an agent ran (and may have made pods): did it clean up?
                try:
                    info["left_after_loss"] = check(run_id)
                except TransportError as exc:
                    info["left_after_loss"] = f"unknown: {exc}"
        outcome[t.node] = info

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with progress:
            threads = []
            for t in transports:
                task = progress.add_task(f"{run_id} {t.node}" if len(transports) > 1 else run_id, total=None)
                threads.append(threading.Thread(target=drive, args=(t, task), name=f"node-{t.node}", daemon=True))
            for th in threads:
                th.start()
            for th in threads:
                while th.is_alive():
                    th.join(0.2)  # short joins: the main thread stays free for Ctrl-C
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    with contextlib.suppress(StoreError):  # store.broken says why
        store.close()
    for info in outcome.values():
        errors += info.get("errors", [])
    nodes = {n: {**store.meta.get("nodes", {}).get(n, {}), **outcome[n]} for n in names}
    available = [t for t in store.meta.get("targets", []) if t.get("available")]
    if not available and not store.samples and not errors:
        errors.append(
            "no available target on this node: provision it (hopbench provision) or check the scenario's targets"
        )
    statuses = {info.get("status") for info in outcome.values()}
    if store.broken:
        status = "failed"  # stopped by the results folder, not by a user or a node
    elif interrupts or "interrupted" in statuses:
        status = "interrupted"
    elif statuses == {"complete"} and not errors:
        status = "complete"
    elif "incomplete" in statuses:
        status = "incomplete"
    else:
        status = "failed"
    if store.broken and store.broken not in errors:
        errors.append(store.broken)
    ended = {
        "ended_at": _now(),
        "status": status,
        "errors": errors,
        "failed_checks": failed[0],
        "samples": len(store.samples),
        "nodes": nodes,
    }
    store.meta.update(ended)  # what the command says, even when meta.json cannot take it
    with contextlib.suppress(StoreError):
        store.update_meta(**ended)
    report_path = None
    if store.broken:
        console.print(
            f"[red]{store.broken}.[/] The run stopped; its agents removed their pods. The journals keep the "
            f"{len(store.samples)} samples written before; once the folder takes writes again, "
            f"`hopbench report {store.dir}` rebuilds the tables and the report from them."
        )
    elif store.samples:
        print_summary(store, console)
        summaries.run_summary(store.dir)  # cached now: the nightly gate and the trend read it, not the samples
        if build_report:
            report_path = report.build_report(store.dir)
    ok = status == "complete" and failed[0] == 0 and not any(not s["ok"] for s in store.samples)
    return RunResult(store, report_path, ok)


def list_targets(transport: Transport) -> list[dict[str, Any]]:
    """Every stack instance/handler pair of the node with availability, reason and component versions."""
    every = Scenario(name="targets", path="", sha256="", text="", targets=("all@*",), timeout_s=30.0)
    job = Job(run_id=f"targets-{secrets.token_hex(4)}", node=transport.node, mode="targets", scenario=every)
    targets: list[dict[str, Any]] = []
    errors = []
    for ev in transport.run_agent(job):
        if isinstance(ev, Targets):
            targets = [to_data(t) for t in ev.targets]
        elif isinstance(ev, Error):
            errors.append(ev.message)
    if errors:
        raise TransportError("; ".join(errors))
    return targets


def _handle(
    ev: Event,
    store: RunStore,
    progress: Progress,
    task: TaskID,
    console: Console,
    errors: list[str],
    done: dict[str, Any],
    node: str = "local",
) -> int:
    """Store or show one agent event of `node`; returns 1 for a failed workload check, else 0."""
    record = ev.record()
    if isinstance(ev, Warning | Error | Info | Check | MetaEnd):
        record["node"] = node
    match ev:
        case Sample():
            store.add_sample(record)
        case Memory():
            store.add_memory(list(ev.rows))
        case SamplerStats():
            store.update_meta(sampler={**store.meta.get("sampler", {}), ev.target: ev.stats})
        case Split() | Call() | Pull() | Span():
            store.add_record(f"{ev.kind}s.jsonl", record)
        case Check():
            store.add_check(record)
            return 0 if ev.ok else 1
        case Lifecycle():
            progress.advance(task)
        case Plan():
            progress.update(task, total=ev.lifecycles)
        case PlanAdd():
            total = next((t.total for t in progress.tasks if t.id == task), None) or 0
            progress.update(task, total=total + ev.lifecycles)
        case Artifact():
            store.add_artifact(ev.name, ev.content)
        case Setting():
            settings = store.meta.get("settings", {})
            settings.setdefault(ev.target, {})[ev.name] = {"value": ev.value, "why": ev.why}
            store.update_meta(settings=settings)
        case Tool():
            store.update_meta(tools={**store.meta.get("tools", {}), ev.name: ev.version})
        case Meta():
            nodes = store.meta.get("nodes", {})
            nodes[node] = {**nodes.get(node, {}), "facts": ev.node}
            store.update_meta(nodes=nodes)
            if "node_facts" not in store.meta:  # the first node's facts head the report
                store.update_meta(node_facts=ev.node)
            virt = ev.node.get("virtualization") if isinstance(ev.node, dict) else None
            if isinstance(virt, dict) and virt.get("emulated"):
                # A node whose CPU QEMU emulates: every figure of the run says so (report, exports,
                # compare and the nightly refuse to set it beside others).
                was = (store.meta.get("emulated") or {}).get("nodes", [])
                store.update_meta(emulated={"label": EMULATED, "nodes": sorted({*was, node})})
        case Targets():
            others = [t for t in store.meta.get("targets", []) if t.get("node", node) != node]
            store.update_meta(targets=others + [{**to_data(t), "node": node} for t in ev.targets])
            for t in ev.targets:
                if not t.available:
                    console.print(f"[yellow]{node} {t.target} unavailable: {t.reason}[/]")
        case MetaEnd():
            nodes = store.meta.get("nodes", {})
            nodes[node] = {**nodes.get(node, {}), "end": record}
            store.update_meta(nodes=nodes, node_end=record)
        case Info():
            store.add_event(record)
            console.print(f"[dim]{ev.message}[/]")
        case Warning() | Error():
            store.add_event(record)
            console.print(f"[{'red' if ev.kind == 'error' else 'yellow'}]{ev.kind}: {ev.message}[/]")
            if isinstance(ev, Error):
                errors.append(ev.message)
        case Done():
            done.update(record)
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
