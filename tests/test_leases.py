"""Orphan IPAM leases: a lease whose sandbox the stack no longer knows is released by the sweep,
unless it is younger than a call deadline (a sandbox being made right now)."""

from __future__ import annotations

import json
import os
import time

from bench import stacks
from bench.node import leftovers
from bench.node.targets import release_orphan_leases


def stack_with_network(tmp_path):
    conf = tmp_path / "cni"
    conf.mkdir()
    data = tmp_path / "ipam"
    conf.joinpath("10-net.conflist").write_text(
        json.dumps(
            {"name": "hb-net", "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "dataDir": str(data)}}]}
        )
    )
    (data / "hb-net").mkdir(parents=True)
    stack = stacks.Stack("crio@1", "unix:///x", (), {}, "p", "w", "d", extra={"cni": {"conf_dir": str(conf)}})
    return stack, data / "hb-net"


def test_only_old_leases_of_unknown_sandboxes_are_released(tmp_path):
    stack, leases = stack_with_network(tmp_path)
    old = time.time() - 3600
    for ip, owner, mtime in [
        ("10.0.0.2", "orphan", old),
        ("10.0.0.3", "alive", old),
        ("10.0.0.4", "inflight", time.time()),
    ]:
        (leases / ip).write_text(f"{owner}\r\neth0")
        os.utime(leases / ip, (mtime, mtime))
    (leases / "lock").write_text("")
    (leases / "last_reserved_ip.0").write_text("10.0.0.4")
    said = []
    release_orphan_leases(stack, {"alive"}, 60, said.append)
    assert sorted(p.name for p in leases.iterdir()) == ["10.0.0.3", "10.0.0.4", "last_reserved_ip.0", "lock"]
    assert [w.message for w in said] == ["released IPAM lease 10.0.0.2 of sandbox orphan, unknown to crio@1"]
    assert leftovers.leases([stack]) == 2
