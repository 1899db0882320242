"""Inventory parsing (on ansible-inventory's JSON) and the node environment's requirements."""

import tomllib
from pathlib import Path

import pytest
import yaml

from bench.controller.inventory import DEFAULT_PYTHON, InventoryError, parse

REPO = Path(__file__).resolve().parents[1]

LISTED = {
    "_meta": {
        "hostvars": {
            "lab1": {
                "ansible_host": "192.0.2.10",
                "ansible_port": "2222",
                "ansible_user": "bench",
                "hopbench_accept_new_host_key": "yes",
                "ansible_ssh_private_key_file": "/k",
            },
            "local": {"ansible_connection": "local"},
        }
    },
    "all": {"children": ["ungrouped", "containerd", "docker"]},
    "containerd": {"hosts": ["lab1", "local"]},
    "docker": {"hosts": ["lab1"]},
}


def test_parse_takes_ssh_settings_groups_and_defaults():
    lab1, local = parse("inv.yml", LISTED)
    assert (lab1.name, lab1.host, lab1.port, lab1.user, lab1.key_file) == ("lab1", "192.0.2.10", 2222, "bench", "/k")
    assert lab1.accept_new_host_key and lab1.groups == ("containerd", "docker") and lab1.python == DEFAULT_PYTHON
    assert (local.connection, local.host, local.user, local.accept_new_host_key) == ("local", "local", "root", False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ansible_port": "ssh"}, "field 'ansible_port': expected a port number"),
        ({"hopbench_accept_new_host_key": "maybe"}, "field 'hopbench_accept_new_host_key': expected true or false"),
        ({"ansible_port": 0}, "field 'ansible_port': expected a port number from 1 to 65535, got 0"),
        ({"ansible_port": 70000}, "field 'ansible_port': expected a port number from 1 to 65535"),
        ({"ansible_port": 22.5}, "field 'ansible_port': expected a port number"),
        ({"ansible_port": True}, "field 'ansible_port': expected a port number"),
        ({"ansible_connection": "docker"}, "field 'ansible_connection': expected local or ssh, got 'docker'"),
        ({"ansible_host": ""}, "field 'ansible_host': expected a non-empty string"),
        ({"ansible_host": "a\nb"}, "field 'ansible_host': expected a non-empty string without control characters"),
        ({"ansible_user": ["root"]}, "field 'ansible_user': expected a non-empty string"),
        ({"ansible_ssh_private_key_file": "id_ed25519"}, "field 'ansible_ssh_private_key_file': expected an absolute"),
        ({"hopbench_known_hosts": "known"}, "field 'hopbench_known_hosts': expected an absolute path"),
        ({"hopbench_python": "python3"}, "field 'hopbench_python': expected an absolute path"),
        ({"hopbench_agent_dir": "agent"}, "field 'hopbench_agent_dir': expected an absolute path"),
        ({"hopbench_agent_lock": 7}, "field 'hopbench_agent_lock': expected an absolute path"),
        ({"hopbench_idle_timeout_s": 1}, "field 'hopbench_idle_timeout_s': expected seconds from 3 to 3600, got 1"),
        ({"hopbench_idle_timeout_s": ".nan"}, "field 'hopbench_idle_timeout_s': expected seconds"),
        ({"hopbench_idle_timeout_s": float("inf")}, "field 'hopbench_idle_timeout_s': expected seconds"),
        ({"hopbench_idle_timeout_s": "soon"}, "field 'hopbench_idle_timeout_s': expected seconds"),
    ],
)
def test_bad_host_settings_name_file_host_and_field(change, message):
    data = {**LISTED, "_meta": {"hostvars": {"lab1": {**LISTED["_meta"]["hostvars"]["lab1"], **change}}}}
    with pytest.raises(InventoryError, match=f"inv.yml: host lab1: {message}"):
        parse("inv.yml", data)


def test_idle_timeout_is_read_per_host():
    data = {**LISTED, "_meta": {"hostvars": {"lab1": {"hopbench_idle_timeout_s": "8"}, "local": {}}}}
    lab1, local = parse("inv.yml", data)
    assert (lab1.idle_timeout_s, local.idle_timeout_s) == (8.0, 30.0)


def test_hostvars_that_are_not_a_mapping_are_refused():
    data = {**LISTED, "_meta": {"hostvars": {"lab1": ["ansible_port", 22]}}}
    with pytest.raises(InventoryError, match="inv.yml: host lab1: expected a mapping of variables, got list"):
        parse("inv.yml", data)


def test_limit_and_empty_inventories():
    assert [n.name for n in parse("inv.yml", LISTED, ["local"])] == ["local"]
    with pytest.raises(InventoryError, match="no host named nope"):
        parse("inv.yml", LISTED, ["nope"])
    with pytest.raises(InventoryError, match="no hosts"):
        parse("inv.yml", {"_meta": {"hostvars": {}}})


def test_node_environment_installs_the_agents_dependencies():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    role = yaml.safe_load((REPO / "ansible/roles/agentenv/defaults/main.yml").read_text())
    assert sorted(role["agentenv_requirements"]) == sorted(pyproject["project"]["dependencies"])
