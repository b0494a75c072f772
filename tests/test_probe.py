"""What would change a decision (engine.probe): the ways an order's decision changes, found by probing the
policy as time passes and with other values of each fact, each checked against decide()."""

from __future__ import annotations

from conftest import AS_OF, AS_OF_DT
from engine.probe import what_would_change


def test_what_would_change_lists_values_of_other_facts(policy):
    facts = policy.decide({"order_id": "x", "status": "Processing", "seller_rating": 95}, as_of=AS_OF).facts
    changes = what_would_change(policy, facts, AS_OF_DT)
    assert not [c for c in changes if c.kind == "time"]
    by_when = {c.when: c.action for c in changes}
    assert by_when["seller_reply = Refused to cancel"] == "open_dispute"
    assert by_when["status = Awaiting payment"] == "cancel_directly"
    # a rating below 90 changes the rule but not the action: no change for the buyer, not listed
    assert not [c for c in changes if c.fact == "seller_rating"]
    # every listed enum change is real: deciding the changed order gives the announced action
    for c in changes:
        assert c.action != "contact_seller"
        fact = policy.spec.facts[c.fact]
        if fact.type == "enum" and " = " in c.when:
            code = fact.aliases[c.when.split(" = ")[1].lower()]
            assert policy.decide({**facts, c.fact: code}, as_of=AS_OF).action == c.action


def test_what_would_change_a_number_fact_by_ranges_and_by_time(policy):
    order = {"order_id": "x", "status": "payment_verifying", "hours_since_payment": 5}
    facts = policy.decide(order, as_of=AS_OF).facts
    whens = {c.when: c.action for c in what_would_change(policy, facts, AS_OF_DT)}
    assert whens["hours_since_payment ≥ 24 h"] == "contact_support"
    assert whens["in 19 h (at 2026-11-27 07:00 UTC)"] == "contact_support"
    assert policy.decide({**order, "hours_since_payment": 24}, as_of=AS_OF).action == "contact_support"
