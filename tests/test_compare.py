"""Policy diff: default vs legacy-72h changes exactly the no-reply orders between 48 and 72 hours, checked
order by order against decide(); a policy against itself changes nothing."""

from __future__ import annotations

import functools
import json
import subprocess

import pandas as pd
import pytest

import engine
from conftest import AS_OF, LEGACY, ROOT, SCRIPT, load_policy
from engine.loader import DEFAULT_POLICY
from engine.space import FactSpace
from engine.synthetic import synthetic_orders

SELLER_STATUSES = {"awaiting_shipment", "awaiting_cancellation", "shipped", "delivered"}  # no status rule first


EDITS = {"what_if_72": {"seller_reply_hours": 72}, "card_21": {"refund_days": {"card": 21}}}  # of the default


def policy(name: str) -> engine.Policy:
    """'default', 'legacy', or one of this file's edits of the default."""
    return load_policy("default", **EDITS[name]) if name in EDITS else load_policy(name)


EDGE = [  # order_id, status, seller_reply, hours_since_contact, contacted_at, expected to change 48 -> 72 h
    ("E48", "Sent", "No reply", "48", "", True),
    ("E72", "Sent", "no_reply", "72", "", False),
    ("E71.9", "In Transit", "no_reply", "71.9", "", True),
    ("E47.9", "Sent", "no_reply", "47.9", "", False),
    ("Ets48", "Awaiting shipment", "no_reply", "", "2026-11-24T12:00:00Z", True),
    ("Ets72", "Awaiting shipment", "no_reply", "", "2026-11-23T12:00:00Z", False),
    ("Ets72-1s", "Delivered", "Silent", "", "2026-11-23T12:00:01Z", True),
    ("Epv", "Payment being verified", "no_reply", "50", "", False),  # cancel_before_processing fires first
    ("Epay", "Awaiting payment", "no_reply", "60", "", False),
    ("Edisp", "Dispute", "no_reply", "50", "", False),
    ("Eclosed", "Closed", "no_reply", "50", "", False),
    ("Ebad", "Sent", "no_reply", "soon", "", False),
    ("Ecanc", "Awaiting cancellation", "No reply", "60", "", True),
    ("Erefused", "Sent", "Refused", "60", "", False),
]


@functools.cache
def orders() -> pd.DataFrame:
    df = synthetic_orders(3000, as_of=AS_OF.replace("Z", "+00:00"), seed=21, bad_rate=0.01)
    edge = pd.DataFrame([dict(zip(["order_id", "status", "seller_reply", "hours_since_contact", "contacted_at"],
                                  e[:5], strict=True)) for e in EDGE])
    both = pd.concat([df.iloc[:1500], edge, df.iloc[1500:]], ignore_index=True)
    return both.fillna("")


def decision_of(p: engine.Policy, order: dict) -> tuple:
    try:
        d = p.decide(order, as_of=AS_OF)
    except engine.OrderError as exc:
        return ("error", str(exc)), {}
    return (d.action, d.rule_id), dict(d.facts)


@functools.cache
def expected_changes(old_name: str, new_name: str) -> tuple[list[str], list[dict]]:
    """Order ids of orders() whose decision differs, in input order, decided one by one; and their facts."""
    old, new = policy(old_name), policy(new_name)
    ids, facts = [], []
    for order in orders().to_dict("records"):
        a, fa = decision_of(old, order)
        b, _ = decision_of(new, order)
        if a != b:
            ids.append(order["order_id"])
            facts.append(fa)
    return ids, facts


def in_window(facts: dict, low: float, high: float) -> bool:
    return (facts.get("seller_reply") == "no_reply" and facts.get("status") in SELLER_STATUSES
            and facts.get("hours_since_contact") is not None and low <= facts["hours_since_contact"] < high)


# --- default vs legacy-72h --------------------------------------------------------------------------------

def test_default_vs_legacy_has_exactly_one_transition():
    d = engine.diff(policy("default"), policy("legacy"))
    t = d.transitions
    assert len(t) == 1, t
    row = t.iloc[0]
    assert (row["old_action"], row["old_rule"]) == ("open_dispute", "seller_silent_past_window")
    assert (row["new_action"], row["new_rule"]) == ("wait_for_seller", "wait_for_seller_reply")
    assert row["cells"] == d.changed_cells > 0
    assert d.changed is None and d.orders is None
    # its example order reproduces the transition through decide()
    example = row["example"]
    assert decision_of(policy("default"), example)[0] == ("open_dispute", "seller_silent_past_window")
    assert decision_of(policy("legacy"), example)[0] == ("wait_for_seller", "wait_for_seller_reply")


def test_changed_cells_are_the_no_reply_48_to_72_hour_region():
    """In the joint space (hours cut at 48 and 72), the region is: 4 statuses x no_reply x {= 48, (48, 72)} x
    every bin of every other axis."""
    d = engine.diff(policy("default"), policy("legacy"))
    space = FactSpace.of(policy("default").spec)
    others = 1
    for axis in space.axes:
        if axis.fact not in ("status", "seller_reply", "hours_since_contact"):
            others *= axis.size
    assert d.changed_cells == len(SELLER_STATUSES) * 1 * 2 * others


def test_default_vs_legacy_changed_orders_are_exactly_the_window():
    df = orders()
    old, new = policy("default"), policy("legacy")
    d = engine.diff(old, new, orders=df, as_of=AS_OF)
    expected_ids, facts = expected_changes("default", "legacy")
    assert d.orders == len(df)
    assert d.changed["order_id"].tolist() == expected_ids  # the same orders, in input order
    assert len(expected_ids) > 20
    # ... and they are exactly the no-reply orders at 48 <= hours < 72 with a status the seller rules decide
    assert all(in_window(f, 48, 72) for f in facts)
    window = []
    for order in df.to_dict("records"):
        (decision, f) = decision_of(old, order)
        if decision[0] != "error" and in_window(f, 48, 72):
            window.append(order["order_id"])
    assert window == expected_ids
    for oid, *_, changes in EDGE:
        assert (oid in expected_ids) == changes, oid
    # the transition table counts them
    (row,) = d.transitions.itertuples()
    assert row.orders == len(expected_ids)
    assert set(d.changed["old_rule"]) == {"seller_silent_past_window"}
    assert set(d.changed["new_rule"]) == {"wait_for_seller_reply"}
    assert list(d.changed.columns) == list(df.columns) + ["old_action", "old_rule", "new_action", "new_rule"]
    pd.testing.assert_frame_equal(d.changed[list(df.columns)], df[df["order_id"].isin(expected_ids)])
    json.dumps(d.to_dict(), default=str)


def test_reverse_diff_is_the_reverse_transition():
    d = engine.diff(policy("legacy"), policy("default"), orders=orders(), as_of=AS_OF)
    (row,) = d.transitions.itertuples()
    assert (row.old_rule, row.new_rule) == ("wait_for_seller_reply", "seller_silent_past_window")
    forward = engine.diff(policy("default"), policy("legacy"), orders=orders(), as_of=AS_OF)
    assert d.changed["order_id"].tolist() == forward.changed["order_id"].tolist()
    assert d.changed_cells == forward.changed_cells


def test_with_parameters_72_is_the_same_change_as_the_variant():
    a = engine.diff(policy("default"), policy("legacy"), orders=orders(), as_of=AS_OF)
    b = engine.diff(policy("default"), policy("what_if_72"), orders=orders(), as_of=AS_OF)
    assert b.changed_cells == a.changed_cells
    pd.testing.assert_frame_equal(a.transitions.drop(columns=["example"]), b.transitions.drop(columns=["example"]))
    assert a.changed["order_id"].tolist() == b.changed["order_id"].tolist()


def test_keyed_parameter_change_moves_only_card_refunds():
    df = orders()
    old, new = policy("default"), policy("card_21")
    d = engine.diff(old, new, orders=df, as_of=AS_OF)
    (row,) = d.transitions.itertuples()
    assert (row.old_action, row.old_rule) == ("wait_for_refund", "refund_in_progress")
    assert (row.new_action, row.new_rule) == ("contact_support", "refund_overdue")
    expected_ids, facts = expected_changes("default", "card_21")
    assert d.changed["order_id"].tolist() == expected_ids
    assert expected_ids, "the sample holds card refunds between 21 and 28 days"
    for f in facts:
        assert f["status"] == "cancelled" and f["payment_method"] == "card" and 21 <= f["days_since_refund"] < 28


# --- no change --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "legacy"])
def test_diff_of_a_policy_with_itself_is_empty(name):
    p = policy(name)
    d = engine.diff(p, p, orders=orders(), as_of=AS_OF)
    assert d.changed_cells == 0
    assert len(d.transitions) == 0
    assert len(d.changed) == 0
    assert d.orders == len(orders())
    assert d.cells == FactSpace.of(p.spec).n_cells
    again = engine.diff(p, engine.load(p.spec.path))  # loaded twice: the same rules
    assert again.changed_cells == 0 and len(again.transitions) == 0


def test_diff_orders_need_the_required_columns():
    with pytest.raises(engine.InputError) as info:
        engine.diff(policy("default"), policy("legacy"), orders=orders().drop(columns=["status"]), as_of=AS_OF)
    assert "status" in str(info.value)


def test_diff_command(tmp_path):
    src = tmp_path / "orders.csv"
    orders().to_csv(src, index=False)
    result = subprocess.run([str(SCRIPT), "diff", str(DEFAULT_POLICY), str(LEGACY), "--orders", str(src),
                             "--as-of", AS_OF, "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (row,) = data["transitions"]
    assert row["old_rule"] == "seller_silent_past_window" and row["new_rule"] == "wait_for_seller_reply"
    expected_ids, _ = expected_changes("default", "legacy")
    assert data["changed_orders"] == row["orders"] == len(expected_ids)
