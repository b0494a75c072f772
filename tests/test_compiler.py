"""Compilation into durable_rules: ruleset JSON shape, content-hash names, keyed parameters, match order."""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.compiler import NO_RULE, compile_policy, condition_json, engine_names, ruleset_definition, ruleset_name
from engine.loader import RULES_DIR, load_spec
from engine.model import Condition, ParamRef
from engine.operators import check

HERE = Path(__file__).parent
VALID = HERE / "fixtures" / "valid"
NOT_STATE = {"$nex": {"$s": 1}}


def renamed(spec, obj):
    """Expected durable_rules JSON written with fact names, as the engine gets it: facts by engine name."""
    names = engine_names(spec)
    if isinstance(obj, dict):
        return {names.get(k, k): renamed(spec, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [renamed(spec, v) for v in obj]
    return obj


def test_every_rule_is_guarded_against_the_state_fact_and_ranked_by_pri():
    spec = load_spec()
    definition = ruleset_definition(spec)
    ranked = [r.id for r in spec.ranked_rules()]
    assert list(definition) == [*ranked, NO_RULE]
    for rank, rule_id in enumerate(ranked, start=1):
        body = definition[rule_id]
        assert set(body) == {"all", "pri", "cap", "run"}
        assert body["pri"] == rank and body["run"] == rule_id and body["cap"] == 65535  # match_many's matches at once
        assert len(body["all"]) == 1 and set(body["all"][0]) == {"m"}
        terms = body["all"][0]["m"]["$and"]
        assert terms[0] == NOT_STATE  # without it a rule could match the session state and loop forever
        assert len(terms) == 1 + len(spec.rule(rule_id).conditions)
    pris = [body["pri"] for body in definition.values()]
    assert len(set(pris)) == len(pris) and all(0 < p < 2**16 for p in pris)
    # the catch-all handles every message last, so durable_rules never raises "not handled"
    assert definition[NO_RULE] == {"all": [{"m": NOT_STATE}], "pri": 65000, "cap": 65535, "run": NO_RULE}
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
        assert condition_json(spec, cond) == renamed(spec, want), cond


def test_keyed_parameter_expands_to_one_branch_per_key_and_a_default():
    spec = load_spec(VALID / "mini.yaml")
    cond = next(c for c in spec.rule("overdue").conditions if c.fact == "days_since_refund")
    assert condition_json(spec, cond) == renamed(spec, {"$or": [
        {"$and": [{"payment_method": "card"}, {"$gte": {"days_since_refund": 10}}]},
        {"$and": [{"payment_method": "boleto"}, {"$gte": {"days_since_refund": 5}}]},
        {"$and": [{"$nex": {"payment_method": 1}}, {"$gte": {"days_since_refund": 20}}]},
    ]})


def test_bundled_refund_window_has_a_branch_per_payment_method():
    spec = load_spec()
    cond = next(c for c in spec.rule("refund_overdue").conditions if c.fact == "days_since_refund")
    branches = condition_json(spec, cond)["$or"]
    keyed = spec.parameters["refund_days"]
    methods = spec.facts["payment_method"].values
    assert branches[: len(methods)] == renamed(spec, [
        {"$and": [{"payment_method": m}, {"$gte": {"days_since_refund": keyed.values[m]}}]} for m in methods])
    assert branches[len(methods):] == renamed(spec, [
        {"$and": [{"$nex": {"payment_method": 1}}, {"$gte": {"days_since_refund": keyed.default}}]}])


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


# --- what durable_rules cannot take as written: fact names and number texts -----------------------------

def fnv1a(name: str) -> int:
    """durable_rules finds a message's property by this 32-bit hash of its name (json.c, getStringAndHash)."""
    value = 0x811C9DC5
    for byte in name.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def test_facts_named_like_engine_fields_decide_right():
    """'sid' is the engine's session id, 'id' its fact id, and two names with one hash are one property to it."""
    assert fnv1a("fwayjhpe") == fnv1a("q_nbdvcplkz") and fnv1a("sid") == 3593476751  # HASH_SID in state.h
    policy = engine.load(VALID / "engine_names.yaml")
    cases = [({"sid": 11, "id": "a"}, "big"), ({"sid": 11, "id": "b"}, "other"), ({"sid": 5, "id": "a"}, "other"),
             ({"sid": 11}, "other"), ({"id": "a"}, "other"), ({"q_nbdvcplkz": 9}, "other"),
             ({"fwayjhpe": 9}, "collided"), ({"fwayjhpe": 1, "q_nbdvcplkz": 9}, "other"),
             ({"fwayjhpe": 9, "q_nbdvcplkz": 1, "sid": 11, "id": "a"}, "collided")]
    for order, rule in cases:
        d = policy.decide({"order_id": "x", **order}, as_of="2026-01-01T00:00:00Z")
        assert d.rule_id == rule, order
    d = policy.decide({"order_id": "x", "sid": 12, "id": "a"}, as_of="2026-01-01T00:00:00Z")
    assert d.message == "sid 12, id a" and d.facts["sid"] == 12
    assert policy.compiled.match({"sid": 11.0, "id": "a", "fwayjhpe": 9.0}) == ("collided", "big", "other")


def test_engine_names_of_facts_never_share_a_hash():
    spec = load_spec(VALID / "engine_names.yaml")
    names = engine_names(spec)
    assert list(names) == list(spec.facts)
    hashes = {fnv1a(n) for n in names.values()}
    assert len(hashes) == len(names) and not hashes & {fnv1a("sid"), fnv1a("id")}
    # the names are generated from the fact's position: check far more positions than a message can hold
    wide = engine_names(replace(spec, facts={f"fact{i}": spec.facts["sid"] for i in range(10_000)}))
    hashes = {fnv1a(n) for n in wide.values()}
    assert len(hashes) == 10_000 and not hashes & {fnv1a("sid"), fnv1a("id")}


# Finite floats durable_rules' JSON parser cannot read as json.dumps writes them (an exponent with no
# fraction: '1e-05'), the smallest and largest magnitudes a rule may use, and a few plain ones.
CONSTANTS = [1e-05, -1e-05, 1e-07, 2.5e-06, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 0.1, 48.0, 0.0,
             123456789.5, 1e9, -1e9]
OPS = {"lt": lambda a, c: a < c, "lte": lambda a, c: a <= c, "gt": lambda a, c: a > c,
       "gte": lambda a, c: a >= c, "eq": lambda a, c: a == c, "ne": lambda a, c: a != c}


def yaml_float(value: float) -> str:
    """The exact YAML 1.1 text of a float (YAML needs a '.' before an exponent)."""
    text = repr(value)
    return text.replace("e", ".0e") if "e" in text and "." not in text else text


def constant_policy(constant: float, via_parameter: bool) -> str:
    operand = "$limit" if via_parameter else yaml_float(constant)
    rules = "".join(f"  - {{id: {op}, priority: {10 - i}, when: {{x: {{{op}: {operand}}}}}, then: {{action: hit}}, "
                    f"source: t, examples: []}}\n" for i, op in enumerate(OPS))
    return (f"policy: exact\nversion: '1'\nfacts:\n  order_id: {{type: string, required: true}}\n"
            f"  x: {{type: number}}\nparameters:\n  limit: {yaml_float(constant)}\nactions:\n  hit: Hit.\n"
            f"rules:\n{rules}")


@pytest.mark.parametrize("via_parameter", [False, True], ids=["constant", "parameter"])
def test_every_finite_constant_compiles_and_the_engine_agrees_at_and_around_it(tmp_path, via_parameter):
    """Each constant compiles, and at the constant and at its two neighbouring doubles the engine matches exactly
    the rules the Python check passes, which are the rules the comparison is true for."""
    for constant in CONSTANTS:
        path = tmp_path / f"exact-{constant!r}.yaml"
        path.write_text(constant_policy(constant, via_parameter))
        policy = engine.load(path)
        spec = policy.spec
        assert spec.resolve(spec.rules[0].conditions[0].value, {}) == constant  # read exactly from the YAML
        for x in (math.nextafter(constant, -math.inf), constant, math.nextafter(constant, math.inf)):
            truth = tuple(op for op, test in OPS.items() if test(x, constant))
            python = tuple(r.id for r in spec.ranked_rules() if check(spec, r.conditions[0], {"x": x}).passed)
            assert python == truth, (constant, x)
            assert policy.compiled.match({"x": x}) == truth, (constant, x)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constant=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_subnormal=True))
def test_any_finite_parameter_value_compiles_and_the_engine_agrees_around_it(tmp_path, constant):
    """Any double a rule may compare with (hypothesis favours subnormals, powers of ten and bounds)."""
    path = tmp_path / "exact.yaml"
    path.write_text(constant_policy(1.0, via_parameter=True))
    policy = engine.load(path).with_parameters(limit=constant)
    spec = policy.spec
    for x in (math.nextafter(constant, -math.inf), constant, math.nextafter(constant, math.inf)):
        truth = tuple(op for op, test in OPS.items() if test(x, constant))
        assert tuple(r.id for r in spec.ranked_rules() if check(spec, r.conditions[0], {"x": x}).passed) == truth
        assert policy.compiled.match({"x": x}) == truth, (constant, x)
