"""The report model and its two renderers: one set of sections, HTML escaped, Markdown the summary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from bench.controller import report, runfacts
from bench.controller.render import Bullets, Image, Para, Pre, Report, Section, Table, inline_html, to_html, to_markdown

KEPT = Path(__file__).resolve().parents[1] / "results" / "kept"


def sample_report() -> Report:
    frame = pd.DataFrame({"target": ["a/<b>"], "p50 ms": [1.234], "gap %": [float("nan")]})
    return Report(
        "run <x>",
        [
            Section("Head", [Para("**bold** `code` *it* <script>", "ok"), Table(frame, 2)], summary=True),
            Section("Only in HTML", [Image("chart", "data:image/png;base64,AAAA"), Pre("a < b")]),
            Section("List", [Bullets(["x & y"])], level=3, summary=True),
        ],
    )


def test_inline_markup_is_escaped_before_tags_are_added():
    html = str(inline_html("**a<b>** `x&y` *i* <img src=x onerror=1>"))
    assert html == "<b>a&lt;b&gt;</b> <code>x&amp;y</code> <i>i</i> &lt;img src=x onerror=1&gt;"


def test_html_has_every_section_and_escapes_every_value():
    html = to_html(sample_report())
    assert "<title>run &lt;x&gt;</title>" in html
    assert "<p class=ok><b>bold</b> <code>code</code> <i>it</i> &lt;script&gt;</p>" in html
    assert "<td class=l>a/&lt;b&gt;</td>" in html and "<td>1.23</td>" in html and "<td>–</td>" in html
    assert '<img alt="chart" src="data:image/png;base64,AAAA">' in html and "<pre>a &lt; b</pre>" in html
    assert "<h3>List</h3>" in html and "<li>x &amp; y</li>" in html
    assert "<script>" not in html


def test_markdown_holds_the_summary_sections_from_the_same_model():
    md = to_markdown(sample_report())
    assert md.startswith("# run <x>\n")
    assert "## Head" in md and "### List" in md and "- x & y" in md
    assert "| target | p50 ms | gap % |" in md and "| a/<b> | 1.23 | – |" in md
    assert "Only in HTML" not in md and "data:image" not in md


def test_a_summary_table_may_show_less_in_markdown_than_in_html():
    full = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    r = Report("t", [Section("S", [Table(full, summary=full[["b"]])], summary=True)])
    assert "| b |" in to_markdown(r) and "| a |" not in to_markdown(r)
    assert "<th>a</th>" in to_html(r)


def test_kept_runs_render_with_the_method_written_once(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(KEPT / "20261127T022512Z-hopskept-local-9e48", run)
    html = report.build_report(run).read_text()
    md = (run / "report.md").read_text()
    assert runfacts.METHOD.split(":")[0] in md
    for heading in ("Headline", "Hop cost between adjacent levels", "Method", "Environment", "Reproduce"):
        assert f"<h2>{heading}" in html and f"## {heading}" in md
    assert "Targets" in html and "## Targets" not in md


def test_what_went_wrong_says_when_and_to_which_target():
    meta = {"started_at": "2026-12-03T10:00:00+00:00"}
    t0 = pd.Timestamp("2026-12-03T10:00:00Z").timestamp()
    events = [
        {"event": "warning", "message": "slow", "wall_time": t0 + 1},
        {
            "event": "error",
            "message": "crio abandoned after 3 failed lifecycles",
            "target": "crio/runc",
            "node": "local",
            "wall_time": t0 + 42.4,
        },
    ]
    (section,) = runfacts.failure_sections(meta, events)
    assert section.summary and section.title == "What went wrong, and when"
    md = to_markdown(Report("r", [section]))
    assert "10:00:42 (+42 s)" in md and "crio/runc" in md and "abandoned after 3 failed lifecycles" in md
    assert "1 error(s), 0 failed lifecycle(s) and 0 failed workload check(s) during the run, on crio/runc" in md
    assert runfacts.failure_sections(meta, events[:1]) == []  # a warning of no target is not a failure
    failed = {"event": "warning", "message": "x iteration 3: StopContainer failed", "target": "crio/runc"}
    assert "lifecycle failed: x iteration 3" in to_markdown(Report("r", runfacts.failure_sections(meta, [failed])))
    # Every op answered ok, but the workload check saw the container still running after its stop.
    check = {
        "event": "check", "target": "containerd@2.4.2/runc", "level": "cri", "iteration": 7, "concurrency": 1,
        "check": "workload-exited", "ok": False, "detail": "after stop: state CONTAINER_RUNNING", "node": "local",
    }  # fmt: skip
    passed = {**check, "iteration": 8, "ok": True}
    assert runfacts.failure_sections(meta, events[:1], [passed]) == []
    md = to_markdown(Report("r", runfacts.failure_sections(meta, events[:1], [check, passed])))
    assert "check failed: containerd@2.4.2/runc cri iteration 7 at 1 in flight, workload-exited" in md
    assert "0 error(s), 0 failed lifecycle(s) and 1 failed workload check(s)" in md
    assert runfacts._when({"wall_time": t0}, {"started_at": "not a time"}) == "10:00:00"
