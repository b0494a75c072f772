"""Compilation into durable_rules: ruleset JSON shape, content-hash names, keyed parameters, match order."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import engine
from engine.compiler import NO_RULE, compile_policy, condition_json, ruleset_definition, ruleset_name
from engine.loader import RULES_DIR, load_spec
from engine.model import Condition, ParamRef

HERE = Path(__file__).parent
VALID = HERE / "fixtures" / "valid"
NOT_STATE = {"$nex": {"$s": 1}}


def test_every_rule_is_guarded_against_the_state_fact_and_ranked_by_pri():
    spec = load_spec()
    definition = ruleset_definition(spec)
    ranked = [r.id for r in spec.ranked_rules()]
    assert list(definition) == [*ranked, NO_RULE]
    for rank, rule_id in enumerate(ranked, start=1):
        body = definition[rule_id]
        assert set(body) == {"all", "pri", "run"}
        assert body["pri"] == rank and body["run"] == rule_id
        assert len(body["all"]) == 1 and set(body["all"][0]) == {"m"}
        terms = body["all"][0]["m"]["$and"]
        assert terms[0] == NOT_STATE  # without it a rule could match the session state and loop forever
        assert len(terms) == 1 + len(spec.rule(rule_id).conditions)
    pris = [body["pri"] for body in definition.values()]
    assert len(set(pris)) == len(pris) and all(0 < p < 2**16 for p in pris)
    # the catch-all handles every message last, so durable_rules never raises "not handled"
    assert definition[NO_RULE] == {"all": [{"m": NOT_STATE}], "pri": 65000, "run": NO_RULE}
    assert max(pris[:-1]) < definition[NO_RULE]["pri"]


def test_conditions_in_durable_rules_form():
    spec = load_spec(VALID / "ranked.yaml")
    cases = [
        (Condition("status", "eq", "open"), {"status": "open"}),
        (Condition("status", "ne", "closed"), {"$neq": {"status": "closed"}}),
        (Condition("status", "in", ("open", "closed")), {"$or": [{"status": "open"}, {"status": "closed"}]}),
        (Condition("status", "in", ("open",)), {"status": "open"}),
        (Condition("status", "not_in", ("open", "closed")),
         {"$and": [{"$neq": {"status": "open"}}, {"$neq": {"status": "closed"}}]}),
        (Condition("hours", "lt", 3), {"$lt": {"hours": 3}}),
        (Condition("hours", "lte", 3), {"$lte": {"hours": 3}}),
        (Condition("hours", "gt", ParamRef("limit")), {"$gt": {"hours": 10}}),
        (Condition("hours", "gte", 3.5), {"$gte": {"hours": 3.5}}),
        (Condition("hours", "between", (1, ParamRef("limit"))),
         {"$and": [{"$gte": {"hours": 1}}, {"$lte": {"hours": 10}}]}),
        (Condition("hours", "given", True), {"$ex": {"hours": 1}}),
        (Condition("hours", "given", False), {"$nex": {"hours": 1}}),
    ]
    for cond, want in cases:
        assert condition_json(spec, cond) == want, cond


def test_keyed_parameter_expands_to_one_branch_per_key_and_a_default():
    spec = load_spec(VALID / "mini.yaml")
    cond = next(c for c in spec.rule("overdue").conditions if c.fact == "days_since_refund")
    assert condition_json(spec, cond) == {"$or": [
        {"$and": [{"payment_method": "card"}, {"$gte": {"days_since_refund": 10}}]},
        {"$and": [{"payment_method": "boleto"}, {"$gte": {"days_since_refund": 5}}]},
        {"$and": [{"$nex": {"payment_method": 1}}, {"$gte": {"days_since_refund": 20}}]},
    ]}


def test_bundled_refund_window_has_a_branch_per_payment_method():
    spec = load_spec()
    cond = next(c for c in spec.rule("refund_overdue").conditions if c.fact == "days_since_refund")
    branches = condition_json(spec, cond)["$or"]
    keyed = spec.parameters["refund_days"]
    methods = spec.facts["payment_method"].values
    assert branches[: len(methods)] == [
        {"$and": [{"payment_method": m}, {"$gte": {"days_since_refund": keyed.values[m]}}]} for m in methods]
    assert branches[len(methods):] == [
        {"$and": [{"$nex": {"payment_method": 1}}, {"$gte": {"days_since_refund": keyed.default}}]}]


def test_keyed_parameter_decisions_per_key():
    policy = engine.load(VALID / "mini.yaml")
    for method, limit in [("card", 10), ("Boleto", 5), (None, 20)]:
        extra = {"payment_method": method} if method else {}
        for days, rule in [(limit - 0.1, "otherwise"), (limit, "overdue")]:
            d = policy.decide({"order_id": "K", "status": "closed", "days_since_refund": days, **extra},
                              as_of="2026-01-01T00:00:00Z")
            assert d.rule_id == rule, (method, days)


def test_ruleset_name_is_policy_name_and_content_hash():
    spec = load_spec()
    definition = ruleset_definition(spec)
    name = ruleset_name(spec, definition)
    assert re.fullmatch(r"cancellation-[0-9a-f]{12}", name)
    assert ruleset_name(spec, copy.deepcopy(definition)) == name
    assert ruleset_name(load_spec(), ruleset_definition(load_spec())) == name  # stable across loads
    changed = copy.deepcopy(definition)
    changed["seller_silent_past_window"]["all"][0]["m"]["$and"][2] = {"$gte": {"hours_since_contact": 47}}
    assert ruleset_name(spec, changed) != name
    assert engine.load().compiled.ruleset == name
    # names are made safe for durable_rules: 'ranked policy' has a space
    assert re.fullmatch(r"ranked_policy-[0-9a-f]{12}", engine.load(VALID / "ranked.yaml").compiled.ruleset)


def test_variant_compiles_to_another_ruleset():
    base, variant = load_spec(), load_spec(RULES_DIR / "variants" / "legacy-72h.yaml")
    assert ruleset_definition(base) != ruleset_definition(variant)
    assert compile_policy(base).ruleset != compile_policy(variant).ruleset


def test_compiling_twice_registers_once():
    spec = load_spec(VALID / "mini.yaml")
    first, second = compile_policy(spec), compile_policy(spec)
    assert first.ruleset == second.ruleset
    assert first.match({"status": "open"}) == second.match({"status": "open"}) == ("otherwise",)


def test_ruleset_definition_is_not_mutated_by_compiling():
    spec = load_spec(VALID / "mini.yaml")
    before = copy.deepcopy(ruleset_definition(spec))
    compile_policy(spec)
    assert ruleset_definition(spec) == before


def test_only_condition_facts_reach_the_engine():
    compiled = engine.load().compiled
    assert compiled.engine_facts == ("days_since_refund", "hours_since_contact", "hours_since_payment",
                                     "payment_method", "seller_rating", "seller_reply", "status")


def test_engine_match_order_is_the_ranked_order():
    """ranked.yaml lists rules out of priority order, with a tie: the engine fires by priority, then file order."""
    policy = engine.load(VALID / "ranked.yaml")
    spec = policy.spec
    assert [r.id for r in spec.ranked_rules()] == ["high", "mid", "tie_a", "tie_b", "closed", "closed_late", "low"]
    assert policy.compiled.match({"status": "open", "hours": 5.0}) == ("mid", "tie_a", "tie_b", "low")
    assert policy.compiled.match({"status": "open", "hours": 10.0}) == ("high", "mid", "tie_a", "tie_b", "low")
    assert policy.compiled.match({"status": "open"}) == ("tie_b", "low")
    assert policy.compiled.match({"status": "closed", "hours": 50.0}) == ("high", "mid")
    assert policy.compiled.match({"status": "closed"}) == ("closed_late",)
    assert policy.compiled.match({"status": "closed", "hours": 200.0}) == ("high",)


def test_engine_agrees_with_ranked_order_on_every_combination():
    policy = engine.load(VALID / "ranked.yaml")
    ranked = policy.spec.ranked_rules()
    for status, hours in itertools.product(["open", "closed"], [None, 0.0, 2.0, 2.5, 9.9, 10.0, 100.0, 100.5]):
        facts = {"status": status, **({"hours": hours} if hours is not None else {})}
        d = policy.decide({"order_id": "C", **facts}, as_of="2026-01-01T00:00:00Z")
        matched = policy.compiled.match(facts)
        assert [d.rule_id, *d.also_matched] == list(matched)
        assert list(matched) == [r.id for r in ranked if r.id in matched]  # a subsequence of the ranked order
        assert d.rule_id == (matched[0] if matched else None)
