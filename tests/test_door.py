"""The doors other than the scenario's: inventories, `-e` extra vars, run ids, --results and the
compare flags. Each bad input is refused with what was expected, exit 2, never a traceback; the
inventory and extra-vars parsers are property-tested like the scenario door (test_scenario_fuzz)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import cli
from bench.controller import extravars
from bench.controller.extravars import ExtraVarsError
from bench.controller.inventory import InventoryError, parse

REPO = Path(__file__).resolve().parents[1]
ANSIBLE = REPO / "ansible"


def test_extra_vars_in_each_form_ansible_reads():
    merged = extravars.check(
        ["containerd_root=/x crio_version=''", '{"containerd_id": "a"}', "ansible_python_interpreter=/p"], ANSIBLE
    )
    assert merged == {
        "containerd_root": "/x",
        "crio_version": "",
        "containerd_id": "a",
        "ansible_python_interpreter": "/p",
    }


def test_a_variable_a_play_declares_is_known():
    # What ansible/README.md tells an operator to pass to reset.yml.
    assert extravars.check(["hopbench_reset_state=true"], ANSIBLE) == {"hopbench_reset_state": "true"}


def test_extra_vars_from_a_file(tmp_path):
    f = tmp_path / "vars.yml"
    f.write_text("containerd_root: /x\n")
    assert extravars.check([f"@{f}"], ANSIBLE) == {"containerd_root": "/x"}
    f.write_text("- a\n")
    with pytest.raises(ExtraVarsError, match=f"{f}: expected a mapping of variable names to values, got list"):
        extravars.check([f"@{f}"], ANSIBLE)
    with pytest.raises(ExtraVarsError, match="expected a file of variables"):
        extravars.check([f"@{tmp_path / 'none.yml'}"], ANSIBLE)
    f.write_bytes(b"a: " + b"x" * (extravars.MAX_FILE_BYTES + 1))
    with pytest.raises(ExtraVarsError, match="larger than"):
        extravars.check([f"@{f}"], ANSIBLE)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("containerd_rot=/x", "unknown variable 'containerd_rot': no role or group variable reads it \\(did you mean"),
        ("containerd_root", "expected key=value words, a JSON/YAML mapping or @file, got 'containerd_root'"),
        ("'unclosed", "No closing quotation"),
        ("{not: [json", "not YAML or JSON"),
        ('{"1x": 2}', "'1x' is not a variable name"),
        ("  ", "no variable in it"),
    ],
)
def test_bad_extra_vars_are_named(value, message):
    with pytest.raises(ExtraVarsError, match=message):
        extravars.check([value], ANSIBLE)


def test_every_variable_a_role_reads_is_known():
    known = extravars.known_names(ANSIBLE)
    assert {"containerd_root", "crio_version", "runc_version"} <= known


def test_known_names_are_read_again_when_a_role_changes(tmp_path):
    defaults = tmp_path / "roles" / "r" / "defaults" / "main.yml"
    defaults.parent.mkdir(parents=True)
    defaults.write_text("r_one: 1\n")
    assert extravars.known_names(tmp_path) == {"r_one"}
    defaults.write_text("r_one: 1\nr_two: 2\n")  # a different size: a new stamp even within one mtime tick
    assert extravars.known_names(tmp_path) == {"r_one", "r_two"}


def test_cli_refuses_bad_provision_input_before_ansible_starts(capsys):
    assert cli.main(["provision", "--playbook", "../site.yml"]) == 2
    assert "--playbook '../site.yml': expected a playbook of" in capsys.readouterr().err
    assert cli.main(["provision", "--inventory", "/nonexistent/inv"]) == 2
    assert "--inventory /nonexistent/inv: no such inventory file or folder" in capsys.readouterr().err
    assert cli.main(["provision", "-e", "containerd_instnaces=2"]) == 2
    assert "unknown variable 'containerd_instnaces'" in capsys.readouterr().err


def test_run_ids_results_folders_and_compare_flags(tmp_path, capsys):
    assert cli.main(["report", "nowhere/../x", "--results", str(tmp_path)]) == 2
    assert "expected a run folder or a run id" in capsys.readouterr().err
    assert cli.main(["report", "20261203T000000Z-quick-local-abcd", "--results", str(tmp_path)]) == 2
    assert f"no such run in {tmp_path}/" in capsys.readouterr().err
    assert cli.main(["runs", "--results", str(tmp_path / "none")]) == 2
    assert f"--results {tmp_path / 'none'}: no such folder" in capsys.readouterr().err
    for flag, value, expected in [
        ("--alpha", "0", "(0, 1)"),
        ("--alpha", "nan", "(0, 1)"),
        ("--threshold", "-5", "[0, 1000]"),
        ("--threshold", "inf", "[0, 1000]"),
    ]:
        assert cli.main(["compare", "a", "b", "--results", str(tmp_path), flag, value]) == 2
        assert f"{flag} {float(value):g}: expected a number in {expected}" in capsys.readouterr().err
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "meta.json").write_text("[1, 2]")
    assert cli.main(["report", "r1", "--results", str(tmp_path)]) == 2
    assert "meta.json: expected a JSON object, got list" in capsys.readouterr().err
    assert cli.main(["runs", "--results", str(tmp_path)]) == 0  # a stray folder is not a run: skipped


# Property tests: any hostvars / any -e value parses or is refused with the door's own error.

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["local", "ssh", "/abs", "rel", "22", "3", "3600", ".nan", "\x00", "yes"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
FIELDS = [
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_connection",
    "ansible_ssh_private_key_file",
    "hopbench_known_hosts",
    "hopbench_accept_new_host_key",
    "hopbench_python",
    "hopbench_agent_dir",
    "hopbench_agent_lock",
    "hopbench_idle_timeout_s",
]
hostvars = st.one_of(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6), values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=6), hostvars, min_size=1, max_size=3))
def test_any_inventory_parses_or_is_an_inventory_error(hosts):
    data = {"_meta": {"hostvars": hosts}, "all": {"hosts": list(hosts)}}
    try:
        nodes = parse("fuzz.yml", data)
    except InventoryError as exc:
        assert str(exc).startswith("fuzz.yml:")
        return
    for node in nodes:
        assert 1 <= node.port <= 65535 and node.connection in ("local", "ssh")
        assert 3 <= node.idle_timeout_s <= 3600 and not math.isnan(node.idle_timeout_s)
        assert node.python.startswith("/") and node.agent_dir.startswith("/")


extra_texts = st.one_of(
    st.text(max_size=40),
    st.builds(lambda d: json.dumps(d), st.dictionaries(st.text(max_size=8), scalars, max_size=3)),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["containerd_root", "crio_version", "x", "ansible_user", "1"]),
        st.text(max_size=8),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(extra_texts, min_size=1, max_size=3))
def test_any_extra_vars_parse_or_are_an_extra_vars_error(texts):
    try:
        merged = extravars.check(texts, ANSIBLE)
    except ExtraVarsError as exc:
        assert str(exc).startswith("-e ")
        return
    known = extravars.known_names(ANSIBLE)
    assert all(k in known or k.startswith("ansible_") for k in merged)
