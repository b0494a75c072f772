"""The policy editor without a browser: edit cells, parameters and YAML as a user would, read the checks."""

from __future__ import annotations

import asyncio
import difflib
import re
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ipywidgets")

import engine  # noqa: E402
from conftest import AS_OF, LEGACY, SAMPLE_ORDERS  # noqa: E402
from engine.widgets import PolicyEditor  # noqa: E402
from engine.widgets.editor import SHIPPED_CASES, bump_version  # noqa: E402
from engine.widgets.magic import policy_cell  # noqa: E402


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'").strip()


def _changed(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.fixture
def editor() -> PolicyEditor:
    return PolicyEditor(engine.load(), SAMPLE_ORDERS, as_of=AS_OF, debounce=0)


def _status_of(editor: PolicyEditor, rule_id: str) -> str:
    index = [row["id"].value for row in editor.table.rows].index(rule_id)
    return _text(editor.table.status[index].value)


def test_table_has_a_row_per_rule_and_a_column_per_fact_used(editor: PolicyEditor) -> None:
    spec = editor.saved.spec
    assert [row["id"].value for row in editor.table.rows] == [r.id for r in spec.rules]
    assert editor.table.columns == [f for f in spec.facts if f in {c.fact for r in spec.rules for c in r.conditions}]
    row = editor.table.cells([r.id for r in spec.rules].index("seller_silent_past_window"))
    assert (row["seller_reply"], row["hours_since_contact"], row["action"], row["priority"], row["status"]) == \
        ("no_reply", "{gte: $seller_reply_hours}", "open_dispute", "50", "")
    assert "all rule examples pass" in _text(editor.status.value)
    assert "✓ 2 examples pass" in _status_of(editor, "seller_silent_past_window")
    assert "0 of 389 orders change" in _text(editor.summary.value)


def test_reply_window_72_moves_orders_from_open_dispute_to_wait_for_seller(editor: PolicyEditor) -> None:
    editor.params["seller_reply_hours"].value = "72"
    assert _changed(editor.saved_text, editor.yaml.value) == ["-  seller_reply_hours: 48", "+  seller_reply_hours: 72"]
    assert "14 of 389 orders change" in _text(editor.summary.value)
    transitions = _text(editor.transitions.value)
    assert "open_dispute seller_silent_past_window wait_for_seller wait_for_seller_reply 14" in transitions
    assert editor.chart.value[:4] == b"\x89PNG"
    assert "2 rule examples fail" in _text(editor.status.value)
    assert "✗ 2 of 2 examples fail" in _status_of(editor, "seller_silent_past_window")


def test_a_rule_with_a_misspelt_fact_is_located_next_to_it_and_nothing_else_changes(editor: PolicyEditor) -> None:
    shown = [x.value for x in (editor.summary, editor.transitions, editor.verify, editor.examples)]
    for name, value in {"id": "refused_twice", "other conditions": "{seller_raply: refused}",
                        "action": "open_dispute", "priority": "56"}.items():
        editor.table.new[name].value = value
    editor.table.add.click()
    line = editor.text.splitlines().index("    when: {seller_raply: refused}") + 1
    assert _status_of(editor, "refused_twice") == \
        f"⚠ line {line}:12: unknown fact 'seller_raply' (did you mean 'seller_reply'?)"
    assert "1 problem" in _text(editor.status.value)
    assert [x.value for x in (editor.summary, editor.transitions, editor.verify, editor.examples)] == shown
    assert "✓ 2 examples pass" in _status_of(editor, "seller_silent_past_window")
    assert editor.candidate.spec.rules == editor.saved.spec.rules


def test_cell_edits_write_the_yaml_and_yaml_edits_fill_the_table(editor: PolicyEditor) -> None:
    rows = [row["id"].value for row in editor.table.rows]
    index = rows.index("contact_low_rated_seller_now")
    editor.table.rows[index]["seller_rating"].value = "{lt: 80}"
    assert _changed(editor.saved_text, editor.yaml.value) == [
        "-      seller_rating: {lt: $low_rating_percent}", "+      seller_rating: {lt: 80}"]
    editor.yaml.value = editor.yaml.value.replace("    priority: 41\n", "    priority: 45\n")
    assert editor.table.rows[index]["priority"].value == "45"
    assert editor.candidate.spec.rule("contact_low_rated_seller_now").priority == 45


def test_a_cell_that_is_not_yaml_is_refused_in_its_row(editor: PolicyEditor) -> None:
    index = [row["id"].value for row in editor.table.rows].index("dispute_in_progress")
    editor.table.rows[index]["status"].value = "{in: [disputed"
    assert "is not a YAML value" in _text(editor.table.status[index].value)
    assert editor.text == editor.saved_text


def test_save_writes_a_file_load_reads_back_with_comments_and_a_bumped_version(editor: PolicyEditor,
                                                                               tmp_path: Path) -> None:
    editor.params["low_rating_percent"].value = "85"
    assert "orders change" in _text(editor.summary.value) and " 0 of " not in _text(editor.summary.value)
    editor.path.value = str(tmp_path / "policy.yaml")
    editor.bump.value = True
    assert editor.save() == tmp_path / "policy.yaml"
    read = engine.load(tmp_path / "policy.yaml")
    assert read.version == "2026.11.2" and read.spec.parameters["low_rating_percent"] == 85
    orders = engine.read_orders(SAMPLE_ORDERS)
    assert read.evaluate(orders, as_of=AS_OF)["action"].tolist() == \
        editor.candidate.evaluate(orders, as_of=AS_OF)["action"].tolist()
    written = (tmp_path / "policy.yaml").read_text()
    assert _changed(Path(engine.DEFAULT_POLICY).read_text(), written) == [
        '-version: "2026.11.1"', '+version: "2026.11.2"', "-  low_rating_percent: 90", "+  low_rating_percent: 85"]
    assert "0 of 389 orders change" in _text(editor.summary.value)  # the saved policy is the new baseline


def test_save_refuses_a_policy_whose_examples_fail(editor: PolicyEditor, tmp_path: Path) -> None:
    editor.params["seller_reply_hours"].value = "72"
    editor.path.value = str(tmp_path / "policy.yaml")
    assert editor.save() is None
    assert "Not saved" in _text(editor.message.value) and "example expects open_dispute" in editor.message.value
    assert not (tmp_path / "policy.yaml").exists()


def test_revert_goes_back_to_the_saved_text(editor: PolicyEditor) -> None:
    editor.params["seller_reply_hours"].value = "72"
    editor.revert()
    assert editor.yaml.value == editor.saved_text and editor.params["seller_reply_hours"].value == "48"
    assert "0 of 389 orders change" in _text(editor.summary.value)


# The shipped cases that pin the 48 h reply window: at 48 h and past it the seller's silence opens a dispute.
PINNING_48H = ["reply window 48 h: silent for 48 h: open_dispute",
               "reply window 48 h: silent for 48.1 h: open_dispute",
               "reply window: 'Waiting for reply' 49 h while awaiting cancellation: open a dispute",
               "reply window: contacted_at exactly 48 h before the as-of: open a dispute",
               "reply window: contacted_at in +03:00, 48 h before the as-of: open a dispute",
               "reply window: contacted_at a date only (midnight UTC), 48 h before: open a dispute"]


def test_the_shipped_cases_rerun_on_every_change_and_pin_the_48h_window(editor: PolicyEditor) -> None:
    shipped = pd.read_csv(SHIPPED_CASES, dtype=str)
    assert set(PINNING_48H) <= set(shipped["case"])
    n = len(shipped)
    assert f"{SHIPPED_CASES.name} : {n} cases, {n} passed, 0 failed" in _text(editor.test_view.status.value)
    editor.params["seller_reply_hours"].value = "72"
    assert f"{n} cases, {n - 6} passed, 6 failed" in _text(editor.test_view.status.value)
    assert editor.test_view.report.failures["case"].tolist() == PINNING_48H
    failures = _text(editor.test_view.failures.value)
    assert all(case in failures for case in PINNING_48H)
    assert failures.count("open_dispute seller_silent_past_window wait_for_seller wait_for_seller_reply") == 6
    editor.params["seller_reply_hours"].value = "48"
    assert f"{n} cases, {n} passed, 0 failed" in _text(editor.test_view.status.value)
    assert "Every case passed." in _text(editor.test_view.failures.value)


def test_cases_given_run_instead_and_a_policy_of_its_own_starts_with_none(tmp_path: Path) -> None:
    cases = pd.DataFrame({"case": ["silent 50 h", "silent 60 h"], "order_id": ["A", "B"], "status": ["Sent"] * 2,
                          "seller_reply": ["no_reply"] * 2, "hours_since_contact": ["50", "60"],
                          "expected_action": ["open_dispute"] * 2})
    editor = PolicyEditor(engine.load(), SAMPLE_ORDERS, as_of=AS_OF, debounce=0, cases=cases)
    assert "cases : 2 cases, 2 passed, 0 failed" in _text(editor.test_view.status.value)
    editor.params["seller_reply_hours"].value = "55"
    assert "cases : 2 cases, 1 passed, 1 failed" in _text(editor.test_view.status.value)
    own = tmp_path / "own.yaml"
    own.write_text(engine.DEFAULT_POLICY.read_text())
    editor = PolicyEditor(engine.load(own), SAMPLE_ORDERS, as_of=AS_OF, debounce=0)
    assert editor.test_view.cases is None and editor.test_view.status.value == ""


def test_edits_close_together_are_checked_once() -> None:
    async def run() -> int:
        editor = PolicyEditor(engine.load(), SAMPLE_ORDERS, as_of=AS_OF, debounce=0.05)
        checks = []
        original = editor.refresh
        editor.refresh = lambda: (checks.append(1), original())  # type: ignore[method-assign]
        editor.params["seller_reply_hours"].value = "60"
        editor.params["seller_reply_hours"].value = "72"
        assert not checks  # nothing checked while edits keep coming
        await asyncio.sleep(0.5)
        assert "14 of 389 orders change" in _text(editor.summary.value)
        return len(checks)

    assert asyncio.run(run()) == 1


def test_the_editor_refuses_a_variant() -> None:
    with pytest.raises(engine.EditError, match="edits a base policy"):
        PolicyEditor(engine.load(LEGACY), SAMPLE_ORDERS, as_of=AS_OF)


def test_bump_version() -> None:
    assert [bump_version(v) for v in ("2026.11.1", "2026.11.1-legacy72", "v9", "draft")] == \
        ["2026.11.2", "2026.11.1-legacy73", "v10", "draft.1"]


def test_policy_cell_magic_loads_into_a_variable_and_locates_errors() -> None:
    namespace: dict = {}
    text = Path(engine.DEFAULT_POLICY).read_text()
    policy_cell("mine", text, namespace)
    assert namespace["mine"].compiled.ruleset == engine.load().compiled.ruleset
    policy_cell(f"legacy --base {engine.DEFAULT_POLICY}", LEGACY.read_text(), namespace)
    assert namespace["legacy"].spec.parameters["seller_reply_hours"] == 72
    with pytest.raises(engine.RuleError, match=r"<cell bad>:1:1: unknown key 'polcy'"):
        policy_cell("bad", "polcy: x\n" + text.split("\n", 3)[3], namespace)
    with pytest.raises(engine.UsageError):
        policy_cell("1bad", text, namespace)
