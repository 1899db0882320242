"""Property test of the scenario door: any document is either a valid Scenario or a ScenarioError
naming the file, never another exception (and loading never starts anything)."""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.scenario import FILE_FIELDS, Scenario, ScenarioError, load_scenario

SECTIONS = {
    "density": ["steps", "hold_s", "interval_s"],
    "regression": ["history", "threshold_pct", "alpha"],
    "workload": ["stop_timeout_s"],
}
LEVELS = ["cri", "split", "engine", "containerd", "oci", "cli", "density", "control", "nullcri", "kube"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, 60, 1024, 10**29, -1, 0.5, math.inf, math.nan, "", "all", "cri", "x/y"]),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(["steps", "hold_s", "x", "1"]), inner, max_size=4)
    ),
    max_leaves=15,
)
section = st.sampled_from(sorted(SECTIONS)).flatmap(
    lambda name: st.fixed_dictionaries({}, optional={k: values for k in SECTIONS[name]})
)
base = {
    "schema": st.sampled_from([1, 1, 1, 2, "1", None]),
    "name": st.sampled_from(["fuzz", "a-b_c", "", "bad name", "x" * 200]),
}
documents = st.fixed_dictionaries(
    base,
    optional={
        "targets": st.one_of(st.sampled_from(["all", ["containerd/runc"], ["nope/x"], []]), values),
        "levels": st.one_of(st.lists(st.sampled_from(LEVELS), max_size=4), values),
        "iterations": values,
        "warmup": values,
        "concurrency": st.one_of(st.lists(st.integers(-2, 2000), max_size=4), values),
        "timeout_s": values,
        "max_failures": values,
        "schedule": st.sampled_from(["interleaved", "block", "other", 3]),
        "seed": values,
        "control": values,
        "density": section,
        "regression": section,
        "workload": section,
        "unknown_field": values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_any_document_is_a_scenario_or_a_scenario_error(tmp_path: Path, doc: dict) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        scen = load_scenario(path)
    except ScenarioError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(scen, Scenario)
    assert set(doc) <= set(FILE_FIELDS)
    for n in (scen.iterations, scen.warmup, scen.timeout_s, *scen.concurrency):
        assert math.isfinite(n) and n >= 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_text_is_a_scenario_or_a_scenario_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert str(path) in str(exc)
