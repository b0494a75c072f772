"""The explorer as an app: one vocabulary (labels shown, codes on hover), accessible controls, the plain decision
below it kept in step, and the Voila config that culls the kernels of closed pages."""

from __future__ import annotations

import re
from html import unescape

import pytest

pytest.importorskip("ipywidgets")

from conftest import AS_OF, ROOT, rule_rows, text  # noqa: E402
from engine.text import humanize  # noqa: E402
from engine.widgets import Explorer  # noqa: E402
from engine.widgets.aria import LiveHTML, NamedCheckbox  # noqa: E402

SENT_NO_REPLY_50H = {"status": "Sent", "seller_reply": "No reply", "hours_since_contact": 50}


def titles(html: str) -> list[str]:
    return [unescape(t) for t in re.findall(r"title='([^']*)'", html)]


def test_explanation_speaks_the_dropdowns_words_with_codes_on_hover(policy):
    ex = Explorer(policy, order=SENT_NO_REPLY_50H, as_of=AS_OF)
    rows = rule_rows(ex.rules.value)
    silent = text(rows["seller_silent_past_window"]["html"])
    assert "Seller reply = No reply (actual: No reply)" in silent
    assert "Hours since contact ≥ Seller reply hours = 48 h (actual: 50 h)" in silent
    assert "Status in [Awaiting shipment, Awaiting cancellation] (actual: Sent)" in \
        text(rows["contact_low_rated_seller_now"]["html"])
    shown = text(ex.rules.value)
    for code in ("no_reply", "shipped", "awaiting_shipment", "seller_reply =", "hours_since_contact "):
        assert code not in shown, code  # codes only on hover
    hover = titles(ex.rules.value)
    assert "seller_reply = no_reply" in hover and "shipped" in hover
    assert "hours_since_contact ≥ seller_reply_hours = 48 h" in hover
    # every value label the explanation shows for an enum fact is one the fact's dropdown offers
    for name, widget in ex.inputs.items():
        fact = policy.spec.facts[name]
        if fact.type == "enum":
            offered = {label for label, _ in widget.options}
            assert {fact.label(v) for v in fact.values} <= offered
            assert widget.label in shown  # the chosen label is the actual value the table shows
    # the hint names facts as the controls do
    assert "Status:" in text(ex.hint.value) and "title='status'" in ex.hint.value


def test_actions_show_their_description_with_the_code(policy):
    ex = Explorer(policy, order=SENT_NO_REPLY_50H, as_of=AS_OF)
    meaning = policy.spec.actions["open_dispute"]
    then = text(rule_rows(ex.rules.value)["seller_silent_past_window"]["html"])
    assert f"open_dispute {meaning}" in then
    card = text(ex.result.value)
    assert "open_dispute" in card and meaning in card
    hint = ex.hint.value  # value changes name the action with its description on hover
    assert f"title='{policy.spec.actions['wait_for_seller']}'>wait_for_seller</code>" in unescape(hint)


def test_dropdowns_hover_names_the_code_of_the_chosen_label(policy):
    ex = Explorer(policy, order={"status": "Awaiting shipment"}, as_of=AS_OF)
    status = ex.inputs["status"]
    assert status.tooltip.endswith("(status = awaiting_shipment)")
    status.value = "shipped"
    assert status.label == "Sent" and status.tooltip.endswith("(status = shipped)")
    assert ex.inputs["payment_method"].tooltip.endswith("(payment_method not given)")


def test_every_explorer_control_has_a_name_of_its_own(policy):
    ex = Explorer(policy, as_of=AS_OF)
    names = [widget.description for widget in ex.inputs.values()]
    names += [box.name for box in ex.not_given.values()] + [s.description for s in ex.stamps.values()]
    names.append(ex.as_of.description)
    assert all(names) and len(set(names)) == len(names)
    for name, box in ex.not_given.items():
        assert isinstance(box, NamedCheckbox)
        assert box.text == "not given" and box.name == f"{humanize(name)} not given"
    for name, stamp in ex.stamps.items():  # a visible label, not only a placeholder
        assert stamp.description == f"or {humanize(policy.spec.facts[name].from_timestamp)}"
    assert ex.inputs["hours_since_contact"].description == "Hours since contact (h)"


def test_not_given_box_drives_the_decision_both_ways(policy):
    ex = Explorer(policy, order=SENT_NO_REPLY_50H, as_of=AS_OF)
    box = ex.not_given["hours_since_contact"]
    box.value = True  # what the browser's checkbox sets through the model
    assert ex.decision.rule_id == "reply_window_unknown"
    ex.inputs["hours_since_contact"].value = 10  # typing a number ticks it off again
    assert box.value is False and ex.decision.rule_id == "wait_for_seller_reply"


def test_decision_card_is_a_persistent_polite_live_region(policy):
    ex = Explorer(policy, order=SENT_NO_REPLY_50H, as_of=AS_OF)
    assert isinstance(ex.result, LiveHTML) and ex.result.label == "Decision"
    for attribute in ('"role", "status"', '"aria-live", "polite"', '"aria-atomic", "true"'):
        assert attribute in ex.result._esm
    region = ex.result
    ex.inputs["hours_since_contact"].value = 10
    assert ex.result is region and "data-action='wait_for_seller'" in region.value


def test_plain_decision_below_follows_the_explorer(policy):
    ex = Explorer(policy, order={"status": "Awaiting shipment"}, as_of=AS_OF)
    assert "class='cr-decision'" in ex.plain.value and "data-action='contact_seller'" in ex.plain.value
    ex.inputs["status"].value = "shipped"
    ex.inputs["seller_reply"].value = "no_reply"
    ex.inputs["hours_since_contact"].value = 50
    assert "data-action='open_dispute'" in ex.plain.value
    assert "Seller reply = No reply (actual: No reply)" in text(ex.plain.value)
    assert "no_reply" not in text(ex.plain.value)
    ex.inputs["hours_since_contact"].value = -1  # no decision: the plain view says why, as the card does
    assert "invalid order" in ex.plain.value


def test_the_notebook_shows_the_explorers_own_decision_not_a_fixed_order():
    import nbformat

    book = nbformat.read(ROOT / "notebooks" / "01_explore.ipynb", as_version=4)
    code = "".join(c.source for c in book.cells if c.cell_type == "code")
    assert "explorer.plain" in code and "policy.decide({" not in code


def test_voila_json_culls_idle_kernels_through_voilas_own_config_loading(monkeypatch):
    voila_app = pytest.importorskip("voila.app")
    monkeypatch.chdir(ROOT)  # where the README runs Voila: it reads voila.json from the current directory
    app = voila_app.Voila()
    assert app.config_file_paths[0] == str(ROOT)
    app.initialize(["notebooks"])
    app.init_settings()  # builds the kernel manager the app serves pages with
    manager = app.kernel_manager
    assert manager.cull_idle_timeout == 600 and manager.cull_interval == 60
    assert manager.cull_connected is False  # an open page is never culled, however idle
    assert app.voila_configuration.extension_denylist == ["@jupyter-notebook/lab-extension"]
