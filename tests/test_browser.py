"""The notebooks served by Voila, driven in Debian's Chromium: the explorer reacts, the batch view summarizes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import stop

pytest.importorskip("voila")
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_TIMEOUT_MS = 60_000  # the first render starts a kernel: a few seconds, more on a busy CI machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def voila_server(options: list[str], cwd: Path, log_name: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Voila server on the notebooks folder at a free port, run from cwd (where it reads voila.json), its log in
    ARTIFACTS/log_name; (URL, process) once it listens: polled on its port, since GET / would start a kernel."""
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / log_name, "w") as log:
        command = [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", *options,
                   str(ROOT / "notebooks")]
        proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"voila did not start; see {ARTIFACTS / log_name}") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}", proc
        finally:
            stop(proc, timeout=10)


@pytest.fixture(scope="module")
def voila() -> Iterator[str]:
    """A Voila server on the notebooks folder, run from the repository root."""
    with voila_server(["--Voila.tornado_settings=disable_check_xsrf=True",
                       "--VoilaConfiguration.extension_denylist=['@jupyter-notebook/lab-extension']"],
                      ROOT, "voila.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def chromium_browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: run bash .ci/setup (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def app_page(chromium_browser, request):
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    # a screenshot on every run, pass or fail, to see what the browser saw
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    page.close()


def test_explorer_fired_rule_follows_status_reply_and_hours(voila, app_page):
    page = app_page
    page.goto(f"{voila}/voila/render/01_explore.ipynb")
    explorer = page.locator(".cr-explorer")  # the notebook also displays a static Decision card
    card = explorer.locator(".cr-card")
    expect(card).to_have_attribute("data-action", "contact_seller")  # the notebook starts at "Awaiting shipment"
    page.get_by_label("Status").select_option(label="Sent")
    page.get_by_label("Seller reply").select_option(label="No reply")
    hours = page.get_by_label("Hours since contact (h)")
    hours.fill("50")
    hours.press("Enter")
    expect(card).to_have_attribute("data-action", "open_dispute")
    expect(explorer.locator(".cr-action")).to_have_text("open_dispute")
    fired = explorer.locator("tr.cr-fired")
    expect(fired).to_have_count(1)
    expect(fired).to_have_attribute("data-rule", "seller_silent_past_window")
    expect(fired).to_have_css("background-color", "rgb(215, 245, 221)")  # highlighted, not just marked up

    hours.fill("10")
    hours.press("Enter")
    expect(card).to_have_attribute("data-action", "wait_for_seller")
    expect(fired).to_have_attribute("data-rule", "wait_for_seller_reply")
    expect(explorer.locator(".cr-hint-time")).to_contain_text("In 38 h")


def test_batch_view_shows_the_summary(voila, app_page):
    page = app_page
    page.goto(f"{voila}/voila/render/02_batch.ipynb")
    expect(page.locator(".cr-status")).to_contain_text("389 orders, 380 decided, 9 without a decision")
    summary = page.locator(".cr-summary")
    expect(summary).to_contain_text("By action")
    expect(summary).to_contain_text("contact_seller")
    expect(page.locator("img").first).to_be_visible()  # the chart
    page.get_by_label("Actions").select_option(index=1)  # the second most common action: open_dispute
    expect(page.locator(".cr-grid tbody tr").first).to_contain_text("open_dispute")


def test_what_if_variant_shows_the_orders_that_change(voila, app_page):
    page = app_page
    page.goto(f"{voila}/voila/render/03_what_if.ipynb")
    expect(page.locator(".cr-no-change")).to_be_visible()  # the current policy against itself
    page.get_by_label("Start from").select_option(label="legacy-72h")
    expect(page.locator(".cr-whatif-summary")).to_contain_text("Candidate: legacy-72h")
    expect(page.locator(".cr-whatif-summary")).not_to_contain_text(" 0 of ")
    expect(page.get_by_text("wait_for_seller_reply").first).to_be_visible()


def test_policy_editor_diff_located_error_and_save(voila, app_page, tmp_path):
    """Issue 12: the reply window 48 -> 72 moves orders to wait_for_seller and fails the shipped cases that pin 48 h;
    a rule with a misspelt fact gets its located error next to it and changes nothing else; Save writes what
    engine.load reads back, comments kept."""
    import re

    import pandas as pd
    from test_editor import PINNING_48H, SHIPPED_CASES

    import engine
    from conftest import AS_OF, SAMPLE_ORDERS

    n = len(pd.read_csv(SHIPPED_CASES, dtype=str))

    page = app_page
    page.goto(f"{voila}/voila/render/04_author.ipynb")
    status = page.locator(".cr-editor-status")
    expect(status).to_contain_text("all rule examples pass")
    expect(page.locator(".cr-diff-summary")).to_contain_text("0 of 389 orders change")
    tests, failures = page.locator(".cr-test-status"), page.locator(".cr-failures")
    expect(tests).to_contain_text(f"{n} cases, {n} passed, 0 failed")

    window = page.get_by_label("seller_reply_hours")
    window.fill("72")
    window.press("Enter")
    summary = page.locator(".cr-diff-summary")
    expect(summary).to_contain_text("14 of 389 orders change")
    moved = page.locator("table", has=page.locator("th", has_text="old_action")).locator("tbody tr").first
    expect(moved).to_contain_text("open_dispute")
    expect(moved).to_contain_text("wait_for_seller")
    expect(page.locator("img").first).to_be_visible()  # the transitions chart
    expect(tests).to_contain_text(f"{n} cases, {n - 6} passed, 6 failed")
    for case in PINNING_48H:
        expect(failures).to_contain_text(case)
    transitions = page.locator("table", has=page.locator("th", has_text="old_action")).first.inner_text()

    for cell, value in (("id", "refused_twice"), ("other-conditions", "{seller_raply: refused}"),
                        ("action", "open_dispute"), ("priority", "56")):
        page.locator(f".cr-new-{cell} input").fill(value)
        page.locator(f".cr-new-{cell} input").press("Enter")
    page.get_by_role("button", name="Add rule").click()
    located = page.locator(".cr-rule-status[data-rule='refused_twice']")
    expect(located).to_contain_text(re.compile(r"line \d+:12: unknown fact 'seller_raply'"))
    expect(located).to_contain_text("did you mean 'seller_reply'?")
    expect(status).to_contain_text("1 problem")
    expect(summary).to_contain_text("14 of 389 orders change")  # nothing else changed
    assert page.locator("table", has=page.locator("th", has_text="old_action")).first.inner_text() == transitions

    page.get_by_role("button", name="Revert").click()
    expect(summary).to_contain_text("0 of 389 orders change")
    expect(tests).to_contain_text(f"{n} cases, {n} passed, 0 failed")
    expect(failures).to_contain_text("Every case passed.")
    rating = page.get_by_label("low_rating_percent")
    rating.fill("85")
    rating.press("Enter")
    expect(summary).not_to_contain_text(" 0 of 389")
    target = tmp_path / "authored.yaml"
    save_to = page.get_by_label("Save to")
    save_to.fill(str(target))
    save_to.press("Enter")
    expect(save_to).to_have_value(str(target))
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".cr-saved")).to_contain_text("authored.yaml")

    saved = engine.load(target)
    edited = engine.load().with_parameters(low_rating_percent=85)
    orders = engine.read_orders(SAMPLE_ORDERS)
    assert saved.evaluate(orders, as_of=AS_OF)["action"].tolist() == \
        edited.evaluate(orders, as_of=AS_OF)["action"].tolist()
    original = Path(engine.DEFAULT_POLICY).read_text()
    comments = [line.strip() for line in original.splitlines() if line.strip().startswith("#")]
    assert comments and all(c in target.read_text() for c in comments)
