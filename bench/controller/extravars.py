"""`hopbench provision -e`: extra variables checked before ansible-playbook starts.

Ansible accepts any variable name and ignores the ones nothing reads, so a typo
(`containerd_instnaces=...`) would provision the defaults and say nothing. Each `-e` value is
parsed the way ansible-playbook does (`key=value` words, a JSON or YAML mapping, or `@file`
holding one), and every name must be one the project knows: an option in a role's argument
spec, a role default, a group variable, or Ansible's own (`ansible_*`). The roles' argument
specs then check the values' types and choices when each role starts.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from bench.errors import InputError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_FILE_BYTES = 1 << 20


class ExtraVarsError(InputError):
    pass


SOURCES = ("roles/*/meta/argument_specs.yml", "roles/*/defaults/*.yml", "group_vars/*/*.yml", "*.yml")


def known_names(ansible_dir: Path) -> set[str]:
    """Every variable the playbooks read: role argument specs, role defaults, group variables, the
    `vars:` of each play (reset.yml's hopbench_reset_state) and the variables a play's `hosts:`
    names (nightly.yml's nightly_hosts). Read again only when one of those files changed."""
    files = sorted({p for pattern in SOURCES for p in ansible_dir.glob(pattern)})
    stamp = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        stamp.append((str(path), st.st_mtime_ns, st.st_size))
    return set(_known_names(ansible_dir, tuple(stamp)))


@functools.lru_cache(maxsize=8)
def _known_names(ansible_dir: Path, stamp: tuple[tuple[str, int, int], ...]) -> frozenset[str]:
    names: set[str] = set()

    def keys(path: Path) -> set[str]:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return set()
        return set(doc) if isinstance(doc, dict) else set()

    for spec in ansible_dir.glob("roles/*/meta/argument_specs.yml"):
        try:
            doc = yaml.safe_load(spec.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for entry in (doc.get("argument_specs") or {}).values():
            names |= set((entry or {}).get("options") or {})
    for path in [*ansible_dir.glob("roles/*/defaults/*.yml"), *ansible_dir.glob("group_vars/*/*.yml")]:
        names |= keys(path)
    for playbook in ansible_dir.glob("*.yml"):
        try:
            plays = yaml.safe_load(playbook.read_text()) or []
        except (OSError, yaml.YAMLError):
            continue
        for play in plays if isinstance(plays, list) else []:
            if isinstance(play, dict) and isinstance(play.get("vars"), dict):
                names |= set(play["vars"])
            if isinstance(play, dict) and isinstance(play.get("hosts"), str):
                names |= set(re.findall(r"\{\{\s*([A-Za-z_]\w*)", play["hosts"]))
    return frozenset(names)


def parse_one(value: str) -> dict[str, Any]:
    """One `-e` value as ansible-playbook reads it: @file, a JSON/YAML mapping, or key=value words."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            if not path.is_file():
                raise ExtraVarsError(f"-e {value}: {path}: expected a file of variables (YAML or JSON)")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ExtraVarsError(f"-e {value}: {path}: larger than {MAX_FILE_BYTES} bytes")
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ExtraVarsError(f"-e {value}: cannot read {path}: {exc}") from None
        return _mapping(f"-e {value}: {path}", text)
    if value.lstrip().startswith("{"):
        return _mapping(f"-e {value!r}", value)
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ExtraVarsError(f"-e {value!r}: {exc}") from None
    out = {}
    for word in words:
        key, eq, rest = word.partition("=")
        if not eq:
            raise ExtraVarsError(f"-e {value!r}: expected key=value words, a JSON/YAML mapping or @file, got {word!r}")
        out[key] = rest
    if not out:
        raise ExtraVarsError(f"-e {value!r}: no variable in it")
    return out


def _mapping(where: str, text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ExtraVarsError(f"{where}: not YAML or JSON: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(doc, dict):
        raise ExtraVarsError(f"{where}: expected a mapping of variable names to values, got {type(doc).__name__}")
    return doc


def check(values: list[str], ansible_dir: Path) -> dict[str, Any]:
    """Every -e value parsed and every name known; the merged variables (later values win)."""
    known = known_names(ansible_dir)
    merged: dict[str, Any] = {}
    for value in values:
        for key, v in parse_one(value).items():
            if not isinstance(key, str) or not NAME.match(key):
                raise ExtraVarsError(f"-e {value!r}: {key!r} is not a variable name (letters, digits, _)")
            if key not in known and not key.startswith("ansible_"):
                close = difflib.get_close_matches(key, sorted(known), n=3)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ExtraVarsError(
                    f"-e {value!r}: unknown variable {key!r}: no role or group variable reads it{hint}"
                )
            merged[key] = v
    return merged
