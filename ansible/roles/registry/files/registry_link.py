#!/usr/bin/env python3
"""The registry host's link: a network namespace of its own, joined to the node by a veth pair,
and the link's shape. Idempotent: prints one JSON object (changed, shape, what it did).

    registry_link.py --netns hb-registry --link hb-reg0 --host-link eth0 \
        --node-address 172.30.130.1/30 --host-address 172.30.130.2/30 [--rate 1gbit] [--rtt-ms 5]
    registry_link.py --netns hb-registry --link hb-reg0 --host-link eth0 --shape-only --rate 10gbit
    registry_link.py --netns hb-registry --link hb-reg0 --remove

`--shape-only` changes the shape of a link that exists and nothing else: the agent runs it between
rounds when a scenario names link shapes (section pull, `links`).

The shape is set on both ends (a packet is shaped whichever way it goes): a rate with tbf, a
delay of half the round trip each way with netem. A kernel without sch_netem cannot add delay:
asking for it then fails and says so (this machine's kernel has tbf and htb, not netem).

Standard library only: it runs on the node, with the node's python3. No shell: every command is
an argv list.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"registry_link: {' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def rate_bits(rate: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?bit)", rate.strip().lower())
    if not m:
        raise SystemExit(f"registry_link: rate {rate!r}: expected a number and a unit (bit, kbit, mbit, gbit, tbit)")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def qdisc_args(rate: str, rtt_ms: float) -> list[str]:
    """The root qdisc for a shape: netem when there is a delay (it also takes the rate), else tbf."""
    if rtt_ms > 0:
        args = ["netem", "delay", f"{rtt_ms / 2:g}ms"]
        if rate:
            args += ["rate", rate]
        # netem's default queue (1000 packets) drops at 10 Gbit/s with a few ms of delay.
        return [*args, "limit", "100000"]
    bits = rate_bits(rate)
    # A burst of 10 ms at the rate (at least 64 KiB): below rate/HZ tbf cannot reach its rate.
    burst = max(bits // 8 // 100, 65536)
    return ["tbf", "rate", rate, "burst", str(burst), "latency", "50ms"]


def root_qdisc(netns: str | None, dev: str) -> dict:
    argv = ["tc", *(["-n", netns] if netns else []), "-j", "qdisc", "show", "dev", dev]
    for q in json.loads(run(argv).stdout or "[]"):
        if q.get("root"):
            return q
    return {}


def shape_end(netns: str | None, dev: str, rate: str, rtt_ms: float, did: list[str]) -> None:
    tc = ["tc", *(["-n", netns] if netns else [])]
    current = root_qdisc(netns, dev).get("kind", "")
    if not rate and rtt_ms <= 0:
        if current in ("netem", "tbf"):
            run([*tc, "qdisc", "del", "dev", dev, "root"])
            did.append(f"removed the {current} shape of {dev}")
        return
    want = qdisc_args(rate, rtt_ms)
    proc = run([*tc, "qdisc", "replace", "dev", dev, "root", *want], check=False)
    if proc.returncode != 0:
        if want[0] == "netem" and "unknown" in proc.stderr.lower():
            raise SystemExit(
                f"registry_link: the link cannot get a {rtt_ms:g} ms round trip: this kernel has no sch_netem"
                " (tc: 'Specified qdisc kind is unknown'); shape the rate alone (rtt_ms 0) or use a kernel with netem"
            )
        raise SystemExit(f"registry_link: tc qdisc replace dev {dev} root {' '.join(want)}: {proc.stderr.strip()}")
    did.append(f"{dev}: {' '.join(want)}")


def up(args: argparse.Namespace) -> dict:
    did: list[str] = []
    if args.netns not in run(["ip", "netns", "list"]).stdout.split():
        run(["ip", "netns", "add", args.netns])
        did.append(f"made network namespace {args.netns}")
    if run(["ip", "link", "show", "dev", args.link], check=False).returncode != 0:
        run(["ip", "link", "add", args.link, "type", "veth", "peer", "name", args.host_link, "netns", args.netns])
        did.append(f"made veth {args.link} - {args.netns}:{args.host_link}")
    for netns, dev, address in ((None, args.link, args.node_address), (args.netns, args.host_link, args.host_address)):
        ip = ["ip", *(["-n", netns] if netns else [])]
        shown = json.loads(run([*ip, "-j", "addr", "show", "dev", dev]).stdout or "[]")
        have = {f"{a['local']}/{a['prefixlen']}" for link in shown for a in link.get("addr_info", [])}
        if address not in have:
            run([*ip, "addr", "replace", address, "dev", dev])
            did.append(f"{dev}: {address}")
        if not shown or "UP" not in shown[0].get("flags", []):
            run([*ip, "link", "set", dev, "up"])
            did.append(f"{dev}: up")
    run(["ip", "-n", args.netns, "link", "set", "lo", "up"])
    before = [root_qdisc(None, args.link), root_qdisc(args.netns, args.host_link)]
    shaped: list[str] = []
    shape_end(None, args.link, args.rate, args.rtt_ms, shaped)
    shape_end(args.netns, args.host_link, args.rate, args.rtt_ms, shaped)
    after = [root_qdisc(None, args.link), root_qdisc(args.netns, args.host_link)]
    if [(q.get("kind"), q.get("options")) for q in before] != [(q.get("kind"), q.get("options")) for q in after]:
        did += shaped
    shape = {"rate": args.rate or None, "rtt_ms": args.rtt_ms, "qdisc": [q.get("kind", "") for q in after]}
    return {"changed": bool(did), "did": did, "shape": shape}


def shape_only(args: argparse.Namespace) -> dict:
    for netns, dev in ((None, args.link), (args.netns, args.host_link)):
        ip = ["ip", *(["-n", netns] if netns else [])]
        if run([*ip, "link", "show", "dev", dev], check=False).returncode != 0:
            raise SystemExit(
                f"registry_link: {dev} does not exist{f' in {netns}' if netns else ''}: make the link first"
            )
    before = [root_qdisc(None, args.link), root_qdisc(args.netns, args.host_link)]
    shaped: list[str] = []
    shape_end(None, args.link, args.rate, args.rtt_ms, shaped)
    shape_end(args.netns, args.host_link, args.rate, args.rtt_ms, shaped)
    after = [root_qdisc(None, args.link), root_qdisc(args.netns, args.host_link)]
    changed = [(q.get("kind"), q.get("options")) for q in before] != [(q.get("kind"), q.get("options")) for q in after]
    shape = {"rate": args.rate or None, "rtt_ms": args.rtt_ms, "qdisc": [q.get("kind", "") for q in after]}
    return {"changed": changed, "did": shaped if changed else [], "shape": shape}


def remove(args: argparse.Namespace) -> dict:
    did: list[str] = []
    if run(["ip", "link", "show", "dev", args.link], check=False).returncode == 0:
        run(["ip", "link", "del", "dev", args.link])
        did.append(f"removed veth {args.link}")
    if args.netns in run(["ip", "netns", "list"]).stdout.split():
        run(["ip", "netns", "del", args.netns])
        did.append(f"removed network namespace {args.netns}")
    return {"changed": bool(did), "did": did}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--netns", required=True)
    p.add_argument("--link", required=True)
    p.add_argument("--host-link", default="eth0")
    p.add_argument("--node-address", default="")
    p.add_argument("--host-address", default="")
    p.add_argument("--rate", default="")
    p.add_argument("--rtt-ms", type=float, default=0.0)
    p.add_argument("--shape-only", action="store_true")
    p.add_argument("--remove", action="store_true")
    args = p.parse_args(argv)
    if args.remove:
        print(json.dumps(remove(args)))
    elif args.shape_only:
        print(json.dumps(shape_only(args)))
    elif not (args.node_address and args.host_address):
        p.error("--node-address and --host-address are needed unless --remove or --shape-only")
    else:
        print(json.dumps(up(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
