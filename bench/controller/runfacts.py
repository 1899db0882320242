"""What a reader must know of the run itself, around the analyses: the header, what went wrong
and when, what a crash left behind, the workload checks, and at the end the method, targets,
environment, scenario, citation and the command that reproduces it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bench.controller import cite, headline
from bench.controller.render import Bullets, Para, Pre, Section, Table
from bench.controller.run import Run
from bench.controller.view import View

METHOD = (
    "Each op is timed on the node with the monotonic clock around one call, nothing else inside the interval: "
    "a CRI gRPC call (levels `cri`, `split`, `density`), a Docker Engine API request (`engine`), a containerd "
    "API call (`containerd`) or one run of the OCI runtime binary (`oci`). The requests are those kubelet sends "
    "for an ordinary BestEffort pod (`bench/node/kubelet.py`). Warm-up lifecycles are kept in the data and "
    "excluded from the statistics; failed calls are counted, not timed; no outlier is removed. p50 intervals are "
    "distribution-free (binomial order statistics; missing bounds mean too few samples); hop costs, ratios and "
    "memory slopes use percentile bootstraps; run comparisons add a Mann-Whitney U test. Samples of level `cli` "
    "are whole commands timed by hyperfine (its warm-up runs are not kept); their `start_ns` is the start of the "
    "hyperfine invocation, not of each run."
)


def header_sections(run: Run) -> list[Section]:
    meta, checks = run.meta, run.checks
    scen = meta.get("scenario", {})
    passed = sum(1 for c in checks if c.get("ok"))
    failed = [c for c in checks if not c.get("ok")]
    status = str(meta.get("status"))
    intro = Section(
        "",
        [
            Para(
                f"Scenario **{scen.get('name', '?')}** (sha256 `{str(scen.get('sha256', ''))[:16]}`) on node(s) "
                f"**{meta.get('node', '?')}**, {meta.get('started_at', '?')} → {meta.get('ended_at', '?')}, "
                f"status **{status}**. {passed} workload checks passed, {len(failed)} failed."
            )
        ],
        summary=True,
    )
    if scen.get("description"):
        intro.blocks.append(Para(str(scen["description"])))
    if run.emulated:
        intro.blocks.insert(0, Para(headline.emulated_sentence(run.emulated)))
    return [intro]


def checks_sections(run: Run) -> list[Section]:
    """Whether each lifecycle's workload really ran: after the headline, before the details."""
    checks = run.checks
    passed = sum(1 for c in checks if c.get("ok"))
    failed = [c for c in checks if not c.get("ok")]
    verdict = Section(
        "Workload checks",
        [
            Para(
                f"{passed} lifecycles verified (the container running with its ready line, then exited 0 with its "
                f"stop line after the stop op); {len(failed)} failed.",
                "bad" if failed else "ok",
            )
        ],
    )
    if failed:
        verdict.blocks.append(Bullets([json.dumps(c) for c in failed[:20]]))
    return [verdict]


def _when(event: dict[str, Any], meta: dict[str, Any]) -> str:
    """When the controller heard of an event: UTC time and seconds into the run ('' when unknown)."""
    at = event.get("wall_time")
    if not isinstance(at, int | float):
        return ""
    clock = dt.datetime.fromtimestamp(at, dt.UTC)
    try:
        into = f" (+{at - dt.datetime.fromisoformat(str(meta.get('started_at'))).timestamp():.0f} s)"
    except ValueError:
        into = ""
    return f"{clock:%H:%M:%S}{into}"


def failure_sections(
    meta: dict[str, Any], events: list[dict[str, Any]], checks: Sequence[dict[str, Any]] = ()
) -> list[Section]:
    """What went wrong during the run, and when: each error (a target abandoned, a level that could
    not open or close, a node lost), each failed lifecycle (a warning naming its target) and each
    failed workload check (every op answered ok, but the container did not do what they said: a
    StopContainer that returned while the shim was dead left it running), first in the summary, so
    a number is never read without it."""
    wrong = [e for e in events if e.get("event") == "error" or (e.get("event") == "warning" and e.get("target"))]
    failed_checks = [c for c in checks if not c.get("ok")]
    if not wrong and not failed_checks:
        return []
    rows = pd.DataFrame(
        [
            {
                "when (UTC)": _when(e, meta),
                "node": e.get("node", ""),
                "target": e.get("target", "") or "-",
                "what": ("" if e.get("event") == "error" else "lifecycle failed: ") + str(e.get("message", "")),
            }
            for e in wrong[:100]
        ]
        + [
            {
                "when (UTC)": "",
                "node": c.get("node", ""),
                "target": c.get("target", "") or "-",
                "what": f"check failed: {c.get('target', '')} {c.get('level', '')} iteration {c.get('iteration', '?')} "
                f"at {c.get('concurrency', '?')} in flight, {c.get('check', '')}: {c.get('detail', '')}",
            }
            for c in failed_checks[:100]
        ]
    )
    errors = sum(e.get("event") == "error" for e in wrong)
    hit = sorted({str(e.get("target")) for e in [*wrong, *failed_checks] if e.get("target")})
    say = (
        f"{errors} error(s), {len(wrong) - errors} failed lifecycle(s) and {len(failed_checks)} failed workload "
        f"check(s) during the run, on {', '.join(hit) or 'the node'}. A failed lifecycle has no figure; a failed "
        "check's lifecycle has figures for ops that answered ok without doing their work (see Workload checks); an "
        "abandoned target's figures stop where it was abandoned (every sample taken before is kept); the other "
        "targets ran to the end."
    )
    return [Section("What went wrong, and when", [Para(say, "bad"), Table(rows)], summary=True)]


CRASH_LEFTOVER = "left behind by a crash"


def crash_leftover_sections(meta: dict[str, Any], events: list[dict[str, Any]]) -> list[Section]:
    """Shims and conmons an earlier crash left running, which the sweep removed before this run
    measured (bench.node.targets.remove_orphan_monitors): a reader should know the node was
    cleaned, and what the daemon's log said of each."""
    found = [e for e in events if e.get("event") == "warning" and CRASH_LEFTOVER in str(e.get("message", ""))]
    if not found:
        return []
    rows = pd.DataFrame(
        [{"when (UTC)": _when(e, meta), "node": e.get("node", ""), "what": str(e.get("message", ""))} for e in found]
    )
    say = (
        f"{len(found)} monitor process(es) left behind by a crash of an earlier run's daemon were found and "
        "removed before measuring; none of this run's samples includes them."
    )
    return [Section("Left behind by a crash, removed before the run", [Para(say), Table(rows)], summary=True)]


def closing_sections(run: Run) -> list[Section]:
    meta, events = run.meta, run.problems
    node = meta.get("node_facts", {})
    scen = meta.get("scenario", {})
    harness = meta.get("harness", {})
    os_name = node.get("os", {}).get("PRETTY_NAME") if isinstance(node.get("os"), dict) else None
    memory_gib = float(node.get("memory", {}).get("total_bytes", 0) or 0) / 2**30
    targets = pd.DataFrame(
        [
            {
                "target": t["target"],
                "available": "yes" if t["available"] else "no",
                "versions / reason": t.get("reason")
                or "; ".join(f"{k}: {v}" for k, v in t.get("versions", {}).items()),
            }
            for t in meta.get("targets", [])
        ]
    )
    env = {
        "harness": harness,
        "kernel": node.get("kernel"),
        "os": os_name,
        "cpu": node.get("cpu"),
        "memory": node.get("memory"),
        "cgroups": node.get("cgroups"),
        "capabilities": node.get("capabilities"),
        "init": node.get("init"),
        "stack conditions (cgroup driver, OCI wrapper, oom_score_adj clamp)": node.get("stacks"),
        # Debian packages on the node; the targets may run other builds (see Targets for their versions).
        "distribution packages (targets: see their versions)": node.get("packages"),
        "loadavg at start": node.get("loadavg"),
    }
    facts = [
        f"kernel {node.get('kernel', {}).get('release', '?')}, {os_name or '?'}, cgroups "
        f"{node.get('cgroups', {}).get('mode', '?')}, init {node.get('init', '?')}, "
        f"{node.get('cpu', {}).get('logical', '?')} CPUs "
        f"({node.get('cpu', {}).get('model', '?')}), memory {memory_gib:.1f} GiB",
        f"hopbench {harness.get('version', '?')}, commit {harness.get('commit')}"
        f"{' (dirty)' if harness.get('dirty') else ''}",
    ]
    conditions = node.get("stacks") or {}
    for t in meta.get("targets", []):
        if t.get("available"):
            versions = "; ".join(f"{k} {v}" for k, v in t.get("versions", {}).items())
            c = conditions.get(t["target"].split("/")[0]) or {}
            how = ""
            if c:
                wrapper = (
                    "OCI wrapper in the timed path"
                    + (", clamping oom_score_adj" if c.get("oom_score_adj_clamped") else "")
                    if c.get("oci_wrapper_in_timed_path", True)
                    else "no OCI wrapper in the timed path"
                )
                if t["target"].split("/")[-1] in (c.get("shim_adapter_in_timed_path") or []):
                    wrapper += "; its shim started through hopbench's adapter (tools/crioshim)"
                how = f" (cgroup driver {c['cgroup_driver']}; {wrapper})"
            facts.append(f"{t.get('node', meta.get('node'))} {t['target']}: {versions}{how}")
    out = [
        Section("Method", [Para(METHOD)], summary=True),
        Section("Targets", [Table(targets)] if not targets.empty else [Para("No target.")]),
        Section("Environment", [Bullets(facts)], summary=True),
        Section("Environment in full", [Pre(json.dumps(env, indent=2, default=str))], level=3),
        Section(
            "Scenario",
            [Para(f"{scen.get('path', '')}, sha256 {scen.get('sha256', '')}"), Pre(str(meta.get("scenario_text", "")))],
        ),
        Section("Citation", [Pre(cite.citation(meta))], summary=True),
        Section("Reproduce", [Pre(str(meta.get("command", "")))], summary=True),
    ]
    if events:
        items = [f"{_when(ev, meta)} {ev.get('event', '')}: {ev.get('message', '')}" for ev in events[:200]]
        out.append(Section("Warnings and errors", [Bullets(items)]))
    return out


HEADER = View("header", header_sections)
FAILURES = View("failures", lambda run: failure_sections(run.meta, run.problems, run.checks))
LEFTOVERS = View("crash leftovers", lambda run: crash_leftover_sections(run.meta, run.problems))
CHECKS = View("workload checks", checks_sections)
CLOSING = View("method and environment", closing_sections)
