"""Facts normalization: aliases, timestamps against an explicit as-of, defaults, per-field errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

import engine

# The examples' time (conftest): these orders' timestamps were written against it.
from conftest import EXAMPLES_AS_OF as AS_OF
from conftest import EXAMPLES_AS_OF_DT as AS_OF_DT
from engine.errors import FieldProblem, OrderError
from engine.facts import normalize, parse_as_of


@pytest.fixture(scope="module")
def spec():
    return engine.load().spec


def norm(spec, **order):
    return normalize(spec, {"order_id": "F1", **order}, AS_OF_DT)


def problems(spec, **order) -> list[str]:
    with pytest.raises(OrderError) as info:
        norm(spec, **order)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("text", ["In Transit", " in   transit ", "IN_TRANSIT", "in-transit", "shipped", "Sent",
                                  "SENT", "Awaiting delivery", "awaiting\tdelivery"])
def test_status_aliases_fold_case_and_spaces(spec, text):
    assert norm(spec, status=text)["status"] == "shipped"


@pytest.mark.parametrize(("fact", "text", "code"), [
    ("status", "Awaiting shipment", "awaiting_shipment"),
    ("status", "pending SHIPPING", "awaiting_shipment"),
    ("status", "Closed", "cancelled"),
    ("status", "canceled", "cancelled"),
    ("status", "Placed", "awaiting_payment"),
    ("status", "payment_verifying", "payment_verifying"),
    ("status", "Dispute in progress", "disputed"),
    ("seller_reply", "Silent", "no_reply"),
    ("seller_reply", "ship anyway", "continue_order"),
    ("seller_reply", "Full Refund", "full_refund"),
    ("payment_method", "Credit card", "card"),
    ("payment_method", "AliExpress balance", "wallet"),
    ("payment_method", "COD", "cash_on_delivery"),
    ("payment_method", "bank transfer", "bank_transfer"),
])
def test_labels_and_aliases_resolve_to_codes(spec, fact, text, code):
    order = {"status": "Sent", fact: text}
    assert norm(spec, **order)[fact] == code


def test_every_declared_alias_resolves(spec):
    for name, fact in spec.facts.items():
        for alias, code in fact.aliases.items():
            assert norm(spec, **{"status": "Sent", name: alias.upper()})[name] == code


def test_defaults_and_not_given(spec):
    facts = norm(spec, status="Sent")
    assert facts == {"order_id": "F1", "status": "shipped", "seller_reply": "not_contacted"}
    # blank text means not given: the default applies, optional facts stay absent
    assert norm(spec, status="Sent", seller_reply="  ", payment_method="", hours_since_contact=None) == facts


def test_numbers_are_floats_and_text_numbers_are_read(spec):
    facts = norm(spec, status="Sent", hours_since_contact=" 12.5 ", seller_rating=90, days_since_refund="3")
    assert facts["hours_since_contact"] == 12.5 and facts["seller_rating"] == 90.0 and facts["days_since_refund"] == 3
    assert all(isinstance(facts[f], float) for f in ("hours_since_contact", "seller_rating", "days_since_refund"))


def test_order_id_is_echoed_as_text(spec):
    assert normalize(spec, {"order_id": 7, "status": "Sent"}, AS_OF_DT)["order_id"] == "7"


# --- timestamps -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stamp", "hours"), [
    ("2025-12-30T00:00:00Z", 48.0),
    ("2025-12-30T00:00:00+00:00", 48.0),
    ("2025-12-30T12:30:00+02:00", 37.5),
    ("2025-12-30T00:00:00", 48.0),  # naive means UTC
    ("2025-12-30", 48.0),
    ("2025-12-31T23:54:00Z", 0.1),
    ("2026-01-01T00:00:00Z", 0.0),
])
def test_contacted_at_becomes_hours_since_contact(spec, stamp, hours):
    facts = norm(spec, status="Sent", contacted_at=stamp)
    assert facts["hours_since_contact"] == pytest.approx(hours, abs=1e-9)


def test_paid_at_and_refund_started_at(spec):
    facts = norm(spec, status="Closed", paid_at="2025-12-31T06:00:00Z", refund_started_at="2025-12-25T12:00:00Z")
    assert facts["hours_since_payment"] == 18.0
    assert facts["days_since_refund"] == 6.5  # per: days


def test_elapsed_time_depends_on_as_of_only(spec):
    order = {"order_id": "T", "status": "Sent", "contacted_at": "2025-12-30T00:00:00Z"}
    assert normalize(spec, order, AS_OF_DT)["hours_since_contact"] == 48.0
    later = normalize(spec, order, AS_OF_DT + timedelta(hours=24, minutes=6))
    assert later["hours_since_contact"] == pytest.approx(72.1)
    other_zone = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))  # the same instant
    assert normalize(spec, order, other_zone)["hours_since_contact"] == 48.0


def test_datetime_timestamps_are_accepted(spec):
    facts = norm(spec, status="Sent", contacted_at=datetime(2025, 12, 31, 12, 0, tzinfo=UTC))
    assert facts["hours_since_contact"] == 12.0


def test_explicit_number_wins_over_its_timestamp(spec):
    facts = norm(spec, status="Sent", hours_since_contact=3, contacted_at="2025-12-30T00:00:00Z")
    assert facts["hours_since_contact"] == 3.0


def test_decision_uses_timestamps_against_as_of():
    policy = engine.load()
    order = {"order_id": "T2", "status": "Sent", "seller_reply": "no_reply", "contacted_at": "2025-12-30T00:00:00Z"}
    assert policy.decide(order, as_of=AS_OF).action == "open_dispute"
    assert policy.decide(order, as_of="2025-12-31T23:54:00Z").action == "wait_for_seller"  # 47.9 h
    assert policy.decide(order, as_of=AS_OF_DT - timedelta(microseconds=1)).action == "wait_for_seller"


def test_parse_as_of():
    assert parse_as_of(AS_OF) == AS_OF_DT
    assert parse_as_of("2026-01-01T00:00:00") == AS_OF_DT
    assert parse_as_of(datetime(2026, 1, 1)) == AS_OF_DT
    with pytest.raises(ValueError, match=r"^as-of time is not an ISO 8601 timestamp: 'tomorrow'$"):
        parse_as_of("tomorrow")


# --- per-field errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("order", "messages"), [
    ({"status": "shiped"}, ["status: unknown value 'shiped' (did you mean 'shipped'?)"]),
    ({"status": "Sent", "payment_method": "paypall"},
     ["payment_method: unknown value 'paypall' (did you mean 'paypal'?)"]),
    ({"status": "Sent", "seller_reply": "maybe"}, ["seller_reply: unknown value 'maybe'"]),
    ({"status": 5}, ["status: must be text, got 5"]),
    ({"status": "Sent", "hours_since_contact": -1}, ["hours_since_contact: must be >= 0, got -1"]),
    ({"status": "Sent", "days_since_refund": -0.5}, ["days_since_refund: must be >= 0, got -0.5"]),
    ({"status": "Sent", "seller_rating": 100.5}, ["seller_rating: must be <= 100, got 100.5"]),
    ({"status": "Sent", "hours_since_contact": "abc"}, ["hours_since_contact: not a number: 'abc'"]),
    ({"status": "Sent", "hours_since_contact": [1]}, ["hours_since_contact: not a number: [1]"]),
    ({"status": "Sent", "hours_since_contact": True}, ["hours_since_contact: must be a number, got True"]),
    ({"status": "Sent", "hours_since_contact": math.nan},
     ["hours_since_contact: is NaN (leave it empty when it is not known)"]),
    ({"status": "Sent", "hours_since_payment": "NaN"},
     ["hours_since_payment: is NaN (leave it empty when it is not known)"]),
    ({"status": "Sent", "hours_since_contact": math.inf}, ["hours_since_contact: is not finite"]),
    ({"status": "Sent", "seller_rating": "-inf"}, ["seller_rating: is not finite"]),
    ({"status": "Sent", "contacted_at": "yesterday"}, ["contacted_at: not an ISO 8601 timestamp: 'yesterday'"]),
    ({"status": "Sent", "paid_at": "2025-13-01"}, ["paid_at: not an ISO 8601 timestamp: '2025-13-01'"]),
    ({"status": "Sent", "refund_started_at": 12345}, ["refund_started_at: not an ISO 8601 timestamp: 12345"]),
    ({"status": "Sent", "contacted_at": "2026-01-02T00:00:00Z"},
     ["contacted_at: 2026-01-02T00:00:00+00:00 is after the as-of time 2026-01-01T00:00:00+00:00"]),
    ({"status": None}, ["status: missing (required)"]),
    ({"status": "   "}, ["status: missing (required)"]),
])
def test_field_errors(spec, order, messages):
    assert problems(spec, **order) == messages


def test_missing_order_id(spec):
    with pytest.raises(OrderError) as info:
        normalize(spec, {"status": "Sent"}, AS_OF_DT)
    assert str(info.value) == "order_id: missing (required)"
    assert info.value.order_id is None


def test_every_bad_field_is_reported_in_schema_order(spec):
    with pytest.raises(OrderError) as info:
        norm(spec, status="Sent", hours_since_contact=-1, seller_reply="maybe", paid_at="x", seller_rating="high")
    err = info.value
    assert err.fields == ["seller_reply", "hours_since_contact", "paid_at", "seller_rating"]
    assert str(err) == ("seller_reply: unknown value 'maybe'; hours_since_contact: must be >= 0, got -1; "
                        "paid_at: not an ISO 8601 timestamp: 'x'; seller_rating: not a number: 'high'")
    assert err.order_id == "F1"
    assert err.problems[0] == FieldProblem("seller_reply", "maybe", "unknown value 'maybe'")


def test_decide_raises_order_error_and_the_next_order_is_unaffected():
    policy = engine.load()
    with pytest.raises(OrderError, match=r"^status: unknown value 'shiped' \(did you mean 'shipped'\?\)$"):
        policy.decide({"order_id": "X", "status": "shiped", "seller_reply": "no_reply"}, as_of=AS_OF)
    decision = policy.decide({"order_id": "Y", "status": "Sent"}, as_of=AS_OF)
    assert (decision.action, decision.rule_id) == ("contact_seller", "contact_seller_to_cancel")


# --- unknown fields and value hints (issue 9, item 9) -------------------------------------------------------

@pytest.mark.parametrize(("value", "hint"), [
    ("SHIPED", "shipped"), ("In Transt", "in transit"), ("awaiting shipmnt", "awaiting_shipment"),
    ("Dispute in progres", "Dispute in progress"), ("cancelld", "cancelled"), ("CLOSD", "Closed"),
])
def test_value_hints_fold_case_and_consider_aliases(spec, value, hint):
    assert problems(spec, status=value) == [f"status: unknown value {value!r} (did you mean {hint!r}?)"]


def test_unknown_fields_are_warned_with_did_you_mean():
    policy = engine.load()
    order = {"order_id": "U1", "status": "Sent", "seller_reply": "no_reply", "hours_since_contakt": 50,
             "note": "call back", "Status": "Closed"}
    decision = policy.decide(order, as_of=AS_OF)
    assert decision.action == policy.decide({k: order[k] for k in ("order_id", "status", "seller_reply")},
                                            as_of=AS_OF).action  # as if the hours were not given: now said
    assert decision.warnings == (
        "unknown field 'hours_since_contakt' ignored (did you mean 'hours_since_contact'?)",
        "unknown field 'note' ignored",
        "unknown field 'Status' ignored (did you mean 'status'?)",
    )
    assert "  warning: unknown field 'note' ignored" in decision.explain()


def test_strict_makes_unknown_fields_errors_with_the_others():
    policy = engine.load()
    with pytest.raises(OrderError) as info:
        policy.decide({"order_id": "U2", "status": "Snet", "hours_since_contakt": 50}, as_of=AS_OF, strict=True)
    assert str(info.value) == ("status: unknown value 'Snet' (did you mean 'Sent'?); "
                               "hours_since_contakt: unknown field (did you mean 'hours_since_contact'?)")
    assert info.value.fields == ["status", "hours_since_contakt"]
    assert info.value.order_id == "U2"
    order = {"order_id": "U3", "status": "Sent", "seller_reply": "no_reply", "contacted_at": "2025-12-31T00:00:00Z"}
    decision = policy.decide(order, as_of=AS_OF, strict=True)  # a timestamp a fact derives from is a field too
    assert decision == policy.decide(order, as_of=AS_OF)
    assert decision.warnings == () and decision.action == "wait_for_seller"


def test_only_the_first_thousand_unknown_names_are_compared_for_a_hint(spec):
    from engine.facts import HINTED, unknown_fields

    names = ["status" + "_" * k for k in range(1, HINTED + 6)]  # each folds to "status ": a look-alike
    hints = unknown_fields(spec, names)
    assert list(hints) == names
    assert [hints[n] for n in names[HINTED - 1: HINTED + 1]] == ["status", None]


@pytest.mark.parametrize("field,value", [("status", "x" * 1_000_000), ("seller_rating", "9" * 999_999 + "z"),
                                         ("contacted_at", "2026-" * 200_000), ("status", ["s"] * 200_000)])
def test_a_huge_bad_value_is_echoed_cut_with_its_length(policy, field, value):
    """A 1 MB bad value made a 1 MB error line (CLI, CSV error column, summary): it is cut at 200 characters."""
    order = {"order_id": "A1", "status": "shipped", field: value}
    with pytest.raises(OrderError) as caught:
        normalize(policy.spec, order, AS_OF_DT)
    text = str(caught.value)
    assert len(text) < 600, len(text)
    assert " characters)" in text and f"{len(value if isinstance(value, str) else repr(value)):,}" in text
