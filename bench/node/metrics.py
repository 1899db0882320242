"""The daemons' own clocks: their Prometheus counters read before and after each burst of lifecycles.

Each stack instance may describe a metrics endpoint on loopback (`metrics.url`, written by its
role): containerd's `[metrics] address` with `grpc_histogram` (grpc_server_handling_seconds per
gRPC method: every CRI call and every call of containerd's own API), CRI-O's metrics server
(container_runtime_crio_operations_latency_seconds_total per operation), dockerd's `metrics-addr`
(engine_daemon_container_actions_seconds per container action). cri-dockerd serves none.

The schedule reads a stack's counters right before and right after each burst (untimed, between
lifecycles), so a delta belongs to exactly one level on one target; the deltas add up per
level and target into the artifact `daemon-metrics/<group>.json`: per call, how many the daemon
served and the seconds it spent, which the report sets beside the client's times.
Standard library only: this runs on the node.
"""

from __future__ import annotations

import http.client
import re
import threading
import urllib.parse
from typing import Any

from bench import stacks

Labels = frozenset[tuple[str, str]]
Metrics = dict[tuple[str, Labels], float]

LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

# Per daemon: the (histogram or summary family, the label naming the call, a label naming its
# service or "") it times calls with; a call is "service/call" where there is a service.
FAMILIES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "containerd": (("grpc_server_handling_seconds", "grpc_method", "grpc_service"),),
    "crio": (("container_runtime_crio_operations_latency_seconds_total", "operation", ""),),
    "dockerd": (("engine_daemon_container_actions_seconds", "action", ""),),
}
# What each daemon's figures cover, for the report.
COVERS = {
    "containerd": "every gRPC call it serves, CRI and its own API (grpc_server_handling_seconds, by method)",
    "crio": "every CRI operation (container_runtime_crio_operations_latency_seconds_total, by operation)",
    "dockerd": "container actions of the Engine API: create, start, delete... "
    "(engine_daemon_container_actions_seconds); cri-dockerd, the CRI server of this stack, has no metrics",
}


def parse_prometheus(text: str, only: tuple[str, ...] = ()) -> Metrics:
    """Prometheus text exposition: (metric name, labels) -> value. Comments and bad lines are
    skipped, and with `only` every line not starting with one of those names (a daemon's scrape
    is thousands of lines; the schedule reads two around every burst)."""
    out: Metrics = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or (only and not line.startswith(only)):
            continue
        m = LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out[(m.group(1), frozenset(LABEL.findall(m.group(3) or "")))] = value
    return out


def calls(metrics: Metrics, daemon: str) -> dict[str, tuple[float, float]]:
    """{call: (count, seconds)} from a daemon's scrape, by the families it times calls with."""
    out: dict[str, tuple[float, float]] = {}
    for family, label, service in FAMILIES.get(daemon, ()):
        for (name, labels), value in metrics.items():
            if name not in (family + "_count", family + "_sum"):
                continue
            found = dict(labels)
            key = found.get(label)
            if not key:
                continue
            if service and found.get(service):
                key = f"{found[service]}/{key}"
            count, total = out.get(key, (0.0, 0.0))
            out[key] = (count + value, total) if name.endswith("_count") else (count, total + value)
    return out


def scrape(url: str, timeout_s: float = 5.0) -> str:
    """GET a loopback metrics URL (anything else is refused: the daemons listen on loopback only)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost", "::1") or not u.port:
        raise ValueError(f"metrics URL {url!r}: expected http://127.0.0.1:PORT/PATH")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
    try:
        conn.request("GET", u.path or "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"GET {url}: HTTP {resp.status}")
        return body.decode(errors="replace")
    finally:
        conn.close()


class Clocks:
    """The counters of every stack of a group of levels, read around each burst and added up per level."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[tuple[str, str, str], dict[str, list[float]]] = {}
        self.client: dict[tuple[str, str, str], dict[str, list[float]]] = {}
        self.where: dict[str, tuple[str, str]] = {}  # stack -> (daemon, url)
        self.errors: dict[str, str] = {}

    def add_stack(self, stack: stacks.Stack) -> None:
        desc = stack.extra.get("metrics") or {}
        url, daemon = str(desc.get("url") or ""), str(desc.get("daemon") or "")
        if url and daemon in FAMILIES:
            self.where[stack.name] = (daemon, url)

    def read(self, stack: str) -> dict[str, tuple[float, float]] | None:
        if stack not in self.where or stack in self.errors:
            return None
        daemon, url = self.where[stack]
        try:
            wanted = tuple(f"{f[0]}_{part}" for f in FAMILIES[daemon] for part in ("sum", "count"))
            return calls(parse_prometheus(scrape(url), wanted), daemon)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.errors[stack] = f"{type(exc).__name__}: {exc}"
            return None

    def add(
        self, key: tuple[str, str, str], before: dict[str, tuple[float, float]] | None, after: Any, client: bool = False
    ) -> None:
        """Add the growth between two reads to (stack, handler, level): the daemon's, or with
        `client` the level's own call log."""
        if before is None or after is None:
            return
        with self.lock:
            acc = (self.client if client else self.totals).setdefault(key, {})
            for call, (count, total) in after.items():
                c0, t0 = before.get(call, (0.0, 0.0))
                if count - c0 > 0:
                    slot = acc.setdefault(call, [0.0, 0.0])
                    slot[0] += count - c0
                    slot[1] += total - t0

    def report(self) -> list[dict[str, Any]]:
        out = []
        for (stack, handler, level), acc in sorted(self.totals.items()):
            daemon, url = self.where.get(stack, ("", ""))
            out.append(
                {
                    "stack": stack,
                    "handler": handler,
                    "level": level,
                    "daemon": daemon,
                    "url": url,
                    "covers": COVERS.get(daemon, ""),
                    "calls": {k: {"count": v[0], "seconds": v[1]} for k, v in sorted(acc.items())},
                    "client_calls": {
                        k: {"count": v[0], "seconds": v[1]}
                        for k, v in sorted(self.client.get((stack, handler, level), {}).items())
                    },
                }
            )
        return out
