"""The view protocol: what an analysis gives the report.

An analysis module (hops, kube, density, ...) owns its computation, its charts and its report
sections, and offers them as a `View`: its name, when it applies to a run, and the sections it
writes from the `Run`. The report (bench.controller.report) is an ordered registry of views and
the two renderers; a new analysis is one module and one registry line, the rule a level follows
on the node side.

`hopbench compare` and the exports take their rows and columns from the samples
(bench.controller.history, bench.controller.export); the one analysis that adds to an export is
the pulls' table (OpenMetrics pull families), which export.py asks bench.controller.pulls for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.controller.render import Section
from bench.controller.run import Run


def always(run: Run) -> bool:
    return True


@dataclass(frozen=True)
class View:
    """One analysis as the report sees it."""

    name: str
    sections: Callable[[Run], list[Section]]
    applies: Callable[[Run], bool] = always

    def render(self, run: Run) -> list[Section]:
        """The view's sections for this run, or none when it does not apply."""
        return self.sections(run) if self.applies(run) else []
