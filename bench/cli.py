"""hopbench command line: provision, run, report."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import __version__
from bench.errors import HopbenchError, InputError

DEFAULT_SCENARIO = "scenarios/quick.yaml"
CROSSCHECK_SCENARIO = "scenarios/crosscheck.yaml"


def cmd_provision(args: argparse.Namespace) -> int:
    from bench.controller import extravars
    from bench.controller.runner import REPO, run_playbook

    ansible_dir = REPO / "ansible"
    playbooks = sorted(p.name for p in ansible_dir.glob("*.yml"))
    if args.playbook not in playbooks:
        raise InputError(f"--playbook {args.playbook!r}: expected a playbook of {ansible_dir}: {', '.join(playbooks)}")
    if args.inventory and not Path(args.inventory).exists():
        raise InputError(f"--inventory {args.inventory}: no such inventory file or folder")
    extravars.check(args.extra_vars, ansible_dir)
    inventory = str(Path(args.inventory).resolve()) if args.inventory else None  # ansible runs in ansible/
    extra = [arg for ev in args.extra_vars for arg in ("-e", ev)]
    return run_playbook(args.playbook, inventory, extra)


def transports_for(args: argparse.Namespace) -> list[Any]:
    """The nodes to run on: the inventory's hosts (--limit keeps some), or this machine alone."""
    from bench.controller.transport.local import LocalTransport

    if not args.inventory:
        return [LocalTransport()]
    from bench.controller import inventory
    from bench.controller.transport.ssh import SSHTransport

    nodes = inventory.load(args.inventory, args.limit or None)
    return [
        LocalTransport(n.name) if n.connection == "local" else SSHTransport(n, idle_timeout_s=n.idle_timeout_s)
        for n in nodes
    ]


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.controller import runner
    from bench.scenario import load_scenario

    # A wide table even when stderr is not a terminal (CI logs, nightly mails).
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    scenario = load_scenario(args.scenario)
    transports = transports_for(args)
    result = runner.execute(
        scenario,
        transports,
        Path(args.results),
        console,
        command=shlex.join(["hopbench", *sys.argv[1:]]),
        build_report=not args.no_report,
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

    from bench.controller.runner import list_targets
    from bench.controller.transport.local import LocalTransport

    targets = list_targets(LocalTransport())
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


RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _results_root(results: str) -> Path:
    """--results of a command that reads runs: an existing folder."""
    root = Path(results)
    if not root.is_dir():
        raise InputError(f"--results {results}: no such folder (where `hopbench run --results` wrote its runs)")
    return root


def _run_dir(run: str, results: str) -> Path:
    """A run given as its folder, or as its id under --results (an id is a name, never a path)."""
    run_dir = Path(run)
    if run_dir.is_dir():
        return run_dir
    if not RUN_ID.match(run):
        raise InputError(f"run {run!r}: expected a run folder or a run id (letters, digits, '.', '_', '-')")
    run_dir = _results_root(results) / run
    if not run_dir.is_dir():
        raise InputError(f"run {run!r}: no such run in {results}/ (`hopbench runs --results {results}` lists them)")
    return run_dir


def _in_range(flag: str, value: float, lo: float, hi: float, closed: bool = True) -> float:
    """A number flag within [lo, hi] (or (lo, hi) when not `closed`), finite."""
    inside = lo <= value <= hi if closed else lo < value < hi
    if not inside:  # NaN is never inside
        brackets = "[]" if closed else "()"
        raise InputError(f"{flag} {value:g}: expected a number in {brackets[0]}{lo:g}, {hi:g}{brackets[1]}")
    return value


def cmd_report(args: argparse.Namespace) -> int:
    from bench.controller.report import build_report

    run_dir = _run_dir(args.run, args.results)
    print(build_report(run_dir, adr=args.adr))
    if args.adr:
        print(run_dir / "adr.md")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.controller import export

    for path in export.write(_run_dir(args.run, args.results), args.format, Path(args.out) if args.out else None):
        print(path)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from bench.controller import importer

    versions = importer.parse_versions(args.version)
    if args.endpoint:
        versions = {**importer.daemon_versions(args.endpoint), **versions}
    run_dir = importer.import_critest(
        Path(args.dir),
        Path(args.results),
        args.stack,
        args.handler,
        args.node,
        versions,
        command=shlex.join(["hopbench", *sys.argv[1:]]),
    )
    print(run_dir)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from bench.controller import doctor

    console = Console(width=None if sys.stdout.isatty() else 160)
    every = {}
    for transport in transports_for(args):
        facts = doctor.gather(transport)
        found = doctor.findings(facts)
        every[transport.node] = {"facts": facts, "findings": [f.__dict__ for f in found]}
        if args.json:
            continue
        table = Table(title=f"node {transport.node}")
        for col in ("check", "node has", "", "what it means for a run"):
            table.add_column(col)
        for f in found:
            table.add_row(f.check, f.have, "ok" if f.ok else "[yellow]gap[/]", f.consequence)
        console.print(table)
    if args.json:
        print(json.dumps(every, indent=2, sort_keys=True))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from bench.controller.history import list_runs

    runs = list_runs(_results_root(args.results))
    table = Table(title=f"runs in {args.results}/")
    for col in ("run_id", "scenario", "node", "status", "started_at", "samples"):
        table.add_column(col)
    for r in runs.itertuples():
        table.add_row(r.run_id, r.scenario, r.node, r.status, r.started_at, str(r.samples))
    Console().print(table)
    return 0


def _num(value: Any, fmt: str) -> str:
    """A figure for a table; '–' for a missing one (JSON null, NaN), '∞' for an open bound."""
    if value is None or value != value:
        return "–"
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "-∞"
    return format(value, fmt)


def _verdict_table(title: str, frame: Any) -> Any:
    from rich.table import Table

    table = Table(title=title)
    cols = ["target", "level", "conc", "op", "n A", "n B", "p50 A", "p50 B", "B/A [95% CI]", "p", "verdict"]
    relative = "ratio_vs_control" in frame
    if relative:
        cols.insert(9, "B/A / control")
    for col in cols:
        table.add_column(col, justify="left" if col in ("target", "level", "op", "verdict") else "right")
    colour = {"regression": "red", "improvement": "green"}
    for r in frame.itertuples():
        v = str(r.verdict)
        cells = [
            f"{r.stack}/{r.handler}",
            str(r.level),
            str(r.concurrency),
            str(r.op),
            str(r.n_a),
            str(r.n_b),
            _num(r.p50_a_ms, ".1f"),
            _num(r.p50_b_ms, ".1f"),
            f"{_num(r.ratio, '.3f')} [{_num(r.ratio_lo, '.3f')}, {_num(r.ratio_hi, '.3f')}]",
            _num(r.p_value, ".3g"),
            f"[{colour[v]}]{v}[/]" if v in colour else v,
        ]
        if relative:
            cells.insert(9, _num(r.ratio_vs_control, ".3f"))
        table.add_row(*cells)
    return table


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.controller.history import compare_dirs

    _in_range("--threshold", args.threshold, 0, 1000)
    _in_range("--alpha", args.alpha, 0, 1, closed=False)
    from bench.controller.run import Run

    a, b = Run(_run_dir(args.run_a, args.results)), Run(_run_dir(args.run_b, args.results))
    frame = compare_dirs(a, b, args.threshold / 100, args.alpha, args.across_versions)
    if frame.empty:
        hint = "" if args.across_versions else " (targets name their versions: --across-versions matches them by stack)"
        print(f"error: the two runs have no target/level/op/concurrency in common{hint}", file=sys.stderr)
        return 2
    from bench.controller import control

    idx = control.index(a.control, b.control)
    frame = control.relative(frame, idx)
    title = f"B = {b.path.name} against A = {a.path.name} (threshold {args.threshold:g}%, alpha {args.alpha:g})"
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(_verdict_table(title, frame))
    console.print(control.sentence(idx, f"A ({a.path.name})", f"B ({b.path.name})"))
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    """Run the nightly scenario, compare it with the history, report; exit 3 on a regression."""
    from rich.console import Console

    from bench.controller import runner
    from bench.controller.history import nightly_check
    from bench.controller.report import build_report
    from bench.controller.run import Run
    from bench.scenario import load_scenario

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    scenario = load_scenario(args.scenario)
    transports = transports_for(args)
    result = runner.execute(
        scenario, transports, Path(args.results), console, command=shlex.join(["hopbench", *sys.argv[1:]])
    )
    if result.store.meta.get("status") != "complete":
        console.print(f"[red]nightly run {result.store.meta.get('status')}: {result.dir}[/]")
        return 1
    reg = scenario.regression
    run = Run(result.dir)  # loaded once: the gate and the report read the same samples
    check = nightly_check(run, Path(args.results), reg.history, reg.threshold_pct / 100, reg.alpha)
    print(build_report(run))
    if not check["baseline_runs"]:
        console.print("no earlier complete run of this scenario on this node: tonight's run becomes the baseline")
        return 0
    import pandas as pd

    rows = pd.DataFrame(check["rows"])
    quiet = ["no clear change", "clear but small", "too few nights"]
    flagged = rows[~rows["verdict"].isin(quiet)] if not rows.empty else rows
    base = f"{len(check['baseline_runs'])} earlier run(s)"
    if not flagged.empty:
        console.print(_verdict_table(f"{result.dir.name} against {base}", flagged))
    if check.get("control_sentence"):
        console.print(check["control_sentence"])
    console.print(
        f"{check['regressions']} regression(s), {check['improvements']} improvement(s) against {base} "
        f"(threshold {reg.threshold_pct:g}%, alpha {reg.alpha:g})"
    )
    return 3 if check["regressions"] else 0


def cmd_lab(args: argparse.Namespace) -> int:
    from bench.controller import lab, lab_vm

    if args.action == "up" and args.vm:
        lab.up_vm(args.release or lab_vm.DEFAULT_RELEASE, log=lambda m: print(m, file=sys.stderr))
        print(lab.inventory_dir())
    elif args.action == "up":
        lab.up(
            args.nodes,
            args.release or "bookworm",
            log=lambda m: print(m, file=sys.stderr),
            controller_caches=args.controller_caches,
        )
        print(lab.inventory_dir())
    elif args.action == "status":
        rows = lab.status()
        if not rows:
            print("no lab")
        for row in rows:
            print(f"{row['node']:8} {row['address']:15} {row['state']}")
    elif args.action == "down":
        lab.down(log=lambda m: print(m, file=sys.stderr))
    else:
        if not args.node:
            raise InputError(f"lab {args.action}: expected a node name (lab status lists them)")
        if args.action == "poweroff":
            lab.poweroff(args.node, cut=args.cut)
        else:
            lab.reboot(args.node)
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

    for name, scenario, text in (
        ("run", DEFAULT_SCENARIO, "run a scenario and write results/<run-id>/ with a report"),
        (
            "crosscheck",
            CROSSCHECK_SCENARIO,
            "run critest, hopbench with critest's requests and with kubelet's, interleaved on every stack, "
            "with the daemons' own clocks and the null CRI server: the report's crosscheck section",
        ),
    ):
        run = sub.add_parser(name, help=text)
        run.add_argument("--scenario", "-s", default=scenario, help=f"scenario file (default {scenario})")
        run.add_argument("--results", default="results", help="results folder (default results/)")
        run.add_argument(
            "--inventory",
            "-i",
            help="Ansible inventory naming the nodes and their SSH settings (default: this machine)",
        )
        run.add_argument("--limit", "-l", action="append", default=[], help="only this inventory host (repeatable)")
        run.add_argument(
            "--no-report",
            action="store_true",
            help="skip report.html/report.md (`hopbench report RUN` builds them later): soaks and loops",
        )
        run.set_defaults(fn=cmd_run)

    tg = sub.add_parser("targets", help="list every stack/handler pair on the node, available or not and why")
    tg.add_argument("--json", action="store_true", help="machine-readable output")
    tg.set_defaults(fn=cmd_targets)

    dr = sub.add_parser("doctor", help="per node: what the stacks need, what the node has, what each gap means")
    dr.add_argument("--inventory", "-i", help="Ansible inventory of the nodes (default: this machine)")
    dr.add_argument("--limit", "-l", action="append", default=[], help="only this inventory host (repeatable)")
    dr.add_argument("--json", action="store_true", help="the facts and findings as JSON")
    dr.set_defaults(fn=cmd_doctor)

    rep = sub.add_parser("report", help="(re)build the HTML report and Markdown summary of a run")
    rep.add_argument("run", help="run id or run folder")
    rep.add_argument("--results", default="results", help="results folder (default results/)")
    rep.add_argument(
        "--adr", action="store_true", help="also write adr.md: the decision-record section (context, options, evidence)"
    )
    rep.set_defaults(fn=cmd_report)

    ex = sub.add_parser(
        "export",
        help="write a run in another tool's format: OpenMetrics (Prometheus, node_exporter textfile), "
        "kube-burner's latency documents (Elasticsearch/OpenSearch), clusterloader2 PerfData (Perfdash), CSV",
    )
    ex.add_argument("run", help="run id or run folder")
    ex.add_argument("--format", "-f", required=True, choices=["openmetrics", "kube-burner", "perfdata", "csv"])
    ex.add_argument("--out", "-o", help="output file (a folder for perfdata; default: in the run folder)")
    ex.add_argument("--results", default="results", help="results folder (default results/)")
    ex.set_defaults(fn=cmd_export)

    im = sub.add_parser("import", help="turn another tool's results into a hopbench run (critest -benchmark's JSON)")
    im.add_argument("tool", choices=["critest"], help="the tool that wrote the results")
    im.add_argument("dir", help="critest's -benchmarking-output-dir (pod_/container_benchmark_data.json)")
    im.add_argument("--stack", required=True, help="the stack critest ran against, e.g. containerd@2.4.2")
    im.add_argument("--handler", default="runc", help="the runtime handler critest used (default runc)")
    im.add_argument("--node", default="local", help="the node critest ran on (default local)")
    im.add_argument("--version", action="append", default=[], help="a component's version, name=value (repeatable)")
    im.add_argument("--endpoint", help="read the runtime's version from this CRI socket (unix:///...)")
    im.add_argument("--results", default="results", help="results folder (default results/)")
    im.set_defaults(fn=cmd_import)

    rs = sub.add_parser("runs", help="list the runs under the results folder")
    rs.add_argument("--results", default="results", help="results folder (default results/)")
    rs.set_defaults(fn=cmd_runs)

    cmp = sub.add_parser("compare", help="compare two runs target by target and op by op (B against A)")
    cmp.add_argument("run_a", help="baseline run id or folder")
    cmp.add_argument("run_b", help="candidate run id or folder")
    cmp.add_argument("--results", default="results", help="results folder (default results/)")
    cmp.add_argument("--threshold", type=float, default=10.0, help="percent change that counts (default 10)")
    cmp.add_argument("--alpha", type=float, default=0.05, help="Mann-Whitney significance level (default 0.05)")
    cmp.add_argument(
        "--across-versions",
        action="store_true",
        help="match targets by stack, not by stack version (containerd@1.6.20 in A against containerd@2.4.2 in B)",
    )
    cmp.set_defaults(fn=cmd_compare)

    lb = sub.add_parser(
        "lab",
        help="pristine Debian lab nodes on this machine, systemd as PID 1, reached over SSH "
        "(inventory ansible/inventories/lab)",
    )
    lb.add_argument("action", choices=["up", "status", "down", "poweroff", "reboot"])
    lb.add_argument("node", nargs="?", help="the node to power off or reboot (lab1, ...)")
    lb.add_argument("--nodes", "-n", type=int, default=1, help="lab up: how many nodes (default 1)")
    lb.add_argument(
        "--release",
        default=None,
        help="lab up: Debian release, bookworm or trixie (default bookworm; trixie with --vm)",
    )
    lb.add_argument(
        "--vm",
        action="store_true",
        help="lab up: a VM node (QEMU, Debian's own kernel: cgroup v2, full root), vm1; KVM where a standard guest "
        "boots, emulated (TCG) otherwise, and then its figures are labelled not for comparison",
    )
    lb.add_argument(
        "--cut",
        action="store_true",
        help="lab poweroff: a power cut, not the power button: the node's link drops first, then every process "
        "is killed at once, so its peers hear nothing more from it",
    )
    lb.add_argument(
        "--controller-caches",
        action="store_true",
        help="lab up: new nodes read the controller's build, download and wheel caches (read-only, own upper "
        "layer) and pip uses only those wheels: README command 1 in a pristine node within CI's time",
    )
    lb.set_defaults(fn=cmd_lab)

    ng = sub.add_parser("nightly", help="run the nightly scenario, compare with the history; exit 3 on a regression")
    ng.add_argument(
        "--scenario", "-s", default="scenarios/nightly.yaml", help="scenario (default scenarios/nightly.yaml)"
    )
    ng.add_argument("--results", default="results", help="results folder (default results/)")
    ng.add_argument("--inventory", "-i", help="Ansible inventory of the nodes (default: this machine)")
    ng.add_argument("--limit", "-l", action="append", default=[], help="only this inventory host (repeatable)")
    ng.set_defaults(fn=cmd_nightly)
    return p


def main(argv: list[str] | None = None) -> int:
    """Every error hopbench explains (HopbenchError) is its message and exit status 2; others are bugs."""
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except HopbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
