#!/usr/bin/env python3
"""Refuse a pod subnet that overlaps a route of the node (other than the stack's own bridge).

A CNI bridge whose subnet covers an existing route breaks the node's network. Usage:
check_subnet.py SUBNET BRIDGE. Exits 0 when free, 1 with the clashing route otherwise.
"""

import ipaddress
import json
import subprocess
import sys


def main() -> int:
    subnet = ipaddress.ip_network(sys.argv[1], strict=True)
    bridge = sys.argv[2]
    family = "-4" if subnet.version == 4 else "-6"
    out = subprocess.run(
        ["ip", "-j", family, "route", "show", "table", "all"], check=True, capture_output=True, text=True
    ).stdout
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if (
            dst in ("default", "")
            or route.get("dev") == bridge
            or route.get("type") in ("local", "broadcast", "multicast")
        ):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet):
            print(
                f"subnet {subnet} overlaps route {dst} dev {route.get('dev')}: choose another subnet", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
