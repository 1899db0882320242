"""The suite's time per tier beside its budget, printed at the end of every run (CI's log too).

Tiers by folder: `unit` (tests/, pure logic and small real parts, the fast loop) and
`integration` (tests/integration/, real daemons, lab nodes, provisioning). A tier's time is the
sum of its tests' set-up, call and tear-down: the suite runs one test at a time, so that is its
share of the wall clock. Over budget is printed, never failed: a test must not fail because
the machine was slow.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

INTEGRATION = Path(__file__).resolve().parent / "integration"
# Seconds: unit tests within 3 min; the whole suite (with scripts/setup) on a fresh machine
# within 60 min, of which integration is what the unit tier and set-up leave.
BUDGETS_S = {"unit": 180.0, "integration": 3600.0 - 180.0 - 600.0}
# Seconds spent per (tier, test file): the tiers' totals are their sums.
_spent: dict[tuple[str, str], float] = defaultdict(float)


def tier_of(path: str) -> str:
    return "integration" if Path(path).resolve().is_relative_to(INTEGRATION) else "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is marked `integration`, so `-m "not integration"` is
    the unit tier exactly (a module that forgot its pytestmark would boot lab nodes in it)."""
    for item in items:
        if tier_of(str(item.path)) == "integration":
            item.add_marker(pytest.mark.integration)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _spent[(tier_of(report.fspath), report.nodeid.split("::", 1)[0])] += report.duration


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _spent:
        return
    terminalreporter.section("time per tier (budget)")
    for tier in ("unit", "integration"):
        files = sorted(((took, name) for (t, name), took in _spent.items() if t == tier), reverse=True)
        if not files:
            continue
        took, budget = sum(t for t, _ in files), BUDGETS_S[tier]
        verdict = "within" if took <= budget else "OVER"
        terminalreporter.write_line(f"{tier}: {minutes(took)} ({verdict} its budget of {minutes(budget)})")
        for took_file, name in files[:5]:
            terminalreporter.write_line(f"    {minutes(took_file)}  {name}")
