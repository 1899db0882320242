"""Static checks run as tests, so CI enforces them: ruff, mypy (strict) and ansible-lint."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(argv, cwd=REPO):
    env = {**os.environ, "NO_COLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600)


def test_ruff():
    proc = run([str(BIN / "ruff"), "check", "bench", "tests", "ansible", "benchmarks"])
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_mypy_strict():
    proc = run([str(BIN / "mypy")])
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_ansible_lint_on_roles_and_playbooks():
    proc = run([str(BIN / "ansible-lint"), "--offline"], cwd=REPO / "ansible")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
