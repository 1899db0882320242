#!/usr/bin/env python3
"""Check CRI-O's own view of its configuration: every program it runs is named by absolute path.

Reads `crio status config` (the running daemon's effective configuration, after CRI-O merged its
built-in defaults and validated the handlers) from stdin, and prints one JSON object: the
handlers CRI-O serves with their runtime and monitor paths, pinns_path, the CNI plugin folders,
and `problems`, one sentence each: a handler hopbench does not offer, an offered one missing, or
a program named by bare name, by a relative path, or by a path that is not an executable file.
Exits 1 when there is a problem. Standard library only (tomllib: Python >= 3.11): it runs on
the node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib


def program_problem(field: str, value: str) -> str:
    """'' when `value` is an absolute path of an executable file, else what is wrong."""
    if not value:
        return f"{field} is empty: the program is looked up on PATH"
    if not os.path.isabs(value):
        return f"{field} = {value!r} is not an absolute path: it is looked up on PATH"
    if not (os.path.isfile(value) and os.access(value, os.X_OK)):
        return f"{field} = {value!r} is not an executable file"
    return ""


def check(config: dict, offered: set[str]) -> dict:
    runtime = config.get("crio", {}).get("runtime", {})
    handlers = runtime.get("runtimes", {})
    problems = []
    for name in sorted(set(handlers) - offered):
        problems.append(f"CRI-O serves handler {name!r}, which hopbench does not offer here")
    for name in sorted(offered - set(handlers)):
        problems.append(f"handler {name!r} is offered but CRI-O does not serve it (see crio.log)")
    out_handlers = {}
    for name, h in sorted(handlers.items()):
        out_handlers[name] = {"runtime_path": h.get("runtime_path", ""), "monitor_path": h.get("monitor_path", "")}
        for field in ("runtime_path", "monitor_path"):
            problem = program_problem(f"runtimes.{name}.{field}", h.get(field, ""))
            if problem:
                problems.append(problem)
    pinns = runtime.get("pinns_path", "")
    problem = program_problem("pinns_path", pinns)
    if problem:
        problems.append(problem)
    plugin_dirs = config.get("crio", {}).get("network", {}).get("plugin_dirs", [])
    for d in plugin_dirs:
        if not os.path.isabs(d):
            problems.append(f"network.plugin_dirs entry {d!r} is not an absolute path")
    return {"handlers": out_handlers, "pinns_path": pinns, "plugin_dirs": plugin_dirs, "problems": problems}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--offered", default="", help="comma-separated handlers hopbench offers on this node")
    args = p.parse_args(argv)
    config = tomllib.loads(sys.stdin.read())
    result = check(config, {h for h in args.offered.split(",") if h})
    print(json.dumps(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
