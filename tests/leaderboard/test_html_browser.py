"""The HTML leaderboard in a real headless Chromium (Playwright driving the system
browser): it loads without a console or page error, fetches nothing from outside, fits a
1280 px window, and shows its tables, charts and every crop.

Without Playwright or a Chromium the test skips, except under CI=true, where it fails.
"""

import struct

from rainbench.leaderboard.publish import write_leaderboard
from rainbench.leaderboard.ranking import leaderboard_tables
from rainbench.leaderboard.results import load_results

WIDTH = 1280


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_page_renders_cleanly_in_chromium(results_dir, tmp_path, browser_tooling):
    sync_playwright, executable = browser_tooling
    page_path = write_leaderboard(results_dir, "html", tmp_path / "leaderboard.html")
    tables = leaderboard_tables(load_results(results_dir))
    errors, outside = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on(
                "console",
                lambda message: (
                    errors.append(f"console: {message.text}") if message.type == "error" else None
                ),
            )
            page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
            page.on(
                "request",
                lambda request: (
                    outside.append(request.url)
                    if not request.url.startswith(("file:", "data:"))
                    else None
                ),
            )
            page.goto(page_path.as_uri(), wait_until="load")
            # Open the provenance, so that the screenshot shows it and its layout is checked.
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            facts = page.evaluate(
                """() => ({
                    tables: document.querySelectorAll('table').length,
                    svgs: document.querySelectorAll('svg').length,
                    images: [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]),
                    scrollWidth: document.documentElement.scrollWidth,
                })"""
            )
            screenshot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert errors == []
    assert outside == []
    assert facts["tables"] == len(tables)
    assert facts["svgs"] == 2 * len(tables)  # a bar chart and a scatter per split
    # 3 crop keys per split: input, 4 models (one without crops) and, on syn-streak, the
    # ground truth; the model without crops shows a placeholder, not a broken image.
    assert len(facts["images"]) == 3 * (1 + 3) + 3 * (1 + 3 + 1)
    broken = [alt for alt, complete, width in facts["images"] if not complete or width == 0]
    assert broken == []
    assert facts["scrollWidth"] <= WIDTH, "the page overflows a 1280 px window"
    data = screenshot.read_bytes()
    width, height = _png_size(data)
    assert width == WIDTH
    assert height > 900


def test_a_name_as_long_as_a_folders_fits_the_window(tmp_path, write_run, browser_tooling):
    # One word of 250 characters (a folder's name takes 255 bytes): the lead, the nav, the
    # section's title, the model cell, the strip's head and the footer all hold it.
    sync_playwright, executable = browser_tooling
    results = tmp_path / ("R" * 250)
    for model in ("M" * 250, "dcp"):
        write_run(results, model, "D" * 250, "test", kind="real", metrics={"niqe": [3.0, 4.0]})
    page_path = write_leaderboard(results, "html", tmp_path / "leaderboard.html")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(page_path.as_uri(), wait_until="load")
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            width = page.evaluate("document.documentElement.scrollWidth")
        finally:
            browser.close()
    assert width <= WIDTH, "a long name overflows a 1280 px window"
