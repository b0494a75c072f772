"""The explorer page in Debian's Chromium at 1280×800: every control found by role and name, the decision card a
live region, the dropdowns' words in the explanation, keyboard use, no broken image; and a Voila app with the
repository's voila.json culling the kernel of a closed page."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("voila")
psutil = pytest.importorskip("psutil")
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

from test_browser import ARTIFACTS, PAGE_TIMEOUT_MS, ROOT, chromium_browser, voila, voila_server  # noqa: E402, F401

import engine  # noqa: E402
from engine.text import humanize  # noqa: E402

pytestmark = pytest.mark.browser

EXPLORE = "/voila/render/01_explore.ipynb"
SPEC = engine.load().spec


@pytest.fixture
def page(chromium_browser, voila, request):  # noqa: F811
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(voila + EXPLORE)
    expect(page.locator(".cr-explorer .cr-card")).to_have_count(1)
    yield page
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    page.close()


def _controls() -> list[tuple[str, str]]:
    """(role, accessible name) of every control the explorer should have, from the policy's facts."""
    out = []
    for name, fact in SPEC.facts.items():
        label = humanize(name)
        if fact.type == "enum":
            out.append(("combobox", label))
        elif fact.type == "number":
            out.append(("spinbutton", label + (f" ({fact.unit})" if fact.unit else "")))
            if not fact.required:
                out.append(("checkbox", f"{label} not given"))
            if fact.from_timestamp:
                out.append(("textbox", f"or {humanize(fact.from_timestamp)}"))
        else:
            out.append(("textbox", label))
    return out


def test_every_explorer_control_is_found_by_role_and_name(page):
    explorer = page.locator(".cr-explorer")
    expected = _controls()
    for role, name in expected:
        expect(explorer.get_by_role(role, name=name, exact=True)).to_have_count(1)
    as_of = explorer.get_by_label("As of", exact=True)
    expect(as_of).to_have_count(1)
    # and nothing else: every input and select of the explorer is one of those (the as-of picker is the last)
    assert explorer.locator("input, select, textarea").count() == len(expected) + 1


def test_decision_card_is_announced_from_one_live_region(page):
    explorer = page.locator(".cr-explorer")
    region = explorer.locator("[aria-live]")
    expect(region).to_have_count(1)
    expect(region).to_have_attribute("aria-live", "polite")
    expect(region).to_have_attribute("role", "status")
    expect(region.locator(".cr-card")).to_have_attribute("data-action", "contact_seller")
    region.evaluate("el => { el.dataset.seen = 'before' }")  # a live region must stay, only its content change
    explorer.get_by_role("combobox", name="Status").select_option(label="Closed")
    expect(region.locator(".cr-card")).to_have_attribute("data-action", "wait_for_refund")
    expect(explorer.locator("[aria-live][data-seen='before']")).to_have_count(1)


def test_dropdown_labels_are_the_explanations_words(page):
    explorer = page.locator(".cr-explorer")
    explorer.get_by_role("combobox", name="Status").select_option(label="Sent")
    explorer.get_by_role("combobox", name="Seller reply").select_option(label="No reply")
    hours = explorer.get_by_role("spinbutton", name="Hours since contact (h)")
    hours.fill("50")
    hours.press("Enter")
    fired = explorer.locator("tr.cr-fired")
    expect(fired).to_have_attribute("data-rule", "seller_silent_past_window")
    expect(fired).to_contain_text("Seller reply = No reply (actual: No reply)")
    expect(fired).to_contain_text("open_dispute" + SPEC.actions["open_dispute"])
    expect(fired.get_by_title("seller_reply = no_reply")).to_have_count(1)  # the code, on hover
    rules = explorer.locator("tr.cr-rule")
    shown = " ".join(rules.all_inner_texts())
    for code in ("shipped", "no_reply", "awaiting_shipment", "hours_since_contact"):
        assert code not in shown, code
    # each enum's selected label is the 'actual' the table shows for that fact, and every label the table
    # shows for it is one of its dropdown's options
    for name, fact in SPEC.facts.items():
        if fact.type != "enum" or name not in {c.fact for r in SPEC.rules for c in r.conditions}:
            continue
        select = explorer.get_by_role("combobox", name=humanize(name))
        # ipywidgets writes the spaces of an option's label as no-break spaces
        options = {o.replace("\xa0", " ") for o in select.locator("option").all_text_contents()}
        chosen = select.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
        actual = "not given" if chosen == "not given" else chosen
        conditions = [t for t in rules.locator("td div").all_inner_texts() if t[2:].startswith(humanize(name) + " ")]
        assert conditions and all(f"(actual: {actual})" in t for t in conditions), (name, conditions)
        for t in conditions:
            said = re.match(rf". {humanize(name)} (?:=|≠|in|not in) \[?(.*?)\]? \(actual:", t)
            assert said and all(v in options for v in said.group(1).split(", ")), (name, t)


def test_keyboard_alone_drives_the_explorer(page):
    explorer = page.locator(".cr-explorer")
    card = explorer.locator(".cr-card")
    status = explorer.get_by_role("combobox", name="Status")
    status.focus()
    page.keyboard.type("Sent")  # type-ahead on a closed select
    expect(status).to_have_value("Sent")  # ipywidgets gives each option its label as value
    page.keyboard.press("Tab")
    reply = explorer.get_by_role("combobox", name="Seller reply")
    expect(reply).to_be_focused()
    page.keyboard.type("No reply")
    page.keyboard.press("Tab")
    hours = explorer.get_by_role("spinbutton", name="Hours since contact (h)")
    expect(hours).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("50")
    page.keyboard.press("Tab")  # leaving the field applies the number
    expect(card).to_have_attribute("data-action", "open_dispute")
    not_given = explorer.get_by_role("checkbox", name="Hours since contact not given")
    expect(not_given).to_be_focused()
    expect(not_given).not_to_be_checked()  # typing a number made the fact given
    page.keyboard.press("Space")
    expect(not_given).to_be_checked()
    expect(explorer.locator("tr.cr-fired")).to_have_attribute("data-rule", "reply_window_unknown")
    page.keyboard.press("Tab")
    expect(explorer.get_by_role("textbox", name="or Contacted at")).to_be_focused()


def test_plain_decision_below_follows_the_explorer_and_no_image_is_broken(page):
    plain = page.locator(".cr-decision .cr-card")  # the notebook's "as a plain table" section
    expect(plain).to_have_attribute("data-action", "contact_seller")
    page.locator(".cr-explorer").get_by_role("combobox", name="Status").select_option(label="Closed")
    expect(plain).to_have_attribute("data-action", "wait_for_refund")
    expect(page.locator(".cr-decision")).to_contain_text("Status = Closed (actual: Closed)")
    broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.src.slice(0, 80))")
    assert broken == []


# ---------------------------------------------------------------------------------------------- culling


@pytest.fixture
def culling_voila(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Voila run as the README says (its cwd holds voila.json), with the repository's voila.json but its two
    culling times cut to seconds for the test; XSRF checks on, as a shared app keeps them."""
    config = json.loads((ROOT / "voila.json").read_text(encoding="utf-8"))
    kernels = config.get("MappingKernelManager", {})
    assert kernels.get("cull_idle_timeout", 0) > 0 and kernels.get("cull_interval", 0) > 0, "voila.json culls nothing"
    kernels.update(cull_idle_timeout=3, cull_interval=1)
    (tmp_path / "voila.json").write_text(json.dumps(config), encoding="utf-8")
    with voila_server([], tmp_path, "voila-culling.log") as running:
        yield running


def _kernels(proc: subprocess.Popen) -> int:
    """Live kernel processes of the server (a culled kernel may linger a moment as a zombie)."""
    count = 0
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            count += child.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(child.cmdline())
        except psutil.Error:  # gone between listing and reading
            pass
    return count


def _wait_for_kernels(proc: subprocess.Popen, count: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while _kernels(proc) != count and time.monotonic() < deadline:
        time.sleep(0.25)
    return _kernels(proc)


def test_closed_page_kernel_is_culled_an_open_one_is_not(chromium_browser, culling_voila):  # noqa: F811
    url, proc = culling_voila
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url + EXPLORE)
    expect(page.locator(".cr-explorer .cr-card")).to_have_count(1)
    assert _kernels(proc) == 1
    time.sleep(5)  # past the 3 s idle timeout: an open page's kernel is connected, so it stays
    assert _kernels(proc) == 1
    page.close()  # as a closed tab or a lost connection: no shutdown request reaches the server
    assert _wait_for_kernels(proc, 0, seconds=30) == 0
