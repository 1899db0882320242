"""The package's shape: node code apart from controller code, and the SSH upload carrying only the node's.

A node installs only what the agent needs (pyproject: no extra); these checks read the
imports of every module from its source, so a controller import slipping into node code fails
here, not on a lab node.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.controller.transport.ssh import agent_archive, agent_files

PACKAGE = Path(__file__).resolve().parents[1] / "bench"
CONTROLLER_ONLY_DEPS = {"pandas", "numpy", "matplotlib", "rich", "paramiko", "scipy", "pyarrow", "jinja2", "ansible"}


def imports(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


NODE_FILES = [p for p in agent_files() if "_containerd" not in p.parts]


@pytest.mark.parametrize("path", NODE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_node_modules_import_no_controller_code_and_no_analysis_stack(path):
    bad = sorted(
        m for m in imports(path) if m.split(".")[0] in CONTROLLER_ONLY_DEPS or m.startswith("bench.controller")
    )
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: node code must run without the controller extra"


def test_node_imports_resolve_inside_the_upload():
    """Every bench module a node module imports is itself uploaded."""
    uploaded = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts) for p in agent_files()}
    uploaded |= {m.removesuffix(".__init__") for m in uploaded}
    for path in NODE_FILES:
        for m in imports(path):
            if m.startswith("bench"):
                assert m in uploaded or m.rsplit(".", 1)[0] in uploaded, f"{path}: {m} is not uploaded"


def test_the_upload_is_the_node_side_only_and_deterministic():
    names = {str(p.relative_to(PACKAGE)) for p in agent_files()}
    assert "node/protocol.py" in names and "messages.py" in names and "node/levels/cri.py" in names
    assert not any(n.startswith("controller/") for n in names)
    assert "cli.py" not in names
    assert agent_archive() == agent_archive()


def test_controller_and_node_packages_hold_their_modules():
    assert not (PACKAGE / "agent.py").exists()
    for name in ("runner", "report", "stats", "history", "results"):
        assert (PACKAGE / "controller" / f"{name}.py").exists()
    for name in ("protocol", "targets", "schedule"):
        assert (PACKAGE / "node" / f"{name}.py").exists()
    assert len((PACKAGE / "node" / "protocol.py").read_text().splitlines()) < 200
