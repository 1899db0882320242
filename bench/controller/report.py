"""The report of one run: an ordered registry of views, rendered as report.html and report.md.

The run is loaded once (bench.controller.run.Run); each view (bench.controller.view) owns its
analysis, charts and sections and says whether it applies to the run. The HTML report
(self-contained, charts inlined as PNG) shows every section, report.md the ones marked as
summary. A new analysis is one module with a VIEW and one line in VIEWS.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: charts become PNGs inside the report, on a node or in CI

from bench.controller import (  # noqa: E402
    cite,
    clilevel,
    crosscheck,
    density,
    drift,
    driver,
    headline,
    hops,
    kube,
    latency,
    nightly,
    pulls,
    runfacts,
    spans,
    sweep,
    upgrade,
)
from bench.controller.render import Report, to_html, to_markdown  # noqa: E402
from bench.controller.run import Run  # noqa: E402
from bench.controller.view import View  # noqa: E402

# The report's order: what went wrong and the answer first, then the details, the method last.
VIEWS: tuple[View, ...] = (
    runfacts.HEADER,
    runfacts.FAILURES,
    runfacts.LEFTOVERS,
    headline.VIEW,
    spans.VIEW,
    runfacts.CHECKS,
    latency.VIEW,
    sweep.VIEW,
    drift.VIEW,
    crosscheck.VIEW,
    upgrade.VIEW,
    driver.VIEW,
    hops.VIEW,
    kube.VIEW,
    density.VIEW,
    pulls.VIEW,
    nightly.VIEW,
    clilevel.VIEW,
    runfacts.CLOSING,
)


def model(run: Run | Path) -> Report:
    """The report of one run, every section built once."""
    run = run if isinstance(run, Run) else Run(run)
    return Report(f"hopbench run {run.meta['run_id']}", [s for view in VIEWS for s in view.render(run)])


def build_report(run: Run | Path, adr: bool = False) -> Path:
    """Write report.html (every section) and report.md (the summary) into the run folder; with
    `adr`, also adr.md, the decision-record section (bench.controller.cite.adr)."""
    run = run if isinstance(run, Run) else Run(run)
    report = model(run)
    out = run.path / "report.html"
    out.write_text(to_html(report))
    (run.path / "report.md").write_text(to_markdown(report))
    if adr:
        (run.path / "adr.md").write_text(cite.adr(run.meta, headline.of(run)))
    return out
