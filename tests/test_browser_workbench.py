"""The batch and what-if notebooks in Voila, driven in Debian's Chromium at 1280x800: the results grid (layout,
sort, search, download of the rows shown, a row's explanation), an upload mapped by hand, coverage, accessible
names of every control, and no broken image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("voila")
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

from test_browser import ARTIFACTS, PAGE_TIMEOUT_MS, chromium_browser, voila  # noqa: E402, F401

from conftest import SAMPLE_ORDERS  # noqa: E402

pytestmark = pytest.mark.browser

SEMICOLON_EXPORT = (b"order_id;Order Status;seller_reply;hours_since_contact\n"
                    b"A;Sent;No reply;50\nB;Sent;No reply;10\nC;Lost;;\n")
SLIDERS = ["Seller reply (h)", "Payment verification (h)", "Low rating (%)"] + [
    f"Refund \u00b7 {method} (d)" for method in ("Card", "PayPal", "Marketplace balance", "Bank transfer", "Boleto",
                                                 "WebMoney", "Cash on delivery")]


@pytest.fixture
def page(chromium_browser, request):  # noqa: F811
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    page.close()


def _open(page, voila, notebook: str) -> None:  # noqa: F811
    page.goto(f"{voila}/voila/render/{notebook}")
    page.locator(".cr-grid, .cr-slider").first.wait_for()


def _grid(page):
    return page.locator(".cr-grid").first


def _shown(grid) -> list[list[str]]:
    """The cells of the rows the grid shows."""
    return grid.locator("tbody tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.innerText))")


def _no_broken_image(page) -> None:
    widths = page.locator("img").evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth, i.alt])")
    assert all(done and width > 0 for done, width, _ in widths), widths
    assert all(alt for _, _, alt in widths)  # every chart says in words what it shows


def _unnamed_controls(page) -> list[str]:
    """Visible form controls with no label, aria-label or aria-labelledby (a name by placeholder only counts
    as none)."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.offsetParent !== null && e.type !== 'hidden')
        .filter(e => !(e.labels && e.labels.length && [...e.labels].some(l => l.textContent.trim()))
                     && !(e.getAttribute('aria-label') || '').trim() && !e.getAttribute('aria-labelledby'))
        .map(e => e.outerHTML.slice(0, 120))""")


def test_batch_grid_fits_sorts_searches_and_downloads_the_rows_shown(voila, page):  # noqa: F811
    _open(page, voila, "02_batch.ipynb")
    grid = _grid(page)
    expect(grid.locator("tbody tr")).to_have_count(10)
    grid.scroll_into_view_if_needed()
    action = grid.locator("thead th", has_text="action").first
    box = action.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1280  # on screen without scrolling sideways
    message = grid.locator("thead th", has_text="message").first.bounding_box()
    assert message["x"] + 100 <= 1280
    heights = [r.bounding_box()["height"] for r in grid.locator("tbody tr").all()]
    assert max(heights) <= 60, heights
    expect(grid.locator(".dt-info")).to_contain_text("of 389")

    grid.locator("thead th", has_text="line").first.click()  # ascending, then descending
    grid.locator("thead th", has_text="line").first.click()
    last = len(SAMPLE_ORDERS.read_text(encoding="utf-8").splitlines())  # header = line 1
    expect(grid.locator("tbody tr").first.locator("td").first).to_have_text(str(last))
    page.get_by_role("searchbox", name="Search").fill("seller_refused")
    expect(grid.locator(".dt-info")).to_contain_text("(of 389 in all)")
    page.get_by_role("combobox", name="entries per page").select_option("100")
    expect(grid.locator("tbody tr")).not_to_have_count(10)
    rows = _shown(grid)
    assert 10 < len(rows) < 100 and all(r[2] == "seller_refused" for r in rows)
    lines = [int(r[0]) for r in rows]
    assert lines == sorted(lines, reverse=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the rows shown (CSV)").click()
    got = pd.read_csv(download.value.path(), dtype=str, keep_default_na=False)
    assert download.value.suggested_filename == "decisions.csv"
    assert [list(r[:3]) for r in got[["line", "action", "rule_id"]].itertuples(index=False)] == \
        [r[:3] for r in rows]  # exactly the rows shown, in the order shown

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the rows without a decision (CSV)").click()
    bad = pd.read_csv(download.value.path(), dtype=str, keep_default_na=False)
    assert len(bad) == 9 and (bad["error"] != "").all() and (bad["action"] == "").all()

    grid.locator("tbody tr").first.click()  # its explanation
    detail = page.locator(".cr-order-detail")
    expect(detail).to_contain_text(f"line {rows[0][0]} of")
    expect(detail.locator(".cr-card")).to_have_attribute("data-action", "open_dispute")
    grid.locator("tbody tr").nth(1).focus()  # or with the keyboard: a row takes the focus, Enter opens it
    page.keyboard.press("Enter")
    expect(detail).to_contain_text(f"line {rows[1][0]} of")
    _no_broken_image(page)


def test_batch_coverage_names_and_upload_with_mapping(voila, page, tmp_path: Path):  # noqa: F811
    _open(page, voila, "02_batch.ipynb")
    for rule in ("refund_overdue", "reply_window_unknown"):
        row = page.locator(f".cr-coverage tr[data-rule='{rule}']")
        expect(row).to_contain_text("no order")
        expect(row).to_have_attribute("data-orders", "0")
    for role, name in [("listbox", "Actions"), ("listbox", "Rules"), ("searchbox", "Search"),
                       ("button", "Upload CSV")]:
        expect(page.get_by_role(role, name=name)).to_have_count(1)
    assert _unnamed_controls(page) == []
    _no_broken_image(page)

    export = tmp_path / "export.csv"
    export.write_bytes(SEMICOLON_EXPORT)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload CSV").click()
    chooser.value.set_files(str(export))
    expect(page.locator(".cr-problem")).to_contain_text("missing required column")
    status = page.get_by_role("combobox", name="Status (required)")
    expect(status).to_have_value("Order Status")  # suggested
    _no_broken_image(page)  # a failed read shows no chart at all
    page.get_by_role("button", name="Read the file with this mapping").click()
    expect(page.locator(".cr-status")).to_contain_text("export.csv: 3 orders, 2 decided, 1 without a decision")
    expect(page.locator(".cr-status")).to_contain_text("Order Status \u2192 status")
    grid = _grid(page)
    expect(grid.locator("tbody tr")).to_have_count(3)
    assert [r[:2] for r in _shown(grid)] == [["2", "open_dispute"], ["3", "wait_for_seller"], ["4", ""]]
    _no_broken_image(page)


def test_what_if_controls_are_named_typed_values_apply_and_charts_load(voila, page):  # noqa: F811
    _open(page, voila, "03_what_if.ipynb")
    expect(page.locator(".cr-no-change")).to_be_visible()
    _no_broken_image(page)
    for name in SLIDERS:
        expect(page.get_by_role("slider", name=name)).to_have_count(1)
        expect(page.get_by_role("spinbutton", name=name)).to_have_count(1)
    low = page.get_by_role("slider", name="Low rating (%)")
    assert (low.get_attribute("min"), low.get_attribute("max")) == ("0", "100")
    assert _unnamed_controls(page) == []

    hours = page.get_by_role("spinbutton", name="Seller reply (h)")
    hours.fill("72")  # no Enter: applies after a pause
    summary = page.locator(".cr-whatif-summary")
    expect(summary).to_contain_text("of 389 orders change")
    expect(page.get_by_role("slider", name="Seller reply (h)")).to_have_value("72")
    table = page.locator(".cr-by-action")
    expect(table).to_contain_text("before")
    _no_broken_image(page)
    chart = page.locator("img.cr-chart")
    assert "open_dispute" in chart.get_attribute("alt")
    grid = _grid(page)
    expect(grid.locator("tbody tr").first).to_contain_text("open_dispute")
    box = grid.locator("thead th", has_text="new_action").first.bounding_box()
    assert box["x"] + box["width"] <= 1280

    low.focus()  # the keyboard moves a slider
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("spinbutton", name="Low rating (%)")).to_have_value("89")
