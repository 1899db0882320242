"""The roles' argument specs refuse bad variables when the role starts, before any task runs.

A playbook that includes the role with one bad variable is run for real (ansible-playbook,
connection local); validation happens at the role's entry, so nothing on the machine changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CASES = [
    ("crio", {"crio_install_method": "nightly"}, "crio_install_method"),
    ("runc", {"runc_install_method": "curl"}, "runc_install_method"),
    ("crio", {"crio_drop_infra_ctr": "perhaps"}, "crio_drop_infra_ctr"),
    ("crio", {"crio_conmon_install_method": "github"}, "crio_conmon_install_method"),
    (
        "containerd",
        {"containerd_instance": {"id": "x", "source": "git", "version": "", "bridge": "b", "subnet": "s"}},
        "source",
    ),
]


@pytest.mark.parametrize(("role", "bad", "named"), CASES, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in CASES])
def test_a_bad_role_variable_fails_at_the_role_entry_naming_it(tmp_path, role, bad, named):
    import json

    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: {role}\n      vars: {json.dumps(bad)}\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "ansible" / "roles"),
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(play)],
        cwd=REPO / "ansible",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Validating arguments against arg spec" in out and named in out, out[-3000:]
    assert "changed=0" in out, out[-3000:]
