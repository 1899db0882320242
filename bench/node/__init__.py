"""What runs on a node: the agent (protocol), its targets, its schedule, the levels, and the
node's helpers (kubelet's requests, the CRI client, memory sampler, node facts, trace reader).

Import rule (tests/test_layout.py): nothing here imports bench.controller, pandas,
matplotlib, rich or paramiko; the SSH transport uploads this package with the shared
modules (bench/*.py less the controller's) and nothing else.
"""
