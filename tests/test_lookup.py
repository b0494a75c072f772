"""One decision from the cell table (engine.lookup): the same Decision as the per-order durable_rules path."""

from __future__ import annotations

import functools
import json
import math
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from conftest import EXAMPLES_AS_OF as AS_OF
from engine import lookup
from engine.decision import Decision
from engine.errors import UsageError
from engine.matching import RuleBits
from engine.space import FactSpace
from engine.synthetic import growth_yaml, marketplace_yaml


@functools.cache
def policy(name: str) -> engine.Policy:
    """The bundled policy, a growth level and a small marketplace policy (3 countries: 80 rules)."""
    if name == "bundled":
        return engine.load()
    text = growth_yaml(3) if name == "growth3" else marketplace_yaml(seed=0, countries=3)
    path = Path(tempfile.mkdtemp(prefix="test-lookup-")) / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return engine.load(path)


POLICIES = ("bundled", "growth3", "marketplace3")


def axis_values(axis) -> st.SearchStrategy:
    """Values of one fact: every code, or around every threshold (the point, its neighbours, a step off) and any
    number in range; 'not given' when the fact may be left out."""
    if axis.kind == "enum":
        values = st.sampled_from(axis.values)
    else:
        near = {x for p in axis.points for x in (p, math.nextafter(p, -math.inf), math.nextafter(p, math.inf),
                                                 p - 0.5, p + 0.5)}
        near = sorted(x for x in near | {axis.low if math.isfinite(axis.low) else 0.0} if axis.low <= x <= axis.high)
        high = axis.high if math.isfinite(axis.high) else 1e4
        values = st.sampled_from(near) | st.floats(max(axis.low, 0.0), high)
    return values | st.none() if axis.optional else values


@st.composite
def orders(draw, name: str) -> dict:
    spec = policy(name).spec
    order = {"order_id": f"L{draw(st.integers(0, 10**6))}"}
    for axis in FactSpace.of(spec).axes:
        value = draw(axis_values(axis))
        if value is not None:
            order[axis.fact] = value
    for fact_name, fact in spec.facts.items():  # required facts no rule reads
        if fact.required and fact_name not in order:
            order[fact_name] = fact.values[0] if fact.type == "enum" else 0.0
    return order


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", POLICIES)
def test_cells_and_direct_agree_on_every_order(name):
    p = policy(name)

    @PROPERTY
    @given(orders(name))
    def check(order):
        fast = p.decide(order, as_of=AS_OF)
        assert "_conditions" not in fast.__dict__  # pending until read
        reference = p.decide(order, as_of=AS_OF, engine="direct")
        assert (fast.action, fast.rule_id, fast.message) == (reference.action, reference.rule_id, reference.message)
        assert (fast.also_matched, fast.error, fast.warnings) == (reference.also_matched, reference.error,
                                                                  reference.warnings)
        assert fast.to_json() == reference.to_json()  # the explanation, built now, and every other field
        assert fast.to_json() == json.dumps(reference.to_dict(), indent=2, ensure_ascii=False, default=str)
        assert fast == reference

    check()


def test_a_dense_table_answers_every_cell_as_one_cell_at_a_time():
    cells = lookup.CellLookup(policy("bundled").compiled)
    index, answers = cells.dense_table()
    space = cells.cells.space
    assert len(answers) == len(set(space.canonical(np.flatnonzero(space.nonempty(np.arange(space.n_cells))))))
    ids = np.random.default_rng(3).integers(0, space.n_cells, 1500)
    for cell in ids[space.nonempty(ids)].tolist():
        bins = tuple(int(b[0]) for b in space.bins(np.array([cell])))
        assert answers[index[cell]] == cells._answer(bins), space.describe(cell)
    assert (index[~space.nonempty(np.arange(space.n_cells))] == -1).all()


def test_after_enough_new_cells_the_dense_table_takes_over(monkeypatch):
    monkeypatch.setattr(lookup, "DENSE_AFTER", 5)
    p = policy("bundled")
    cells = lookup.CellLookup(p.compiled)
    monkeypatch.setitem(lookup._lookups, p.compiled.content_key, cells)
    rng = np.random.default_rng(0)
    statuses = p.spec.facts["status"].values
    seen = []
    for i in range(12):
        order = {"order_id": f"D{i}", "status": statuses[i % len(statuses)], "hours_since_contact": float(i * 13),
                 "seller_reply": "no_reply", "hours_since_payment": float(rng.integers(0, 100))}
        seen.append(p.decide(order, as_of=AS_OF))
        assert seen[-1] == p.decide(order, as_of=AS_OF, engine="direct")
    assert cells.table is not None and cells.misses >= 5


@pytest.mark.parametrize("name", POLICIES)
def test_one_cells_canonical_cell_is_factspaces(name):
    space = FactSpace.of(policy(name).spec)
    bits = RuleBits(space)
    ids = np.random.default_rng(7).integers(0, space.n_cells, 400)
    expected = space.canonical(ids)
    for cell, want in zip(ids.tolist(), expected.tolist(), strict=True):
        got = bits.canonical([int(b[0]) for b in space.bins(np.array([cell]))])
        assert space.cell_ids([np.array([b]) for b in got])[0] == want, space.describe(cell)


def test_the_same_instant_at_another_offset_keeps_its_own_as_of_text():
    order = {"order_id": "Z1", "status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 10}
    p = policy("bundled")
    first = p.decide(order, as_of="2026-03-01T12:00:00+00:00")
    second = p.decide(order, as_of="2026-03-01T13:00:00+01:00")  # equal datetimes, printed differently
    assert (first.as_of, second.as_of) == ("2026-03-01T12:00:00+00:00", "2026-03-01T13:00:00+01:00")
    assert second == p.decide(order, as_of="2026-03-01T13:00:00+01:00", engine="direct")


def test_a_pending_decision_pickles_and_prints_with_its_explanation():
    p = policy("bundled")
    order = {"order_id": "P1", "status": "shipped", "seller_reply": "refused", "warehouse": "north"}
    fast = p.decide(order, as_of=AS_OF)
    reference = p.decide(order, as_of=AS_OF, engine="direct")
    assert pickle.loads(pickle.dumps(fast)) == reference
    assert repr(p.decide(order, as_of=AS_OF)) == repr(reference)
    assert fast.explain() == reference.explain()
    assert fast.warnings == reference.warnings and fast.warnings  # the unknown field is warned either way
    assert json.loads(p.decide(order, as_of=AS_OF).to_json())["why_not"] == json.loads(reference.to_json())["why_not"]


def test_explicit_explanation_fields_are_kept():
    made = Decision("o", "a", "r", "m", conditions=(), why_not=())
    assert made.conditions == () and made.why_not == () and made == Decision("o", "a", "r", "m")


def test_an_unknown_engine_is_a_usage_error():
    with pytest.raises(UsageError, match="engine must be 'cells' or 'direct', got 'rete'"):
        policy("bundled").decide({"order_id": "U", "status": "shipped"}, as_of=AS_OF, engine="rete")


def test_a_policy_with_other_parameters_gets_its_own_answers():
    base = policy("bundled")
    longer = base.with_parameters(seller_reply_hours=60)
    order = {"order_id": "W1", "status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 50}
    assert base.decide(order, as_of=AS_OF).action == "open_dispute"
    assert longer.decide(order, as_of=AS_OF).action == "wait_for_seller"
    assert base.decide(order, as_of=AS_OF).action == "open_dispute"  # not the other's memo
    assert lookup.cell_lookup(base.compiled) is not lookup.cell_lookup(longer.compiled)
