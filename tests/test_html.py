"""HTML views of policies and decisions (engine.html): which rule fired, which also matched, every condition
ticked against the order, values escaped; the notebooks' rich display is exactly this HTML."""

from __future__ import annotations

import engine
from conftest import AS_OF, rule_rows, text
from engine.html import decision_html, policy_html


def test_decision_html_highlights_the_fired_rule(policy):
    d = policy.decide({"order_id": "A-1", "status": "Sent", "seller_reply": "no_reply", "hours_since_contact": 50},
                      as_of=AS_OF)
    html = decision_html(d)
    rows = rule_rows(html)
    assert rows["seller_silent_past_window"]["state"] == "fired"
    assert "open_dispute" in html and d.message[:40] in text(html)
    assert {r for r, row in rows.items() if row["state"] == "none"} == {w.rule_id for w in d.why_not}
    gap = policy.decide({"order_id": "A-2", "status": "payment_verifying", "hours_since_payment": 30}, as_of=AS_OF)
    assert rule_rows(decision_html(gap))["cancel_before_processing"]["state"] == "also"


def test_policy_html_lists_rules_and_parameters(policy):
    html = policy_html(policy)
    rows = rule_rows(html)
    assert list(rows) == [r.id for r in policy.spec.ranked_rules()]
    assert {row["state"] for row in rows.values()} == {"none"}
    assert "seller_reply_hours" in html and "refund_days" in html and policy.version in html
    d = policy.decide({"order_id": "A-1", "status": "Closed", "days_since_refund": 40}, as_of=AS_OF)
    assert rule_rows(policy_html(policy, d))["refund_overdue"]["state"] == "fired"


def test_html_escapes_order_values(policy):
    d = policy.decide({"order_id": "<script>x</script>", "status": "Sent"}, as_of=AS_OF)
    assert "<script>" not in decision_html(d) and "<script>" not in policy_html(policy, d)


def test_rich_display_is_the_html_renderers_output():
    policy = engine.load()
    decision = policy.decide({"order_id": "R1", "status": "Sent", "seller_reply": "no_reply",
                              "hours_since_contact": 50}, as_of="2026-11-26T12:00:00Z")
    assert policy._repr_html_() == policy_html(policy)
    assert decision._repr_html_() == decision_html(decision)
    assert "seller_silent_past_window" in decision._repr_html_()
