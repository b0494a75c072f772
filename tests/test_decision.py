"""Decisions: every rule example, boundaries at every threshold, explanations, JSON, isolation properties."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine

# The rules' examples are decided at the examples' time, and so are the orders written alongside them here.
from conftest import EXAMPLES_AS_OF as AS_OF
from conftest import EXAMPLES_AS_OF_DT as AS_OF_DT
from conftest import LEGACY as LEGACY_PATH
from conftest import load_policy
from engine.compiler import compile_policy
from engine.decision import Decision, WhyNot
from engine.errors import EngineError, OrderError
from engine.loader import RULES_DIR
from engine.model import ParamRef
from engine.operators import ConditionResult

HERE = Path(__file__).parent
VARIANT = LEGACY_PATH

DEFAULT = load_policy("default")
LEGACY = load_policy("legacy")
POLICIES = {"default": DEFAULT, "legacy": LEGACY}


# --- every `examples` entry of the bundled policy and its variant ------------------------------------------

def _examples():
    for name, policy in POLICIES.items():
        # A variant changes parameters on purpose: it is judged by its own examples, not its base's.
        rules = policy.spec.rules if name == "default" else ()
        for rule in rules:
            for example in rule.examples:
                yield pytest.param(name, rule.id, example, id=f"{name}-{rule.id}-{example.order['order_id']}")
        for example in policy.spec.examples:
            yield pytest.param(name, None, example, id=f"{name}-policy-{example.order['order_id']}")


EXAMPLES = list(_examples())


def test_examples_were_collected():
    assert len(EXAMPLES) >= len(DEFAULT.spec.rules) + len(LEGACY.spec.examples)
    assert len(LEGACY.spec.examples) >= 2


@pytest.mark.parametrize(("policy_name", "rule_id", "example"), EXAMPLES)
def test_rule_example(policy_name, rule_id, example):
    decision = POLICIES[policy_name].decide(example.order, as_of=AS_OF)
    assert decision.error is None
    assert decision.action == example.expect
    if example.rule:
        assert decision.rule_id == example.rule
    elif rule_id:
        assert decision.rule_id == rule_id  # a rule's examples show that very rule firing


# --- boundaries at every threshold, read from the loaded policy ------------------------------------------

def threshold(policy, rule_id: str, fact: str, **facts) -> float:
    """The constant that rule `rule_id` compares `fact` with, its parameters resolved for these facts."""
    spec = policy.spec
    cond = next(c for c in spec.rule(rule_id).conditions if c.fact == fact)
    assert isinstance(cond.value, ParamRef)  # thresholds are parameters, so a variant can move them
    return spec.resolve(cond.value, facts)


def decide(policy, **order):
    return policy.decide({"order_id": "B", **order}, as_of=AS_OF)


def outcome(policy, **order):
    d = decide(policy, **order)
    return d.action, d.rule_id


def below(value: float) -> float:
    return math.nextafter(value, -math.inf)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_reply_window_boundary(name):
    policy = POLICIES[name]
    window = threshold(policy, "seller_silent_past_window", "hours_since_contact")
    assert window == threshold(policy, "wait_for_seller_reply", "hours_since_contact")
    assert window == {"default": 48, "legacy": 72}[name]
    waiting, dispute = ("wait_for_seller", "wait_for_seller_reply"), ("open_dispute", "seller_silent_past_window")
    for hours, want in [(0, waiting), (window - 0.1, waiting), (below(window), waiting), (window, dispute),
                        (window + 0.1, dispute), (1000, dispute)]:
        assert outcome(policy, status="Sent", seller_reply="no_reply", hours_since_contact=hours) == want, hours
    assert outcome(policy, status="Sent", seller_reply="no_reply") == ("wait_for_seller", "reply_window_unknown")


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_reply_window_boundary_from_timestamps(name):
    policy = POLICIES[name]
    window = threshold(policy, "seller_silent_past_window", "hours_since_contact")
    at = AS_OF_DT - timedelta(hours=window)
    order = {"status": "Awaiting shipment", "seller_reply": "No reply", "contacted_at": at.isoformat()}
    assert outcome(policy, **order)[0] == "open_dispute"
    order["contacted_at"] = (at + timedelta(minutes=6)).isoformat()  # window - 0.1 h
    assert outcome(policy, **order)[0] == "wait_for_seller"
    order["contacted_at"] = (at + timedelta(seconds=1)).isoformat()
    assert outcome(policy, **order)[0] == "wait_for_seller"


def test_payment_verification_boundary():
    limit = threshold(DEFAULT, "payment_stuck_in_verification", "hours_since_payment")
    assert limit == 24
    cancel = ("cancel_directly", "cancel_before_processing")
    support = ("contact_support", "payment_stuck_in_verification")
    for hours, want in [(0, cancel), (limit - 0.1, cancel), (below(limit), cancel), (limit, support),
                        (limit + 0.1, support)]:
        assert outcome(DEFAULT, status="payment_verifying", hours_since_payment=hours) == want, hours
    assert outcome(DEFAULT, status="payment_verifying") == cancel
    assert outcome(DEFAULT, status="awaiting_payment", hours_since_payment=limit + 100) == cancel


@pytest.mark.parametrize("method", sorted(DEFAULT.spec.facts["payment_method"].values) + [None])
def test_refund_window_boundary_per_payment_method(method):
    extra = {"payment_method": method} if method else {}
    days = threshold(DEFAULT, "refund_overdue", "days_since_refund", **extra)
    assert days == threshold(DEFAULT, "refund_in_progress", "days_since_refund", **extra)
    keyed = DEFAULT.spec.parameters["refund_days"]
    assert days == (keyed.values[method] if method else keyed.default)
    waiting, overdue = ("wait_for_refund", "refund_in_progress"), ("contact_support", "refund_overdue")
    for value, want in [(0, waiting), (days - 0.1, waiting), (below(days), waiting), (days, overdue),
                        (days + 0.1, overdue)]:
        assert outcome(DEFAULT, status="cancelled", days_since_refund=value, **extra) == want, value
    assert outcome(DEFAULT, status="cancelled", **extra) == ("wait_for_refund", "refund_start_unknown")


def test_refund_windows_differ_by_method():
    """The keyed parameter really is looked up per order: one day count, two outcomes."""
    assert outcome(DEFAULT, status="Closed", payment_method="Boleto", days_since_refund=10)[0] == "contact_support"
    assert outcome(DEFAULT, status="Closed", payment_method="Credit card", days_since_refund=10)[0] == "wait_for_refund"


def test_seller_rating_boundary():
    limit = threshold(DEFAULT, "contact_low_rated_seller_now", "seller_rating")
    assert limit == 90
    low, plain = ("contact_seller", "contact_low_rated_seller_now"), ("contact_seller", "contact_seller_to_cancel")
    for rating, want in [(0, low), (limit - 0.1, low), (below(limit), low), (limit, plain), (limit + 0.1, plain),
                         (100, plain)]:
        assert outcome(DEFAULT, status="awaiting_shipment", seller_rating=rating) == want, rating
    assert outcome(DEFAULT, status="awaiting_shipment") == plain
    assert outcome(DEFAULT, status="Sent", seller_rating=10) == plain  # only before shipping


def test_variant_moves_only_the_reply_window():
    for hours in (47.9, 48, 71.9, 72):
        order = {"status": "Sent", "seller_reply": "no_reply", "hours_since_contact": hours}
        d, v = decide(DEFAULT, **order), decide(LEGACY, **order)
        assert d.action == ("wait_for_seller" if hours < 48 else "open_dispute")
        assert v.action == ("wait_for_seller" if hours < 72 else "open_dispute")
    assert decide(LEGACY, status="Sent").policy_version == LEGACY.version != DEFAULT.version


# --- explanations ---------------------------------------------------------------------------------------

ACCEPTANCE_ORDER = {"order_id": "A1", "status": "Sent", "seller_reply": "no_reply", "hours_since_contact": 50}


def test_acceptance_order_is_explained():
    d = DEFAULT.decide(ACCEPTANCE_ORDER, as_of=AS_OF)
    assert (d.order_id, d.action, d.rule_id, d.error) == ("A1", "open_dispute", "seller_silent_past_window", None)
    assert d.message == ("The seller has not replied in 50 h, at or past the 48 h reply window: "
                         "open a dispute from the order page.")
    assert d.conditions == (
        ConditionResult("seller_reply", "eq", "no_reply", "no_reply", True, None),
        ConditionResult("hours_since_contact", "gte", 48, 50.0, True, "seller_reply_hours"),
    )
    ranked = [r.id for r in DEFAULT.spec.ranked_rules()]
    assert [w.rule_id for w in d.why_not] == ranked[: ranked.index("seller_silent_past_window")]
    first = d.why_not[0]
    assert first == WhyNot("payment_stuck_in_verification", "contact_support",
                           ConditionResult("status", "eq", "payment_verifying", "shipped", False, None))
    assert d.why_not[1].condition == ConditionResult("status", "in", ("awaiting_payment", "payment_verifying"),
                                                     "shipped", False, None)
    assert d.also_matched == ()
    assert d.warnings == DEFAULT.spec.rule("seller_silent_past_window").warnings
    assert (d.policy, d.policy_version) == ("cancellation", DEFAULT.version)
    assert d.as_of == AS_OF
    assert d.facts == {"order_id": "A1", "status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 50.0}


def test_explain_text_names_rule_conditions_and_rivals():
    text = DEFAULT.decide(ACCEPTANCE_ORDER, as_of=AS_OF).explain()
    lines = text.splitlines()
    assert lines[0] == f"order A1: open_dispute (rule seller_silent_past_window, policy {DEFAULT.version})"
    assert "  ✓ hours_since_contact ≥ seller_reply_hours=48 (actual: 50)" in lines
    assert "  ✓ seller_reply = no_reply (actual: no_reply)" in lines
    assert "  not payment_stuck_in_verification (contact_support): ✗ status = payment_verifying (actual: shipped)" \
        in lines
    assert sum(line.startswith("  not ") for line in lines) == 10


def test_also_matched_lists_lower_priority_rules_in_order():
    d = decide(DEFAULT, status="Processing", seller_rating=82.5)
    assert d.rule_id == "contact_low_rated_seller_now"
    assert d.also_matched == ("contact_seller_to_cancel",)
    d = decide(DEFAULT, status="payment_verifying", hours_since_payment=30)
    assert d.also_matched == ("cancel_before_processing",)
    assert d.message.startswith("The payment has been in verification for 30 h, past the usual 24 h")
    assert "also matched: cancel_before_processing" in d.explain()


def test_why_not_for_a_keyed_parameter_shows_the_resolved_value():
    d = decide(DEFAULT, status="Closed", payment_method="boleto", days_since_refund=3)
    assert d.rule_id == "refund_in_progress"
    assert d.why_not[-1] == WhyNot("refund_overdue", "contact_support",
                                   ConditionResult("days_since_refund", "gte", 7, 3.0, False, "refund_days"))
    assert d.message.endswith("within 7 days for this payment method (4 days left).")


def test_why_not_shows_a_fact_not_given():
    d = decide(DEFAULT, status="Closed")
    assert d.rule_id == "refund_start_unknown"
    assert [(w.rule_id, w.condition.fact, w.condition.actual) for w in d.why_not[-2:]] == [
        ("refund_overdue", "days_since_refund", None), ("refund_in_progress", "days_since_refund", None)]
    assert d.conditions[-1] == ConditionResult("days_since_refund", "given", False, None, True, None)
    assert "(actual: not given)" in d.explain()


def test_message_fills_labels_and_differences():
    d = decide(DEFAULT, status="awaiting_shipment", seller_reply="no_reply", hours_since_contact=12.5)
    assert d.message == ("The seller has had 12.5 h of the 48 h reply window: wait up to 35.5 more hours "
                         "before opening a dispute.")
    d = decide(DEFAULT, status="awaiting_payment")
    assert d.message == "The order has not been processed yet (Awaiting payment): cancel it from the order page."


def test_unique_hit_policy_reports_overlap_and_gap():
    policy = engine.load(HERE / "fixtures" / "valid" / "unique.yaml")
    d = policy.decide({"order_id": "U", "status": "open", "seller_reply": "no_reply"}, as_of=AS_OF)
    assert (d.action, d.rule_id) == (None, None)
    assert d.error == "several rules match under hit policy 'unique': by_status, by_reply"
    assert d.also_matched == ("by_status", "by_reply")
    gap = policy.decide({"order_id": "G", "status": "closed"}, as_of=AS_OF)
    assert (gap.action, gap.rule_id, gap.error) == (None, None, "no rule decides this order (policy gap)")
    assert [w.rule_id for w in gap.why_not] == ["by_status", "by_reply"]
    assert gap.explain() == "order G: no decision: no rule decides this order (policy gap)"


# --- JSON -----------------------------------------------------------------------------------------------

def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _condition(data: dict) -> ConditionResult:
    return ConditionResult(**{**data, "expected": _tuples(data["expected"])})


def test_decision_json_round_trip():
    for order in [ACCEPTANCE_ORDER, {"order_id": "J", "status": "Placed"},
                  {"order_id": "K", "status": "Closed", "payment_method": "wallet", "days_since_refund": 3.25}]:
        d = DEFAULT.decide(order, as_of=AS_OF)
        data = json.loads(d.to_json())
        assert {"action", "rule_id", "message", "conditions", "policy_version", "why_not", "also_matched",
                "warnings", "error"} <= set(data)
        rebuilt = Decision(**{
            **data,
            "conditions": tuple(_condition(c) for c in data["conditions"]),
            "also_matched": tuple(data["also_matched"]),
            "why_not": tuple(WhyNot(w["rule_id"], w["action"], _condition(w["condition"])) for w in data["why_not"]),
            "warnings": tuple(data["warnings"]),
        })
        assert rebuilt == d
        assert json.loads(d.to_json(indent=None)) == data


def test_policy_json():
    data = json.loads(DEFAULT.to_json())
    assert data["policy"] == "cancellation" and data["version"] == DEFAULT.version
    assert data["ruleset"] == DEFAULT.compiled.ruleset
    assert [r["id"] for r in data["rules"]] == [r.id for r in DEFAULT.spec.ranked_rules()]
    silent = next(r for r in data["rules"] if r["id"] == "seller_silent_past_window")
    assert silent["when"] == [{"fact": "seller_reply", "op": "eq", "value": "no_reply"},
                              {"fact": "hours_since_contact", "op": "gte", "value": "$seller_reply_hours"}]
    assert data["parameters"]["seller_reply_hours"] == 48
    assert data["parameters"]["refund_days"]["by"] == "payment_method"
    assert data["parameters"]["refund_days"]["values"]["boleto"] == 7
    assert set(data["facts"]["status"]["values"]) == set(DEFAULT.spec.facts["status"].values)
    assert data["actions"] == dict(DEFAULT.spec.actions)
    assert json.loads(LEGACY.to_json())["parameters"]["seller_reply_hours"] == 72


# --- re-loading, engine failures ---------------------------------------------------------------------------

def test_reloading_the_same_policy_shares_its_ruleset(tmp_path):
    again = engine.load()
    assert again.compiled.ruleset == DEFAULT.compiled.ruleset
    assert compile_policy(DEFAULT.spec).ruleset == DEFAULT.compiled.ruleset  # registering twice is fine
    copy = tmp_path / "copy.yaml"  # the same content elsewhere (a notebook's working copy)
    shutil.copy(RULES_DIR / "cancellation.yaml", copy)
    assert engine.load(copy).compiled.ruleset == DEFAULT.compiled.ruleset
    assert LEGACY.compiled.ruleset != DEFAULT.compiled.ruleset
    for policy in (again, DEFAULT, engine.load(copy)):
        assert policy.decide(ACCEPTANCE_ORDER, as_of=AS_OF) == DEFAULT.decide(ACCEPTANCE_ORDER, as_of=AS_OF)


def test_engine_failure_never_shows_raw_text():
    facts = {"status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 31337.5}
    shard = replace(DEFAULT.compiled.shards[0], name="no-such-ruleset")  # a name that is not its content's
    broken = replace(DEFAULT.compiled, ruleset="no-such-ruleset", shards=(shard,))
    with pytest.raises(EngineError) as info:
        broken.match(facts)
    err = info.value
    assert re.fullmatch(r"rules engine failed during evaluation on ruleset 'no-such-ruleset' \(\w+\)", str(err))
    assert "31337" not in str(err) and "sid" not in str(err)
    assert err.__cause__ is None and err.__suppress_context__
    assert isinstance(err, engine.PolicyError)
    # the engine is still fine afterwards
    assert DEFAULT.compiled.match(facts) == ("seller_silent_past_window",)


@pytest.mark.parametrize("hours", [1e-05, 1e-07, 5e-324, 1e-300])
def test_numbers_json_writes_with_an_exponent_reach_the_engine(hours):
    """json.dumps writes these as '1e-05', '2e+16': durable_rules' parser once rejected them."""
    d = decide(DEFAULT, status="Sent", seller_reply="no_reply", hours_since_contact=hours)
    assert d.action == ("open_dispute" if hours >= 48 else "wait_for_seller")


# --- properties -------------------------------------------------------------------------------------------

SPEC = DEFAULT.spec
ENUMS = {name: fact for name, fact in SPEC.facts.items() if fact.type == "enum"}


def interesting_numbers(fact: str) -> list[float]:
    """Every constant a rule compares `fact` with (parameters resolved for every key), and its neighbours."""
    out = {0.0}
    for rule in SPEC.rules:
        for cond in rule.conditions:
            if cond.fact != fact or cond.op == "given":
                continue
            for key in (None, *SPEC.facts["payment_method"].values):
                resolved = SPEC.resolve(cond.value, {"payment_method": key} if key else {})
                for v in resolved if isinstance(resolved, tuple) else (resolved,):
                    out |= {v, v - 0.1, v + 0.1, math.nextafter(v, -math.inf), math.nextafter(v, math.inf)}
    spec = SPEC.facts[fact]
    return sorted(x for x in out if (spec.min is None or x >= spec.min) and (spec.max is None or x <= spec.max))


def number(fact: str, high: float = 1e6):
    return st.one_of(st.sampled_from(interesting_numbers(fact)), st.floats(0, high), st.integers(0, min(high, 2000)))


orders = st.fixed_dictionaries(
    {"order_id": st.integers(0, 10**6).map(lambda i: f"H{i}"), "status": st.sampled_from(ENUMS["status"].values)},
    optional={
        "seller_reply": st.sampled_from(ENUMS["seller_reply"].values),
        "payment_method": st.sampled_from(ENUMS["payment_method"].values),
        "hours_since_contact": number("hours_since_contact"),
        "hours_since_payment": number("hours_since_payment"),
        "days_since_refund": number("days_since_refund", 1e4),
        "seller_rating": number("seller_rating", 100),
    })


def holds(op: str, actual, expected) -> bool:
    """The rule language's semantics, written out independently of engine.decision."""
    if op == "given":
        return (actual is not None) == expected
    if actual is None or expected is None or (isinstance(expected, tuple) and None in expected):
        return False
    if op in ("in", "not_in"):
        return (actual in expected) == (op == "in")
    if op == "between":
        return expected[0] <= actual <= expected[1]
    return {"eq": lambda: actual == expected, "ne": lambda: actual != expected, "lt": lambda: actual < expected,
            "lte": lambda: actual <= expected, "gt": lambda: actual > expected, "gte": lambda: actual >= expected}[op]()


def oracle(spec, facts) -> tuple[list[str], dict[str, int | None]]:
    """Matching rules in firing order, and for each rule the index of its first failing condition."""
    matched, first_fail = [], {}
    for rule in spec.ranked_rules():
        fails = [i for i, c in enumerate(rule.conditions)
                 if not holds(c.op, facts.get(c.fact), spec.resolve(c.value, facts))]
        first_fail[rule.id] = fails[0] if fails else None
        if not fails:
            matched.append(rule.id)
    return matched, first_fail


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(orders)
def test_every_valid_order_gets_exactly_one_decision(order):
    d = DEFAULT.decide(order, as_of=AS_OF)
    assert d.error is None, d.error  # never a policy gap in the bundled policy
    assert d.action and d.rule_id
    winner = SPEC.rule(d.rule_id)
    assert d.action == winner.action
    matched, first_fail = oracle(SPEC, d.facts)
    assert [d.rule_id, *d.also_matched] == matched
    assert all(c.passed for c in d.conditions) and len(d.conditions) == len(winner.conditions)
    assert [c.fact for c in d.conditions] == [c.fact for c in winner.conditions]
    assert all(c.actual == d.facts.get(c.fact) for c in d.conditions)
    ranked = SPEC.ranked_rules()
    higher = ranked[: ranked.index(winner)]
    assert [w.rule_id for w in d.why_not] == [r.id for r in higher]  # every higher rule, none missing
    for why in d.why_not:
        rule = SPEC.rule(why.rule_id)
        cond = rule.conditions[first_fail[rule.id]]
        assert (why.condition.fact, why.condition.op, why.condition.passed) == (cond.fact, cond.op, False)
        assert why.condition.actual == d.facts.get(cond.fact)
        assert why.action == rule.action


@PROPERTY
@given(orders)
def test_legacy_variant_has_no_gap_either(order):
    d = LEGACY.decide(order, as_of=AS_OF)
    assert d.error is None and d.action and d.rule_id


bad_orders = st.sampled_from([
    {"order_id": "bad1", "status": "shiped"},
    {"order_id": "bad2", "status": "Sent", "hours_since_contact": -1},
    {"status": "Sent"},
    {"order_id": "bad3", "status": "Sent", "contacted_at": "soon"},
])


@PROPERTY
@given(target=orders, before=st.lists(st.tuples(st.sampled_from(["default", "legacy", "bad"]),
                                                 orders | bad_orders), max_size=6))
def test_same_order_same_decision_whatever_came_before(target, before):
    alone = DEFAULT.decide(target, as_of=AS_OF)
    for which, order in before:
        try:
            POLICIES.get(which, DEFAULT).decide(order, as_of=AS_OF)
        except OrderError:
            pass
    assert DEFAULT.decide(target, as_of=AS_OF) == alone


def respell(draw, fact: str, code: str) -> str:
    """Any accepted spelling of an enum code: the code, a label or an alias, in random case and spacing."""
    spec = ENUMS[fact]
    text = draw(st.sampled_from(sorted(k for k, v in spec.aliases.items() if v == code)))
    words = re.split(r"[\s_\-]+", text)
    seps = draw(st.lists(st.sampled_from([" ", "  ", "_", "-", "\t"]), min_size=len(words), max_size=len(words)))
    text = "".join(w + s for w, s in zip(words, seps, strict=True))[: -len(seps[-1])]
    text = "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in text)
    return draw(st.sampled_from(["", " ", "  "])) + text + draw(st.sampled_from(["", " ", "\t"]))


@st.composite
def respelled(draw):
    order = draw(orders)
    spelled = dict(order)
    for fact in ENUMS:
        if fact in order:
            spelled[fact] = respell(draw, fact, order[fact])
    return order, spelled


@PROPERTY
@given(respelled())
def test_alias_spellings_decide_like_codes(pair):
    order, spelled = pair
    a, b = DEFAULT.decide(order, as_of=AS_OF), DEFAULT.decide(spelled, as_of=AS_OF)
    assert b == a


@PROPERTY
@given(st.sampled_from(ENUMS["seller_reply"].values), st.integers(0, 200 * 3600), st.integers(0, 60 * 86400))
def test_timestamps_decide_like_elapsed_numbers(reply, contact_seconds, refund_seconds):
    for status in ("Sent", "Closed"):
        numbers = {"order_id": "T", "status": status, "seller_reply": reply,
                   "hours_since_contact": contact_seconds / 3600, "days_since_refund": refund_seconds / 86400}
        stamps = {"order_id": "T", "status": status, "seller_reply": reply,
                  "contacted_at": (AS_OF_DT - timedelta(seconds=contact_seconds)).isoformat(),
                  "refund_started_at": (AS_OF_DT - timedelta(seconds=refund_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        assert DEFAULT.decide(stamps, as_of=AS_OF) == DEFAULT.decide(numbers, as_of=AS_OF)


# --- acceptance: 10,000 orders one after another ---------------------------------------------------------------

def random_order(rng: random.Random, i: int) -> dict:
    def spelling(fact: str) -> str:
        code = rng.choice(ENUMS[fact].values)
        return rng.choice([code, ENUMS[fact].label(code), *[k for k, v in ENUMS[fact].aliases.items() if v == code]])

    order = {"order_id": f"R{i}", "status": spelling("status")}
    if rng.random() < 0.8:
        order["seller_reply"] = spelling("seller_reply")
    if rng.random() < 0.7:
        order["payment_method"] = spelling("payment_method")
    for fact, high in [("hours_since_contact", 120), ("hours_since_payment", 60), ("days_since_refund", 40),
                       ("seller_rating", 100)]:
        if rng.random() < 0.7:
            order[fact] = rng.choice([round(rng.uniform(0, high), 1), rng.choice(interesting_numbers(fact))])
    return order


def test_ten_thousand_orders_then_the_first_again():
    rng = random.Random(20260101)
    orders_ = [random_order(rng, i) for i in range(10_000)]
    first_alone = DEFAULT.decide(orders_[0], as_of=AS_OF)
    decisions = [DEFAULT.decide(o, as_of=AS_OF) for o in orders_]
    assert all(d.action and d.error is None for d in decisions)
    assert len({d.rule_id for d in decisions}) == len(SPEC.rules)  # the random orders reach every rule
    assert decisions[0] == first_alone
    assert DEFAULT.decide(orders_[0], as_of=AS_OF) == first_alone
    # and any order, re-evaluated after all the others, gets its decision again
    for i in rng.sample(range(10_000), 50):
        assert DEFAULT.decide(orders_[i], as_of=AS_OF) == decisions[i]
