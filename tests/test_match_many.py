"""CompiledPolicy.match_many asks durable_rules about many orders in one call per ruleset (the batch path's engine
call): every answer must be the one `match` gives for that order alone, its rules in firing order, and an order past
one of durable_rules' limits must get the same EngineError as alone, without spoiling the others' answers."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from conftest import threshold_orders
from engine import compiler, shards
from engine.compiler import CompiledPolicy, compile_policy
from engine.errors import EngineError
from engine.facts import normalize, parse_as_of
from engine.loader import load_spec
from engine.operators import check
from engine.synthetic import marketplace_yaml

AS_OF = "2026-01-01T00:00:00+00:00"
SMALL = {"SHARD_RULES": 30, "SHARD_RULES_PER_NODE": 8, "SHARD_STACK": 12}  # many shards, as in test_shards
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def _compiled(path: Path, **sizes: int) -> CompiledPolicy:
    spec = load_spec(path)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in sizes.items():
            patch.setattr(shards, name, value)
        return compile_policy(spec)


@functools.cache
def marketplace(folder: Path, sharded: bool) -> CompiledPolicy:
    path = folder / "marketplace.yaml"
    path.write_text(marketplace_yaml(seed=0, countries=4), encoding="utf-8")
    return _compiled(path, **(SMALL if sharded else {}))


# Enum values with the characters the engine's reader of a list of messages splits on or must not be fooled by.
ODD = """policy: odd
version: "1"
facts:
  order_id: {type: string, required: true}
  status: {type: enum, required: true, values: {'a,b': {label: A}, 'q"}{': {label: Q}, 'ü, {x}': {label: U}}}
  x: {type: number, min: 0}
actions:
  a: The action.
rules:
  - {id: r0, priority: 30, when: {status: 'a,b'}, then: {action: a, message: m}, source: t, examples: []}
  - {id: r1, priority: 20, when: {status: {in: ['q"}{', 'ü, {x}']}, x: {gte: 2}}, then: {action: a, message: m},
     source: t, examples: []}
  - {id: r2, priority: 10, when: {x: {lt: 5}}, then: {action: a, message: m}, source: t, examples: []}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("many")


@pytest.fixture(scope="module", params=[1, 2], ids=["one-ruleset", "two-rulesets"])
def seventy(folder, request) -> CompiledPolicy:
    """70 rules `x >= i` in ONE ruleset (the shard's stack bound lifted): an order with x >= 64 satisfies more than
    64 tests at once, past durable_rules' evaluation stack (error 303); the others are decided. With two rulesets,
    30 more rules `x >= 70 + i` go into a second one, which decides every order: only the first fails."""
    n = 70 if request.param == 1 else 100
    rules = "".join(f"  - {{id: r{i}, priority: {5000 - i}, when: {{x: {{gte: {i}}}}}, then: {{action: a, message: "
                    f"'rule {i}'}}, source: t, examples: []}}\n" for i in range(n))
    path = folder / f"seventy-{n}.yaml"
    path.write_text(ODD.split("rules:")[0].replace("policy: odd", "policy: seventy") + "rules:\n" + rules,
                    encoding="utf-8")
    compiled = _compiled(path, SHARD_STACK=10 ** 6, SHARD_RULES=71)  # 70 rules and the catch-all
    assert len(compiled.shards) == request.param
    return compiled


def one_at_a_time(compiled: CompiledPolicy, many: list[dict[str, Any]]) -> list[Any]:
    """The reference: `match` per order, an EngineError as (its text, its code)."""
    out: list[Any] = []
    for facts in many:
        try:
            out.append(compiled.match(facts))
        except EngineError as exc:
            out.append((str(exc), exc.code))
    return out


def batched(compiled: CompiledPolicy, many: list[dict[str, Any]], chunk: int) -> list[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiler, "MATCH_CHUNK", chunk)
        found = compiled.match_many(many)
    return [(str(m), m.code) if isinstance(m, EngineError) else m for m in found]


def conditions_say(compiled: CompiledPolicy, facts: dict[str, Any]) -> tuple[str, ...]:
    spec = compiled.spec
    return tuple(r.id for r in spec.ranked_rules() if all(check(spec, c, facts).passed for c in r.conditions))


@st.composite
def facts_of_orders(draw: st.DrawFn, compiled: CompiledPolicy) -> dict[str, Any]:
    """Normalized facts of an order near the policy's thresholds."""
    return normalize(compiled.spec, draw(threshold_orders(compiled.spec)), parse_as_of(AS_OF))


@pytest.mark.parametrize("sharded", [False, True], ids=["one-ruleset", "small-shards"])
@SETTINGS
@given(data=st.data())
def test_many_orders_at_once_get_what_each_gets_alone(folder, sharded, data):
    compiled = marketplace(folder, sharded)
    many = data.draw(st.lists(facts_of_orders(compiled), min_size=1, max_size=30))
    many += data.draw(st.lists(st.sampled_from(many), max_size=5))  # the same facts twice in one call
    chunk = data.draw(st.sampled_from([1, 2, 7, 1024]))
    expected = one_at_a_time(compiled, many)
    assert batched(compiled, many, chunk) == expected
    assert expected == [conditions_say(compiled, facts) for facts in many]


@SETTINGS
@given(xs=st.lists(st.one_of(st.sampled_from([0, 1.5, 63, 63.5, 64, 64.5, 69, 70]), st.floats(0, 100)),
                   min_size=1, max_size=12), chunk=st.sampled_from([1, 3, 1024]))
def test_orders_past_the_stack_get_their_own_error_and_the_rest_their_answers(seventy, xs, chunk):
    many = [{"order_id": "o", "status": "a,b", "x": x} for x in xs]
    expected = one_at_a_time(seventy, many)
    assert batched(seventy, many, chunk) == expected
    for x, found in zip(xs, expected, strict=True):
        if x >= 64:  # more than 64 tests hold: durable_rules' own limit, as code 303
            assert found[1] == 303 and "more than 64" in found[0]
        else:
            assert found == tuple(f"r{i}" for i in range(len(seventy.spec.rules)) if x >= i)
    assert seventy.match({"x": 10}) == tuple(f"r{i}" for i in range(11))  # the engine is left clean


def test_a_batch_with_rows_past_the_stack_gives_each_row_the_per_row_error(seventy):
    """Through the batch path (CellDecisions): the rows past the limit get the per-row path's error text, the others
    their decision, exactly as method='rows'."""
    policy = engine.Policy(seventy.spec, seventy)
    orders = pd.DataFrame({"order_id": list("abcdef"), "status": ["a,b"] * 6, "x": ["3", "70", "64", "63.5", "", "99"]})
    cells = policy.evaluate(orders, as_of=AS_OF)
    rows = policy.evaluate(orders, as_of=AS_OF, method="rows")
    pd.testing.assert_frame_equal(cells, rows)
    assert cells["error"].iloc[[1, 2, 5]].str.contains("more than 64").all()
    assert list(cells["rule_id"].iloc[[0, 3]]) == ["r0", "r0"]


@SETTINGS
@given(data=st.data())
def test_values_with_commas_quotes_and_braces_reach_the_engine_intact(folder, data):
    path = folder / "odd.yaml"
    path.write_text(ODD, encoding="utf-8")
    compiled = _compiled(path)
    many = data.draw(st.lists(facts_of_orders(compiled), min_size=1, max_size=20))
    expected = one_at_a_time(compiled, many)
    assert batched(compiled, many, data.draw(st.sampled_from([2, 1024]))) == expected
    assert expected == [conditions_say(compiled, facts) for facts in many]
