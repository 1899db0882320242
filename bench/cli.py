"""hopbench command line: provision, run, report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import __version__

DEFAULT_SCENARIO = "scenarios/quick.yaml"


def cmd_provision(args: argparse.Namespace) -> int:
    from bench.runner import run_playbook

    extra = [arg for ev in args.extra_vars for arg in ("-e", ev)]
    return run_playbook(args.playbook, args.inventory, extra)


def transports_for(args: argparse.Namespace) -> list[Any]:
    """The nodes to run on: the inventory's hosts (--limit keeps some), or this machine alone."""
    from bench.transport.local import LocalTransport

    if not args.inventory:
        return [LocalTransport()]
    from bench import inventory
    from bench.transport.ssh import SSHTransport

    nodes = inventory.load(args.inventory, args.limit or None)
    return [LocalTransport(n.name) if n.connection == "local" else SSHTransport(n) for n in nodes]


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench import runner
    from bench.inventory import InventoryError
    from bench.scenario import ScenarioError, load_scenario

    # A wide table even when stderr is not a terminal (CI logs, nightly mails).
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    try:
        transports = transports_for(args)
    except InventoryError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    result = runner.execute(
        scenario, transports, Path(args.results), console, command=shlex.join(["hopbench", *sys.argv[1:]])
    )
    console.print(f"results: {result.dir}")
    if result.report_path:
        print(result.report_path)
    if not result.ok:
        console.print(f"[red]run {result.store.meta.get('status')}: see {result.dir / 'events.jsonl'}[/]")
        return 1
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from bench.runner import list_targets
    from bench.transport.local import LocalTransport

    try:
        targets = list_targets(LocalTransport())
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(targets, indent=2, sort_keys=True))
        return 0
    table = Table(title="targets on node local")
    for col in ("target", "available", "components / reason"):
        table.add_column(col)
    for t in targets:
        detail = "\n".join(f"{k}: {v}" for k, v in t.get("versions", {}).items())
        wrapper = t.get("handler_extra", {}).get("wrapper")
        if wrapper:
            detail += f"\nwrapper: {wrapper} (oom_score_adj clamp, call timing for the split level)"
        if not t["available"]:
            detail = t["reason"]
        table.add_row(t["target"], "yes" if t["available"] else "[red]no[/]", detail)
    Console().print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        run_dir = Path(args.results) / args.run
    try:
        print(build_report(run_dir))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hopbench", description="Measure Kubernetes container runtime stacks hop by hop.")
    p.add_argument("--version", action="version", version=f"hopbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    prov = sub.add_parser("provision", help="install and start the stacks on the nodes (ansible-playbook)")
    prov.add_argument("--inventory", "-i", help="Ansible inventory (default: ansible/inventories/local)")
    prov.add_argument("--playbook", default="site.yml", help="playbook in ansible/ (site.yml, reset.yml)")
    prov.add_argument("--extra-vars", "-e", action="append", default=[], help="passed to ansible-playbook -e")
    prov.set_defaults(fn=cmd_provision)

    run = sub.add_parser("run", help="run a scenario and write results/<run-id>/ with a report")
    run.add_argument("--scenario", "-s", default=DEFAULT_SCENARIO, help=f"scenario file (default {DEFAULT_SCENARIO})")
    run.add_argument("--results", default="results", help="results folder (default results/)")
    run.add_argument(
        "--inventory", "-i", help="Ansible inventory naming the nodes and their SSH settings (default: this machine)"
    )
    run.add_argument("--limit", "-l", action="append", default=[], help="only this inventory host (repeatable)")
    run.set_defaults(fn=cmd_run)

    tg = sub.add_parser("targets", help="list every stack/handler pair on the node, available or not and why")
    tg.add_argument("--json", action="store_true", help="machine-readable output")
    tg.set_defaults(fn=cmd_targets)

    rep = sub.add_parser("report", help="(re)build the HTML report of a run")
    rep.add_argument("run", help="run id or run folder")
    rep.add_argument("--results", default="results", help="results folder (default results/)")
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.fn(args))
