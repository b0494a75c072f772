"""The batch and what-if workbench without a browser: the results grid (sort, search, filters, pages, downloads,
a row's explanation), uploads that map columns, coverage, and the what-if sliders and before/after counts."""

from __future__ import annotations

import base64
import io
import re

import pandas as pd
import pytest
import traitlets

pytest.importorskip("anywidget")

import engine  # noqa: E402
from conftest import AS_OF, SAMPLE_ORDERS, text, upload  # noqa: E402
from engine.html import chart_html  # noqa: E402
from engine.widgets import BatchView, ResultsGrid, WhatIf  # noqa: E402
from engine.widgets.grid import MAX_CELL  # noqa: E402

SAMPLE = SAMPLE_ORDERS
IDLE_RULES = {"refund_overdue", "reply_window_unknown"}  # rules no sample order reaches


@pytest.fixture(scope="module")
def batch(policy) -> BatchView:
    return BatchView(policy, SAMPLE, as_of=AS_OF)


@pytest.fixture
def grid(batch) -> ResultsGrid:
    """The batch's grid, back to no filter, search or sort."""
    g = batch.grid
    for box in g.filters.values():
        box.value = ()
    g.search_for("")
    g.sort_by()
    return g


def _csv(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


# ---------------------------------------------------------------------------------------------- the grid


def test_grid_puts_line_action_rule_message_error_first(batch, grid):
    assert grid.columns[:5] == ["line", "action", "rule_id", "message", "error"]
    assert "policy_version" not in grid.columns
    assert [c["name"] for c in grid.table.columns] == grid.columns  # what the browser is told


def test_grid_sort_by_a_column_both_ways_missing_last(batch, grid):
    grid.sort_by(("line", False))
    lines = grid.view()["line"].tolist()
    assert lines == sorted(lines, reverse=True) and len(lines) == len(batch.result)
    grid.sort_by(("rule_id", True), ("line", True))
    view = grid.view()
    decided = view["rule_id"].notna()
    assert not decided.iloc[decided.sum():].any()  # rows without a rule come last
    keys = list(zip(view["rule_id"][decided], view["line"][decided], strict=True))
    assert keys == sorted(keys)


def test_grid_search_narrows_to_rows_with_every_word(batch, grid):
    res = batch.result
    grid.search_for("SELLER_REFUSED")
    assert set(grid.view()["order_id"]) == set(res.loc[res["rule_id"] == "seller_refused", "order_id"])
    grid.search_for("seller_refused in transit")  # every word, any column
    expected = res[(res["rule_id"] == "seller_refused") & (res["status"] == "In transit")]
    assert 0 < len(grid.view()) == len(expected) < (res["rule_id"] == "seller_refused").sum()


def test_grid_filters_by_several_actions_and_rules_at_once(batch, grid):
    res = batch.result
    grid.filters["action"].value = ("open_dispute", "contact_seller")
    assert set(grid.view()["action"]) == {"open_dispute", "contact_seller"}
    assert len(grid.view()) == res["action"].isin(["open_dispute", "contact_seller"]).sum()
    grid.filters["rule_id"].value = ("seller_refused", "contact_seller_to_cancel")
    both = res["action"].isin(["open_dispute", "contact_seller"]) & res["rule_id"].isin(
        ["seller_refused", "contact_seller_to_cancel"])
    assert set(grid.view()["order_id"]) == set(res.loc[both, "order_id"])
    labels = dict((v, label) for label, v in grid.filters["action"].options)
    assert "Ask the seller to cancel" in labels["contact_seller"]  # the action's meaning beside its code


def test_grid_filter_on_no_action_shows_the_bad_rows_with_their_csv_lines(batch, grid):
    grid.filters["action"].value = ("",)
    view = grid.view()
    assert len(view) == batch.result["error"].notna().sum() == 9
    raw = SAMPLE.read_text(encoding="utf-8").splitlines()
    for line, order_id in zip(view["line"], view["order_id"], strict=True):
        assert raw[line - 1].startswith(order_id + ",")  # the line is the file's, header = line 1


def test_grid_download_gives_exactly_the_rows_shown(batch, grid):
    grid.filters["action"].value = ("open_dispute", "wait_for_refund")
    grid.search_for("paypal")
    grid.sort_by(("order_id", False))
    grid.download.click()
    name, data = grid.last_download
    got = _csv(data)
    assert name == "decisions.csv"
    assert list(got.columns) == grid.columns
    assert list(got["order_id"]) == list(grid.view()["order_id"]) and 0 < len(got) < 30
    assert list(got["line"].astype(int)) == list(grid.view()["line"])


def test_grid_download_of_the_bad_rows_alone(batch, grid):
    grid.filters["action"].value = ("open_dispute",)  # the bad rows are all of them, whatever is filtered
    grid.download_bad.click()
    name, data = grid.last_download
    got = _csv(data)
    assert name == "decisions-without-decision.csv"
    bad = batch.result[batch.result["error"].notna()]
    assert list(got["order_id"]) == list(bad["order_id"]) and (got["error"] != "").all()


def test_grid_answers_the_browser_one_page_at_a_time(batch, grid):
    grid.table.request = {"draw": 3, "start": 10, "length": 10, "search": "open_dispute",
                          "order": [[0, "desc"]]}
    r = grid.table.response
    shown = batch.result[batch.result["action"] == "open_dispute"]
    assert (r["draw"], r["total"], r["filtered"]) == (3, len(batch.result), len(shown))
    assert len(r["rows"]) == 10
    lines = [int(re.sub(r"<[^>]+>", "", row["0"])) for row in r["rows"]]
    assert lines == sorted(lines, reverse=True)
    assert grid.order == [("line", False)] and grid.search == "open_dispute"


def test_grid_cells_truncate_long_text_with_the_full_text_on_hover():
    message = "word " * 100
    g = ResultsGrid(pd.DataFrame({"action": ["a", None], "message": [message, "short"],
                                  "error": [None, "status: unknown value 'x'"]}))
    row, bad = g.page(0, 2)
    cell = row[str(g.columns.index("message"))]
    assert f"title='{message}'" in cell
    assert len(re.sub(r"<[^>]+>", "", cell)) == MAX_CELL + 1 and cell.endswith("…</span>")
    assert "DT_RowClass" not in row and bad["DT_RowClass"] == "cr-bad"


def test_grid_click_on_a_row_opens_its_explanation(policy, batch, grid):
    grid.search_for("seller_refused")
    pos = int(grid.positions[0])
    grid._message(None, {"type": "open", "pos": pos}, [])  # what a click in the browser sends
    order = batch.result.iloc[pos]
    detail = batch.detail.value
    assert f"data-pos='{pos}'" in detail and order["order_id"] in detail
    assert f"line {pos + 2} of" in text(detail)
    assert "data-action='open_dispute'" in detail and "What would change it" in text(detail)
    bad = int(batch.result.index[batch.result["error"].notna()][0])
    grid.open_row(bad)
    assert "data-action" not in batch.detail.value
    assert batch.result.loc[bad, "error"] in text(batch.detail.value)


# ---------------------------------------------------------------------------------------------- uploads


def test_upload_with_semicolons_and_order_status_is_read_after_mapping(policy):
    view = BatchView(policy, None, as_of=AS_OF)
    upload(view, "export.csv", b"order_id;Order Status;seller_reply;hours_since_contact\n"
                               b"A;Sent;No reply;50\n\nB;Sent;No reply;10\nC;Lost;;\n")
    assert "missing required column" in view.status.value and view.result is None
    assert view.mapping_step.layout.display == "flex"
    assert view.mapping_step.controls["status"].value == "Order Status"  # suggested by name
    view.mapping_step.apply.click()
    assert view.mapping_step.layout.display == "none"
    assert list(view.result["action"].fillna("-")) == ["open_dispute", "wait_for_seller", "-"]
    assert "export.csv: 3 orders, 2 decided, 1 without a decision" in text(view.status.value)
    assert "Order Status → status" in text(view.status.value)
    assert list(view.grid.view()["line"]) == [2, 4, 5]  # the blank line 3 is skipped, lines are the file's


def test_upload_mapping_that_is_not_valid_says_why_and_waits(policy):
    view = BatchView(policy, None, as_of=AS_OF)
    upload(view, "x.csv", b"Order Status,State\nSent,Sent\n")
    step = view.mapping_step
    step.controls["status"].value = ""
    step.apply.click()
    assert "missing required column" in text(step.problem.value) and view.result is None
    step.submit({"Order Status": "status", "State": "status"})
    assert "would both be read as 'status'" in text(step.problem.value) and view.result is None


def test_failed_upload_leaves_no_image_and_no_rows(policy):
    view = BatchView(policy, SAMPLE, as_of=AS_OF)
    assert view.chart.value.startswith("<img")
    upload(view, "bad.csv", b"\xff\xfe\x00not text")
    assert "not UTF-8" in view.status.value
    assert view.chart.value == "" and len(view.grid.frame) == 0  # no <img> at all: never a broken image
    assert chart_html(b"", "nothing") == ""


# ---------------------------------------------------------------------------------------------- coverage


def test_coverage_lists_every_rule_and_highlights_the_idle_ones(policy, batch):
    cov = policy.coverage(batch.result)
    assert list(cov["rule_id"]) == [r.id for r in policy.spec.ranked_rules()]
    assert set(cov.loc[cov["orders"] == 0, "rule_id"]) == IDLE_RULES
    html = batch.coverage.value
    for rule in cov["rule_id"]:
        assert f"data-rule='{rule}'" in html
    for rule in IDLE_RULES:
        row = re.search(rf"<tr [^>]*data-rule='{rule}'[^>]*>.*?</tr>", html, flags=re.S).group(0)
        assert "data-orders='0'" in row and "no order" in text(row) and "background" in row
    alt = re.search(r"alt='([^']*)'", batch.chart.value).group(1)
    assert "Rules that decided no order: " in alt and all(r in alt for r in IDLE_RULES)


# ---------------------------------------------------------------------------------------------- what-if


@pytest.fixture(scope="module")
def whatif(policy) -> WhatIf:
    return WhatIf(policy, SAMPLE, as_of=AS_OF)


def test_what_if_sliders_have_human_labels_units_and_ranges(whatif):
    s = whatif.sliders
    low = s["low_rating_percent"]
    assert (low.label, low.unit, low.min, low.max) == ("Low rating (%)", "%", 0.0, 100.0)
    assert s["seller_reply_hours"].label == "Seller reply (h)"
    assert s["refund_days.card"].label == "Refund · Card (d)"
    hours = float(pd.to_numeric(engine.read_orders(SAMPLE)["hours_since_contact"],
                                        errors="coerce").max())
    assert s["seller_reply_hours"].max >= hours  # every order's value can be reached
    for slider in s.values():
        assert slider.label and "_" not in slider.label and slider.min <= slider.value <= slider.max


def test_what_if_typed_value_past_the_end_moves_it_and_out_of_range_is_refused(whatif):
    slider = whatif.sliders["seller_reply_hours"]
    slider.value = slider.max + 50  # typed past the slider's end
    assert slider.max == slider.value
    assert whatif.candidate.spec.parameters["seller_reply_hours"] == slider.value
    with pytest.raises(traitlets.TraitError, match="outside"):
        whatif.sliders["low_rating_percent"].value = 120
    whatif.reset.click()
    assert slider.value == 48


def test_what_if_counts_by_action_before_and_after(policy, whatif):
    whatif.sliders["seller_reply_hours"].value = 72
    table = whatif.by_action()
    before = policy.evaluate(engine.read_orders(SAMPLE), as_of=AS_OF)["action"].fillna("(no decision)")
    after = policy.with_parameters(seller_reply_hours=72).evaluate(engine.read_orders(SAMPLE), as_of=AS_OF)
    after = after["action"].fillna("(no decision)")
    for rec in table.itertuples():
        assert rec.before == (before == rec.action).sum() and rec.after == (after == rec.action).sum()
    assert table["change"].sum() == 0 and (table["change"] != 0).any()
    alt = re.search(r"alt='([^']*)'", whatif.chart.value).group(1)
    moved = table[table["action"] == "open_dispute"].iloc[0]
    assert f"open_dispute {moved.before} → {moved.after}" in alt
    svg = base64.b64decode(re.search(r"base64,([^']+)'", whatif.chart.value).group(1)).decode()
    drawn = re.findall(r"<text[^>]*>([\d,]+)</text>", svg)  # the value beside each bar: before, after per action
    assert [int(v.replace(",", "")) for v in drawn] == [n for r in table.itertuples() for n in (r.before, r.after)]
    whatif.reset.click()


def test_grid_column_titles_from_a_file_header_are_escaped():
    # DataTables puts a column's title into the page as HTML: a header from an uploaded file must not be markup
    g = ResultsGrid(pd.DataFrame({"action": ["a"], "<img src=x onerror=alert(1)>": ["v"]}))
    titles = [c["title"] for c in g.table.columns]
    assert titles == ["action", "&lt;img src=x onerror=alert(1)&gt;"]
    assert g.table.columns[1]["name"] == "<img src=x onerror=alert(1)>"  # the data keeps its name
