"""The HTML report in a real browser: Debian's chromium (installed by scripts/setup), driven by
Playwright, opens the report of a real kept run with no console error, no request leaving the
file, every image decoded, the headline first; a screenshot is kept beside the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from bench.controller.report import build_report

KEPT = Path(__file__).resolve().parents[1] / "results" / "kept"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.parametrize("kept", ["20261203T214236Z-quick-local-032a", "20261127T031500Z-densitykept-local-b32f"])
def test_the_report_loads_in_chromium_with_no_error_and_every_image_decoded(tmp_path, kept):
    run = tmp_path / kept
    shutil.copytree(KEPT / kept, run)
    html = build_report(run)
    errors: list[str] = []
    outside: list[str] = []
    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("data:", "file:")) else None)
            page.goto(html.as_uri(), wait_until="load")
            images = page.evaluate(
                """async () => Promise.all(Array.from(document.images).map(async (img) => {
                    try { await img.decode(); } catch (e) { return [img.alt, false, 0]; }
                    return [img.alt, img.complete, img.naturalWidth];
                }))"""
            )
            headings = page.evaluate("() => Array.from(document.querySelectorAll('h2')).map(h => h.textContent.trim())")
            page.screenshot(path=str(run / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and outside == [], (errors, outside)
    assert images and all(ok and width > 0 for _, ok, width in images), images
    assert headings[0] == "Headline", headings
    assert (run / "report.png").stat().st_size > 10_000
