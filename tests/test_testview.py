"""TestView without a browser: load cases as a user would (a path, an upload, a frame) and read the rendered HTML."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("ipywidgets")

import engine  # noqa: E402
from conftest import AS_OF, AS_OF_DT, load_policy, text  # noqa: E402
from engine.widgets import TestView  # noqa: E402

SHIPPED = engine.RULES_DIR / "tests" / "cancellation-cases.csv"
CASES = (b"case,order_id,status,seller_reply,hours_since_contact,expected_action\n"
         b"silent 50 h,A,Sent,No reply,50,open_dispute\n"
         b"silent 40 h,B,Sent,No reply,40,open_dispute\n"
         b"bad status,C,Lost,,,contact_seller\n")


def _upload(view: TestView, name: str, content: bytes) -> None:
    view.upload.value = ({"name": name, "type": "text/csv", "size": len(content), "content": memoryview(content),
                          "last_modified": AS_OF_DT},)


def test_shipped_cases_all_pass_and_every_rule_is_covered(policy):
    view = TestView(policy, SHIPPED, as_of=AS_OF)
    n = len(view.report.results)
    assert f"{SHIPPED}: {n} cases, {n} passed, 0 failed" in text(view.status.value)
    assert "Every case passed." in text(view.failures.value)
    coverage = text(view.coverage.value)
    for rule, cases, examples in view.report.coverage[["rule", "cases", "examples"]].itertuples(index=False):
        assert f" {rule} " in coverage and cases + examples > 0
    assert "Every rule is hit by a case or an example." in coverage


def test_uploaded_cases_show_their_failures_with_why(policy):
    view = TestView(policy, as_of=AS_OF)
    _upload(view, "mine.csv", CASES)
    assert "mine.csv: 3 cases, 1 passed, 2 failed" in text(view.status.value)
    failures = text(view.failures.value)
    assert "silent 40 h open_dispute" in failures and "wait_for_seller wait_for_seller_reply" in failures
    assert "The seller has had 40 h of the 48 h reply window" in failures
    assert "bad status contact_seller" in failures and "status: unknown value 'Lost'" in failures
    assert "silent 50 h" not in failures


def test_set_policy_runs_the_cases_again(policy):
    view = TestView(policy, as_of=AS_OF)
    view.load(CASES, "mine.csv")
    view.set_policy(load_policy("default", seller_reply_hours=30))  # 40 h is now past the window
    assert "mine.csv: 3 cases, 2 passed, 1 failed" in text(view.status.value)
    assert "silent 40 h" not in text(view.failures.value)


def test_zero_hit_rules_are_listed():
    view = TestView(load_policy("unreachable"), pd.DataFrame({"order_id": ["1"], "status": ["open"],
                                                              "expected_action": ["wait"]}), as_of=AS_OF)
    assert "1 cases, 1 passed, 0 failed" in text(view.status.value)
    assert "Rules no case or example hits: open_late" in text(view.coverage.value)


def test_bad_cases_show_the_located_line_and_clear_the_tables(policy):
    view = TestView(policy, as_of=AS_OF)
    view.load(CASES, "mine.csv")
    _upload(view, "typo.csv", b"case,order_id,status,expected_action\nx,1,Sent,contact_seler\n")
    assert text(view.status.value).strip() == ("typo.csv:2: case 'x': unknown action 'contact_seler' in "
                                               "expected_action (did you mean 'contact_seller'?)")
    assert view.report is None and view.failures.value == view.coverage.value == ""
    _upload(view, "latin1.csv", "case,order_id,status,expected_action\nx,1,Envoyé,contact_seller\n".encode("latin-1"))
    assert text(view.status.value).strip() == "latin1.csv: not UTF-8 text (byte 46)"
