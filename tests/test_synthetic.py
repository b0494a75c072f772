"""The synthetic policies and orders of engine.synthetic: growth levels load, their rule examples pass and they keep
the bundled policy's action on every order; the marketplace policy loads, its fallback is the bundled policy, and
its orders carry the columns it declares; generation is deterministic."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import engine
from conftest import AS_OF
from engine.batch import input_fields
from engine.loader import load_spec
from engine.space import FactSpace
from engine.synthetic import (
    CATEGORIES,
    GROWTH_FACTS,
    growth_yaml,
    marketplace_orders,
    marketplace_terms,
    marketplace_yaml,
    probe_yaml,
    synthetic_orders,
)
from engine.text import alias_key

BASE_RULES = {r.id for r in engine.load().spec.rules}
OUTCOME = ["action", "message", "error"]


@functools.cache
def growth(t: int, folder: Path) -> engine.Policy:
    path = folder / f"growth{t}.yaml"
    path.write_text(growth_yaml(t), encoding="utf-8")
    return engine.load(path)  # checks every rule's examples: each added rule must win its own


@functools.cache
def marketplace(countries: int, folder: Path) -> engine.Policy:
    path = folder / f"marketplace{countries}.yaml"
    path.write_text(marketplace_yaml(seed=0, countries=countries), encoding="utf-8")
    return engine.load(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.mark.parametrize("t", range(9))
def test_growth_level_loads_with_t_more_thresholds_per_numeric_fact(t, folder):
    policy = growth(t, folder)
    space = FactSpace.of(policy.spec)
    base = {a.fact: len(a.points) for a in FactSpace.of(engine.load().spec).axes if a.kind == "number"}
    assert {a.fact: len(a.points) for a in space.axes if a.kind == "number"} == {f: n + t for f, n in base.items()}
    assert set(base) == set(GROWTH_FACTS)
    assert len(policy.spec.rules) == 15 + 4 * t  # one refinement per added threshold
    # the sizes: t=5 about 21 M cells, t=8 about 80 M
    assert space.n_cells == 8 * 6 * 8 * (2 * t + 4) ** 3 * (2 * t + 10)
    added = [r for r in policy.spec.rules if r.id not in BASE_RULES]
    assert all(r.source and [e.rule for e in r.examples] == [r.id] for r in added)


def test_growth_levels_are_nested_and_refinements_keep_their_base_rules_outcome(folder):
    rules = {r.id: r for r in growth(3, folder).spec.rules}
    for rule in rules.values():
        if rule.id in BASE_RULES:
            continue
        base = rules[rule.id.split(".")[0]]
        assert (rule.action, rule.message, rule.warnings, rule.priority) == (base.action, base.message, base.warnings,
                                                                           base.priority)
        terms = {(c.fact, c.op, c.value) for c in base.conditions}
        assert terms < {(c.fact, c.op, c.value) for c in rule.conditions}  # the base rule's conditions and one bound
    ids2 = {r.id for r in growth(2, folder).spec.rules}
    assert ids2 < set(rules)


@pytest.mark.parametrize("t", [3, 8])
def test_growth_level_keeps_the_bundled_decision_per_row(t, folder):
    orders = synthetic_orders(2000, seed=5, bad_rate=0.01)
    want = engine.load().evaluate(orders, as_of=AS_OF, method="rows")
    got = growth(t, folder).evaluate(orders, as_of=AS_OF, method="rows")
    pd.testing.assert_frame_equal(got[OUTCOME], want[OUTCOME])
    refined = ~got["rule_id"].isin(BASE_RULES) & got["rule_id"].notna()
    assert refined.sum() > 100  # the orders do reach the added rules
    assert want["error"].notna().sum() > 0  # and bad rows get the same error text


def test_growth_level_keeps_the_bundled_action_in_every_cell(folder):
    report = engine.diff(engine.load(), growth(1, folder))
    assert report.changed_cells > 0  # the refinements win cells...
    moved = report.transitions
    assert (moved["old_action"] == moved["new_action"]).all()  # ...with the base rule's action
    assert set(moved["old_rule"]) <= BASE_RULES and not set(moved["new_rule"]) & BASE_RULES


def test_growth_rejects_a_negative_level_and_unknown_lanes():
    with pytest.raises(ValueError, match="level must be >= 0"):
        growth_yaml(-1)
    with pytest.raises(ValueError, match="no growth lane refines nope"):
        growth_yaml(2, lanes=["nope"])


def test_growth_lanes_restrict_the_refined_rules(tmp_path):
    path = tmp_path / "one-lane.yaml"
    path.write_text(growth_yaml(5, lanes=["seller_silent_past_window"]), encoding="utf-8")
    policy = engine.load(path)
    added = [r.id for r in policy.spec.rules if r.id not in BASE_RULES]
    assert len(added) == 5 and all(r.startswith("seller_silent_past_window.hours_since_contact.lt") for r in added)
    # an order at the window's start matches the base rule and every refinement
    assert len(policy.compiled.match({"status": "shipped", "seller_reply": "no_reply",
                                      "hours_since_contact": 48.0})) == 6


def test_marketplace_loads_and_its_rules_each_win_their_example(folder):
    policy = marketplace(3, folder)
    spec = policy.spec
    assert spec.facts["country"].values == ("us", "br", "fr")
    assert len(spec.facts["category"].values) == len(CATEGORIES) == 20
    terms = marketplace_terms(0, 3)
    per_country = sum(4 + 2 * 3 + 2 * len(t.refund_days) for t in terms)  # reply, extensions, verification, refunds
    assert len(spec.rules) == 15 + 7 + per_country
    added = [r for r in spec.rules if r.id not in BASE_RULES]
    assert all(r.source and [e.rule for e in r.examples] == [r.id] for r in added)
    assert all(24 <= t.reply_hours <= 96 for t in terms)


def test_full_marketplace_has_about_a_thousand_rules_with_sources_and_examples():
    data = yaml.load(marketplace_yaml(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    rules = data["rules"]
    assert 900 <= len(rules) <= 1100
    assert len({r["id"] for r in rules}) == len(rules)
    assert all(r["source"] and r["examples"] for r in rules)
    assert len(data["facts"]["country"]["values"]) == 50 and len(data["facts"]["category"]["values"]) == 20


@pytest.mark.parametrize("order, action", [
    ({"status": "delivered", "category": "digital_goods", "seller_reply": "refused"}, "cannot_cancel"),
    ({"status": "delivered", "category": "digital_goods", "seller_reply": "full_refund"}, "accept_full_refund"),
    ({"status": "delivered", "seller_reply": "refused"}, "open_dispute"),  # no category: the bundled rule
    ({"status": "shipped", "category": "custom_made", "seller_reply": "refused"}, "contact_support"),
    ({"status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 47, "country": "US"}, None),
])
def test_marketplace_category_and_country_exceptions(order, action, folder):
    policy = marketplace(3, folder)
    decision = policy.decide({"order_id": "T1", **order}, as_of=AS_OF)
    if action is None:  # the country's own window decides, whichever side of 47 h it falls
        us = marketplace_terms(0, 3)[0]
        action = "open_dispute" if 47 >= us.reply_hours else "wait_for_seller"
        assert decision.rule_id.startswith("reply.us.")
    assert decision.action == action


def test_marketplace_without_country_and_category_decides_as_the_bundled_policy(folder):
    orders = marketplace_orders(2000, seed=4, countries=3)
    policy = marketplace(3, folder)
    bare = orders.drop(columns=["country", "category"])
    want = engine.load().evaluate(bare, as_of=AS_OF, method="rows")
    got = policy.evaluate(bare, as_of=AS_OF, method="rows")
    pd.testing.assert_frame_equal(got[OUTCOME], want[OUTCOME])
    with_them = policy.evaluate(orders, as_of=AS_OF, method="rows")
    assert (with_them["action"].fillna("") != want["action"].fillna("")).sum() > 50  # the exceptions do apply
    assert with_them["error"].str.contains("country", na=False).sum() > 0  # 'Atlantis' is not a country


def test_marketplace_orders_have_the_declared_columns(folder):
    orders = marketplace_orders(4000, seed=2, countries=3)
    spec = marketplace(3, folder).spec
    assert list(orders.columns) == [*synthetic_orders(1).columns, "country", "category"]
    assert set(orders.columns) <= set(input_fields(spec))
    for fact in ("country", "category"):
        values = orders[fact]
        unknown = {v for v in values if v not in ("", "Atlantis") and alias_key(v) not in spec.facts[fact].aliases}
        assert not unknown
        assert 0.01 < (values == "").mean() < 0.06
    assert orders["country"].map(alias_key).nunique() > 3  # codes, upper-case codes and labels


def test_generation_is_deterministic():
    assert growth_yaml(5) == growth_yaml(5)
    assert marketplace_yaml(seed=3, countries=5) == marketplace_yaml(seed=3, countries=5)
    assert marketplace_yaml(seed=3, countries=5) != marketplace_yaml(seed=4, countries=5)
    pd.testing.assert_frame_equal(marketplace_orders(500, seed=2), marketplace_orders(500, seed=2))
    assert not marketplace_orders(500, seed=2).equals(marketplace_orders(500, seed=3))


def test_probe_policies_parse(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(probe_yaml("siblings", 4), encoding="utf-8")
    spec = load_spec(path)
    assert [r.id for r in spec.rules[:4]] == ["probe_0", "probe_1", "probe_2", "probe_3"]
    assert np.array_equal([r.conditions[1].value for r in spec.rules[:4]], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="unknown probe shape"):
        probe_yaml("nope", 1)
