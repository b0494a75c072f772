"""Issue 13 item 2: a policy spread over several durable_rules rulesets decides exactly as one ruleset would,
and as its rules evaluated directly in Python: the winner, every other match in firing order, the message and
the whole explanation. Shards are made small here so that the marketplace and growth policies span many."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from conftest import threshold_orders
from engine import shards
from engine.compiler import NO_RULE, compile_policy
from engine.facts import normalize, parse_as_of
from engine.loader import load_spec
from engine.operators import check
from engine.policy import Policy
from engine.synthetic import growth_yaml, marketplace_yaml

AS_OF = "2026-01-01T00:00:00+00:00"
SMALL = {"SHARD_RULES": 30, "SHARD_RULES_PER_NODE": 8, "SHARD_STACK": 12}  # far inside durable_rules' sizes


@functools.cache
def policies(kind: str, folder: Path) -> tuple[Policy, Policy]:
    """(one ruleset as far as it fits, small shards) of the same policy."""
    path = folder / f"{kind}.yaml"
    path.write_text(marketplace_yaml(seed=0, countries=4) if kind == "marketplace" else growth_yaml(4),
                    encoding="utf-8")
    whole = engine.load(path)
    spec = load_spec(path)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL.items():
            patch.setattr(shards, name, value)
        sharded = Policy(spec, compile_policy(spec))
    return whole, sharded


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shards")


def direct(policy: Policy, order: Mapping[str, Any]) -> tuple[str, ...]:
    """The reference: every rule whose conditions hold, in firing order, evaluated in Python (no engine)."""
    spec = policy.spec
    facts = normalize(spec, order, parse_as_of(AS_OF))
    return tuple(r.id for r in spec.ranked_rules() if all(check(spec, c, facts).passed for c in r.conditions))


@pytest.mark.parametrize("kind", ["marketplace", "growth"])
def test_small_shards_really_split_the_policy(kind, folder):
    whole, sharded = policies(kind, folder)
    assert len(whole.compiled.shards) == 1 and len(sharded.compiled.shards) >= len(sharded.spec.rules) // 30
    placed = [rule for shard in sharded.compiled.shards for rule in shard.definition if rule != NO_RULE]
    assert sorted(rule.split("#")[0] for rule in placed) == sorted(r.id for r in sharded.spec.rules)
    rank = {r.id: k for k, r in enumerate(sharded.spec.ranked_rules())}
    for shard in sharded.compiled.shards:  # within a shard, pri follows the firing order
        pris = sorted((rule["pri"], rank[name.split("#")[0]]) for name, rule in shard.definition.items()
                      if name != NO_RULE)
        assert [r for _, r in pris] == sorted(r for _, r in pris)


@pytest.mark.parametrize("kind", ["marketplace", "growth"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_sharded_engine_decides_as_one_ruleset_and_as_the_rules_themselves(kind, folder, data):
    whole, sharded = policies(kind, folder)
    order = data.draw(threshold_orders(whole.spec))
    expected = direct(whole, order)
    got = sharded.decide(order, as_of=AS_OF)  # decide also checks its explanation against the engine's matches
    assert ((got.rule_id,) if got.rule_id else ()) + got.also_matched == expected
    assert got.to_dict() == whole.decide(order, as_of=AS_OF).to_dict()  # action, message, conditions, why_not

