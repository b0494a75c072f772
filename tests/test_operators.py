"""The rule language's operators (engine.operators): one row each, and `not_between` (a value outside a closed
range), added as one row, works end to end: the loader, the compiled form, cells against rows, verify, the
explanations and the rule examples."""

from __future__ import annotations

from typing import get_args

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from conftest import AS_OF, POLICIES, load_policy, text
from engine.compiler import condition_json, engine_names
from engine.html import policy_html
from engine.operators import OPERATORS, OperatorName, check

OUTSIDE = POLICIES / "not_between.yaml"
RATING_RULE = "      seller_rating: {not_between: [$low_rating, 99.5]}\n"


def outside() -> engine.Policy:
    return load_policy("not_between")


def test_each_operator_is_one_row_under_its_own_name():
    assert [row.name for row in OPERATORS.values()] == list(OPERATORS) == list(get_args(OperatorName))


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(value=finite, one=finite, other=finite)
def test_not_between_is_between_negated_for_a_given_value(value, one, other):
    bounds = (min(one, other), max(one, other))
    assert OPERATORS["not_between"].test(value, bounds) is (not OPERATORS["between"].test(value, bounds))


def test_a_fact_not_given_fails_not_between_as_every_test_but_given():
    spec = outside().spec
    condition = spec.rule("rating_outside_usual").conditions[1]
    assert condition.op == "not_between"
    assert check(spec, condition, {"status": "shipped"}).passed is False
    assert check(spec, condition, {"status": "shipped", "seller_rating": 80.0}).passed is True


def test_not_between_compiles_to_either_side_of_the_range():
    spec = outside().spec
    rating = engine_names(spec)["seller_rating"]
    condition = spec.rule("rating_outside_usual").conditions[1]
    assert condition_json(spec, condition) == {"$or": [{"$lt": {rating: 90}}, {"$gt": {rating: 99.5}}]}


@pytest.mark.parametrize(("rating", "action"), [(0, "review"), (89.9, "review"), (90, "wait"), (95, "wait"),
                                                (99.5, "wait"), (99.6, "review"), (100, "review"), (None, "wait")])
def test_the_bounds_are_inside_the_range(rating, action):
    order = {"order_id": "B1", "status": "Sent", "seller_rating": rating}
    assert outside().decide(order, as_of=AS_OF).action == action


@pytest.mark.parametrize(("method", "hours", "action"), [
    ("card", 12, "wait"), ("card", 12.01, "dispute"), ("paypal", 36, "wait"), ("paypal", 36.5, "dispute"),
    (None, 24, "wait"), (None, 24.01, "dispute"), ("card", 1, "wait"), ("card", 0.99, "dispute"),
])
def test_a_keyed_parameter_bounds_the_range_by_its_key(method, hours, action):
    order = {"order_id": "K1", "status": "delivered", "payment_method": method, "hours_since_contact": hours}
    assert outside().decide(order, as_of=AS_OF).action == action


def test_verify_finds_the_engine_and_the_conditions_agreeing_on_every_cell():
    report = outside().verify()  # it raises if durable_rules and the Python tests disagree on any cell
    assert report.gaps == [] and report.unreachable == []
    assert report.wins["rating_outside_usual"] > 0 and report.wins["contact_outside_window"] > 0


RATINGS = ["", "0", "89.9", "90", "90.05", "99.4", "99.5", "99.55", "100", "101", "good"]
HOURS = ["", "0", "0.99", "1", "1.01", "12", "12.01", "24", "24.05", "36", "36.1", "-1"]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["Sent", "shipped", "delivered", "lost", ""]),
                               st.sampled_from(RATINGS), st.sampled_from(HOURS),
                               st.sampled_from(["", "card", "paypal", "PayPal", "cash"])), min_size=1, max_size=40))
def test_cells_and_rows_agree_on_not_between(rows):
    frame = pd.DataFrame(rows, columns=["status", "seller_rating", "hours_since_contact", "payment_method"])
    frame.insert(0, "order_id", [f"N{i}" for i in range(len(frame))])
    cells = outside().evaluate(frame, as_of=AS_OF)
    by_row = outside().evaluate(frame, as_of=AS_OF, method="rows")
    for column in ("action", "rule_id", "message", "error"):
        assert cells[column].tolist() == by_row[column].tolist(), column


def test_the_explanation_says_not_between_with_the_bounds():
    decision = outside().decide({"order_id": "E1", "status": "Sent", "seller_rating": 80}, as_of=AS_OF)
    assert decision.message == "A rating of 80 % is outside 90 to 99.5 %."
    assert "  ✓ seller_rating not between low_rating=[90, 99.5] (actual: 80)" in decision.explain().splitlines()
    inside = outside().decide({"order_id": "E2", "status": "Sent", "seller_rating": 95}, as_of=AS_OF)
    assert ("  not rating_outside_usual (review): ✗ seller_rating not between low_rating=[90, 99.5] (actual: 95)"
            in inside.explain().splitlines())
    shown = policy_html(outside())  # in the controls' words, the codes on hover
    assert "Seller rating not between Low rating = [90, 99.5] %" in text(shown)
    assert "title='seller_rating not between low_rating = [90, 99.5] %'" in shown


def test_a_rule_example_that_does_not_hold_is_reported(tmp_path):
    path = tmp_path / "outside.yaml"
    path.write_text(OUTSIDE.read_text(encoding="utf-8").replace("seller_rating: 100}\n        expect: review",
                                                                "seller_rating: 99}\n        expect: review"),
                    encoding="utf-8")
    with pytest.raises(engine.RuleError) as info:
        engine.load(path)
    assert [p.message for p in info.value.problems] == [
        "example expects review but the policy gives wait (rule otherwise)"]


@pytest.mark.parametrize(("operand", "message"), [
    ("{not_between: 90}", "operand of 'not_between' must be a list"),
    ("{not_between: [90]}", "'not_between' takes a list of two bounds [low, high]"),
    ("{not_between: [99.5, 90]}", "'not_between' bounds are reversed: 99.5 > 90"),
    ("{not_between: [90, high]}", "fact 'seller_rating' is a number; got 'high'"),
    ("{not_betwen: [90, 99.5]}", "unknown operator 'not_betwen' (did you mean 'not_between'?)"),
])
def test_a_bad_not_between_is_located_in_the_file(tmp_path, operand, message):
    source = OUTSIDE.read_text(encoding="utf-8")
    path = tmp_path / "outside.yaml"
    path.write_text(source.replace(RATING_RULE, f"      seller_rating: {operand}\n"), encoding="utf-8")
    with pytest.raises(engine.RuleError) as info:
        engine.load(path)
    line = source[:source.index(RATING_RULE)].count("\n") + 1
    located = [str(p) for p in info.value.problems]
    assert any(p.startswith(f"{path}:{line}:") and p.endswith(f"rule 'rating_outside_usual': {message}")
               for p in located), located


def test_not_between_does_not_apply_to_an_enum_fact(tmp_path):
    path = tmp_path / "outside.yaml"
    path.write_text(OUTSIDE.read_text(encoding="utf-8").replace("      status: shipped\n",
                                                                "      status: {not_between: [shipped, delivered]}\n"),
                    encoding="utf-8")
    with pytest.raises(engine.RuleError) as info:
        engine.load(path)
    assert [p.message for p in info.value.problems] == [
        "operator 'not_between' does not apply to enum fact 'status' (use one of: eq, ne, in, not_in, given)"]
