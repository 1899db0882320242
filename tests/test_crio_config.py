"""The check of CRI-O's effective configuration (roles/crio/files/crio_effective.py), on what
`crio status config` prints: pure logic, fed TOML documents."""

import importlib.util
import tomllib
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "ansible/roles/crio/files/crio_effective.py"
spec = importlib.util.spec_from_file_location("crio_effective", PATH)
assert spec and spec.loader
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)


def config(runtimes: str, pinns: str = "/bin/true") -> dict:
    return tomllib.loads(
        f'[crio.runtime]\npinns_path = "{pinns}"\n{runtimes}\n[crio.network]\nplugin_dirs = ["/opt/cni"]\n'
    )


def test_absolute_executables_for_exactly_the_offered_handlers_pass():
    doc = config('[crio.runtime.runtimes.runc]\nruntime_path = "/bin/true"\nmonitor_path = "/bin/sh"\n')
    result = mod.check(doc, {"runc"})
    assert result["problems"] == []
    assert result["handlers"] == {"runc": {"runtime_path": "/bin/true", "monitor_path": "/bin/sh"}}


def test_a_built_in_handler_left_in_and_a_monitor_looked_up_on_path_are_named():
    # What CRI-O 1.36 reported on a fresh machine before the fix: its own crun, monitor by name.
    doc = config(
        '[crio.runtime.runtimes.runc]\nruntime_path = "/bin/true"\nmonitor_path = "/bin/sh"\n'
        '[crio.runtime.runtimes.crun]\nruntime_path = ""\nmonitor_path = "conmon"\n'
    )
    problems = mod.check(doc, {"runc"})["problems"]
    assert "CRI-O serves handler 'crun', which hopbench does not offer here" in problems
    assert "runtimes.crun.runtime_path is empty: the program is looked up on PATH" in problems
    assert "runtimes.crun.monitor_path = 'conmon' is not an absolute path: it is looked up on PATH" in problems


def test_a_missing_offered_handler_and_a_path_that_is_not_a_program_are_named():
    doc = config('[crio.runtime.runtimes.runc]\nruntime_path = "/etc/os-release"\nmonitor_path = "/bin/sh"\n', pinns="")
    problems = mod.check(doc, {"runc", "runsc"})["problems"]
    assert "handler 'runsc' is offered but CRI-O does not serve it (see crio.log)" in problems
    assert "runtimes.runc.runtime_path = '/etc/os-release' is not an executable file" in problems
    assert "pinns_path is empty: the program is looked up on PATH" in problems
