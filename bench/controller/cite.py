"""Citing a run: a stable citation block for report.md, and the decision-record section
(`hopbench report RUN --adr`) an architecture decision can paste.

The citation names everything a reader needs to find the run and to make it again: run id, date,
scenario and its sha256, the harness commit (and whether the tree was dirty), the node, every
target's exact component versions as the daemons reported them, and the commands: check out the
commit, set up, provision (the role defaults at that commit pin the versions), run the scenario.
Its lines depend only on meta.json, so the block of a run never changes between rebuilds.
"""

from __future__ import annotations

import shlex
from typing import Any

import pandas as pd

from bench.controller.headline import Headline


def _targets(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in meta.get("targets", []) if t.get("available")]


def citation(meta: dict[str, Any]) -> str:
    scen = meta.get("scenario", {})
    harness = meta.get("harness", {})
    node = meta.get("node_facts", {}) if isinstance(meta.get("node_facts"), dict) else {}
    commit = str(harness.get("commit") or "unknown")
    state = " (uncommitted changes: not reproducible from the commit alone)" if harness.get("dirty") else ""
    os_name = node.get("os", {}).get("PRETTY_NAME", "?") if isinstance(node.get("os"), dict) else "?"
    lines = [
        f"hopbench run {meta.get('run_id')}, {meta.get('started_at', '?')} to {meta.get('ended_at', '?')}, "
        f"status {meta.get('status', '?')}",
        f"scenario {scen.get('name', '?')} ({scen.get('path', '?')}), sha256 {scen.get('sha256', '?')}",
        f"harness hopbench {harness.get('version', '?')}, commit {commit}{state}",
        f"node {meta.get('node', '?')}: kernel {node.get('kernel', {}).get('release', '?')}, {os_name}, cgroups "
        f"{node.get('cgroups', {}).get('mode', '?')}, {node.get('cpu', {}).get('logical', '?')} CPUs",
    ]
    for t in _targets(meta):
        versions = "; ".join(f"{k} {v}" for k, v in sorted(t.get("versions", {}).items()))
        lines.append(f"target {t.get('target')}: {versions}")
    scenario_path = str(scen.get("path") or "scenarios/quick.yaml")
    lines += [
        "",
        "reproduce (on a node like the one above):",
        f"  git clone <the hopbench repository> hopbench && cd hopbench && git checkout {commit}",
        "  scripts/setup",
        "  .venv/bin/hopbench provision      # the role defaults at this commit pin the versions above",
        f"  .venv/bin/hopbench run --scenario {shlex.quote(scenario_path)}",
        f"  # the scenario's sha256 must be {scen.get('sha256', '?')}; its text is in meta.json",
    ]
    if meta.get("command"):
        lines.append(f"  # this run's own command: {meta['command']}")
    return "\n".join(lines)


def _md_table(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["_no figure_"]
    cols = [str(c) for c in frame.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return out


INTERLEAVED = " (each round ran every target in a shuffled order, so drift fell on all alike)"


def adr(meta: dict[str, Any], head: Headline) -> str:
    """The decision-record section: context, options, the evidence (headline sentences and table),
    and consequences left for the reader."""
    scen = meta.get("scenario", {})
    node = meta.get("node_facts", {}) if isinstance(meta.get("node_facts"), dict) else {}
    schedule = scen.get("schedule") or "block"
    lines = [
        f"## Container runtime stack: measured evidence (hopbench run {meta.get('run_id')})",
        "",
        "### Context",
        "",
        "Kubernetes nodes need a CRI runtime stack after dockershim. This record cites one hopbench run: "
        f"scenario **{scen.get('name', '?')}** ({str(scen.get('description', '')).strip() or 'no description'}) "
        f"on node {meta.get('node', '?')} (kernel {node.get('kernel', {}).get('release', '?')}, cgroups "
        f"{node.get('cgroups', {}).get('mode', '?')}, {node.get('cpu', {}).get('logical', '?')} CPUs), "
        f"{meta.get('started_at', '?')}. Targets ran on the same node with the same requests and images, "
        f"schedule {schedule}" + (INTERLEAVED if schedule == "interleaved" else "") + ". Intervals are 95%.",
        "",
        "### Options considered",
        "",
    ]
    for t in _targets(meta):
        versions = ", ".join(f"{k} {v}" for k, v in sorted(t.get("versions", {}).items()))
        lines.append(f"- **{t.get('target')}**: {versions}")
    if not _targets(meta):
        lines.append("- (no available target recorded in the run)")
    lines += ["", "### Evidence", ""]
    lines += [f"- {s}" for s in head.sentences] or ["- The run has no pod lifecycle at level cri: no headline."]
    lines += ["", *_md_table(head.table()), ""]
    lines += [
        "### Consequences",
        "",
        "_Left for the deciding team: the figures above are latency and memory on one node; they do not weigh "
        "operational fit (tooling, upgrades, support windows of each version), isolation needs (gVisor, Kata), "
        "or how much of a pod's start-up these milliseconds are next to image pulls and application start._",
        "",
        "### Citation",
        "",
        "```",
        citation(meta),
        "```",
        "",
    ]
    return "\n".join(lines)
