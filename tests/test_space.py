"""The fact space: axes cut at every threshold, representatives inside their cells, canonical cells that keep
every rule's truth, and the engine agreeing with the condition tables."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from conftest import load_policy
from engine.model import KeyedParameter, ParamRef
from engine.operators import check
from engine.space import NOT_GIVEN, FactSpace

POLICY_NAMES = ["default", "legacy", "what_if", "ops", "gap", "unreachable", "overlap_unique", "overlap_first",
                "defaulted", "empty_bin", "adjacent_thresholds"]


# Parameters moved off the bundled values (onto tenths), so the axes are cut elsewhere.
WHAT_IF = {"seller_reply_hours": 60.5, "low_rating_percent": 95, "refund_days": {"card": 21, "paypal": 45}}


def policy(name: str) -> engine.Policy:
    """conftest.load_policy's names, and 'what_if': the default with this file's WHAT_IF parameters."""
    return load_policy("default", **WHAT_IF) if name == "what_if" else load_policy(name)


@functools.cache
def space(name: str) -> FactSpace:
    return FactSpace.of(policy(name).spec)


def all_cells(name: str) -> np.ndarray:
    return np.arange(space(name).n_cells, dtype=np.int64)


def rule_constants(spec, fact: str) -> set[float]:
    """Every number a rule compares `fact` with, parameters resolved (every key of a keyed one, its default)."""
    out: set[float] = set()
    for rule in spec.rules:
        for cond in rule.conditions:
            if cond.fact != fact or cond.op == "given":
                continue
            for item in cond.value if isinstance(cond.value, tuple) else (cond.value,):
                if isinstance(item, ParamRef):
                    param = spec.parameters[item.name]
                    if isinstance(param, KeyedParameter):
                        out |= {float(v) for v in param.values.values()}
                        if param.default is not None:
                            out.add(float(param.default))
                    else:
                        out.add(float(param))
                else:
                    out.add(float(item))
    return out


def value_arrays(sp: FactSpace, facts_list: list[dict]) -> list[np.ndarray]:
    """Per axis, the batch encoding of each facts dict: enum codes (NOT_GIVEN) or floats (NaN)."""
    out = []
    for axis in sp.axes:
        if axis.kind == "enum":
            out.append(np.array([NOT_GIVEN if f.get(axis.fact) is None else axis.values.index(f[axis.fact])
                                 for f in facts_list], dtype=np.int64))
        else:
            out.append(np.array([np.nan if f.get(axis.fact) is None else float(f[axis.fact]) for f in facts_list],
                                dtype=np.float64))
    return out


def cell_of(sp: FactSpace, facts_list: list[dict]) -> np.ndarray:
    return sp.cell_ids([axis.bins_of(v) for axis, v in zip(sp.axes, value_arrays(sp, facts_list), strict=True)])


def python_matches(spec, facts: dict) -> tuple[str, ...]:
    """The rules whose every condition holds, in firing order, by the Python condition checker."""
    return tuple(r.id for r in spec.ranked_rules() if all(check(spec, c, facts).passed for c in r.conditions))


# --- axes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", POLICY_NAMES)
def test_axes_cut_every_threshold_of_the_rules(name):
    spec = policy(name).spec
    sp = space(name)
    read = {c.fact for r in spec.rules for c in r.conditions}
    assert {a.fact for a in sp.axes} >= read
    for axis in sp.axes:
        fact = spec.facts[axis.fact]
        assert axis.optional == fact.optional
        if axis.kind == "enum":
            assert axis.values == fact.values
            assert axis.size == len(fact.values) + fact.optional
        else:
            assert list(axis.points) == sorted(set(axis.points))
            assert set(axis.points) == rule_constants(spec, axis.fact)
            assert axis.size == 2 * len(axis.points) + 1 + fact.optional
    assert sp.n_cells == math.prod(a.size for a in sp.axes)


def test_bundled_policy_axes():
    sp = space("default")
    axes = {a.fact: a for a in sp.axes}
    assert axes["hours_since_contact"].points == (48.0,)
    assert axes["hours_since_contact"].optional
    assert not axes["seller_reply"].optional  # it has a default
    assert not axes["status"].optional  # required
    refund = policy("default").spec.parameters["refund_days"]
    assert set(axes["days_since_refund"].points) == {*map(float, refund.values.values()), float(refund.default)}
    assert space("legacy").axes[[a.fact for a in space("legacy").axes].index("hours_since_contact")].points == (72.0,)
    what_if = {a.fact: a for a in space("what_if").axes}
    assert what_if["hours_since_contact"].points == (60.5,)
    assert 21.0 in what_if["days_since_refund"].points and 45.0 in what_if["days_since_refund"].points


# --- representatives ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", POLICY_NAMES)
def test_each_bins_representative_falls_in_that_bin(name):
    for axis in space(name).axes:
        for b in range(axis.size):
            value = axis.representative(b)
            if b == axis.not_given_bin:
                assert value is None
                probe = np.array([NOT_GIVEN if axis.kind == "enum" else np.nan])
            elif value is None:
                assert axis.kind == "number", f"{axis.fact}: enum bin {b} has no value"
                continue  # an empty interval (e.g. below the minimum)
            else:
                if axis.kind == "number":
                    assert axis.low <= value <= axis.high, f"{axis.fact} bin {b}: {value} outside the range"
                probe = np.array([axis.values.index(value)]) if axis.kind == "enum" else np.array([float(value)])
            assert axis.bins_of(probe).tolist() == [b], f"{axis.fact}: representative {value!r} of bin {b}"


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_cells_representative_facts_fall_in_that_cell(name):
    """All cells at once (vectorized): representative of every bin of every axis -> bins_of -> the same cell."""
    sp = space(name)
    ids = all_cells(name)
    nonempty = sp.nonempty(ids)
    ids = ids[nonempty]
    values = []
    for axis, b in zip(sp.axes, sp.bins(ids), strict=True):
        if axis.kind == "enum":
            table = np.array([NOT_GIVEN if i == axis.not_given_bin else i for i in range(axis.size)], dtype=np.int64)
        else:
            reps = [axis.representative(i) for i in range(axis.size)]
            table = np.array([np.nan if v is None else v for v in reps], dtype=np.float64)
        values.append(table[b])
    again = sp.cell_ids([axis.bins_of(v) for axis, v in zip(sp.axes, values, strict=True)])
    assert np.array_equal(again, ids)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_facts_of_sample_of_cells(name):
    """facts_of(cell) is None exactly for empty cells; otherwise its facts map back to the cell, and they make
    a valid order (the engine decides it without an input error)."""
    sp = space(name)
    rng = np.random.default_rng(7)
    ids = rng.choice(sp.n_cells, size=min(300, sp.n_cells), replace=False)
    nonempty = sp.nonempty(ids)
    facts_list, kept = [], []
    for cell, ok in zip(ids.tolist(), nonempty.tolist(), strict=True):
        facts = sp.facts_of(cell)
        assert (facts is not None) == ok, f"cell {cell}: facts_of {facts} but nonempty {ok}"
        if facts is not None:
            facts_list.append(facts)
            kept.append(cell)
    assert kept
    assert cell_of(sp, facts_list).tolist() == kept
    p = policy(name)
    for facts in facts_list[:60]:
        decision = p.decide(facts, as_of="2026-11-26T12:00:00Z")
        assert decision.facts.keys() >= {k for k in facts if k != "order_id"}


def test_empty_cells_exist_only_where_a_threshold_meets_a_bound():
    # rating 0..100 with a threshold at 0: the interval below 0 holds nothing.
    sp = space("ops")
    rating = next(a for a in sp.axes if a.fact == "rating")
    assert rating.representative(0) is None
    assert rating.representative(1) == 0.0
    ids = all_cells("ops")
    assert 0 < (~sp.nonempty(ids)).sum() < len(ids)
    assert space("default").nonempty(all_cells("default")).all()


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_bins_and_cell_ids_round_trip(name):
    sp = space(name)
    ids = np.random.default_rng(3).integers(0, sp.n_cells, size=500)
    bins = sp.bins(ids)
    for axis, b in zip(sp.axes, bins, strict=True):
        assert ((0 <= b) & (b < axis.size)).all()
    assert np.array_equal(sp.cell_ids(bins), ids)


# --- a rule's truth is constant inside a cell (random facts near the thresholds) --------------------------

def near_values(axis) -> list[float]:
    out = {0.0, 1.0, 1e6}
    for p in axis.points:
        out |= {p, math.nextafter(p, -math.inf), math.nextafter(p, math.inf), p - 0.5, p + 0.5, p - 3, p + 3}
    return sorted(v for v in out if axis.low <= v <= axis.high)


@st.composite
def facts_near_thresholds(draw, name: str) -> dict:
    facts = {}
    for axis in space(name).axes:
        if axis.optional and draw(st.integers(0, 4)) == 0:
            continue
        if axis.kind == "enum":
            facts[axis.fact] = draw(st.sampled_from(axis.values))
        else:
            lo = axis.low if math.isfinite(axis.low) else -1e7
            hi = axis.high if math.isfinite(axis.high) else 1e7
            facts[axis.fact] = draw(st.sampled_from(near_values(axis))
                                    | st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    return facts


@pytest.mark.parametrize("name", ["default", "legacy", "what_if", "ops", "overlap_unique", "gap"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cell_matches_equal_the_rules_on_the_facts_themselves(name, data):
    """For any facts: the rules FactSpace.matches says hold in their cell are exactly the rules whose
    conditions hold on the facts (so every rule is constant inside a cell, at and around each threshold)."""
    sp = space(name)
    spec = policy(name).spec
    facts = data.draw(facts_near_thresholds(name))
    cell = cell_of(sp, [facts])
    in_cell = sp.matches(cell)
    got = tuple(r.id for r in spec.ranked_rules() if in_cell[r.id][0])
    assert got == python_matches(spec, facts), (facts, sp.describe(int(cell[0])))


# --- canonical cells --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", POLICY_NAMES)
def test_canonical_cells_match_the_same_rules_over_all_cells(name):
    sp = space(name)
    ids = all_cells(name)
    ids = ids[sp.nonempty(ids)]
    canonical = sp.canonical(ids)
    before, after = sp.matches(ids), sp.matches(canonical)
    for rule_id in before:
        differ = np.flatnonzero(before[rule_id] != after[rule_id])
        assert not len(differ), (f"rule {rule_id}: {len(differ)} cells change, e.g. {sp.describe(int(ids[differ[0]]))}"
                                 f" -> {sp.describe(int(canonical[differ[0]]))}")
    twice = sp.matches(sp.canonical(canonical))  # canonicalizing again must not change any rule's truth either
    for rule_id in before:
        assert np.array_equal(before[rule_id], twice[rule_id]), rule_id


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_canonical_cells_are_not_empty(name):
    """The engine is asked about the canonical cell's representative: it must have one."""
    sp = space(name)
    ids = all_cells(name)
    ids = ids[sp.nonempty(ids)]
    canonical = np.unique(sp.canonical(ids))
    empty = canonical[~sp.nonempty(canonical)]
    assert not len(empty), f"{len(empty)} canonical cells hold no value, e.g. {sp.describe(int(empty[0]))}"


def test_canonical_cells_are_few():
    sp = space("default")
    ids = all_cells("default")
    distinct = len(np.unique(sp.canonical(ids)))
    assert distinct < len(ids) / 100  # the point of canonical cells: a few hundred engine calls, not 245 k


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_engine_gives_the_same_rules_for_a_cell_and_its_canonical_cell(name):
    p = policy(name)
    sp = space(name)
    rng = np.random.default_rng(11)
    ids = rng.choice(sp.n_cells, size=min(300, sp.n_cells), replace=False)
    ids = ids[sp.nonempty(ids)]
    canonical = sp.canonical(ids)
    tables = sp.matches(ids)
    ranked = [r.id for r in p.spec.ranked_rules()]
    for k, (cell, canon) in enumerate(zip(ids.tolist(), canonical.tolist(), strict=True)):
        facts = sp.facts_of(cell)
        canon_facts = sp.facts_of(canon)
        assert canon_facts is not None, f"canonical cell {sp.describe(canon)} of {sp.describe(cell)} is empty"
        here = p.compiled.match(facts)
        assert here == p.compiled.match(canon_facts), (facts, canon_facts)
        assert here == tuple(r for r in ranked if tables[r][k]), f"engine and tables disagree on {facts}"
        assert here == python_matches(p.spec, facts)


def _wide_policy(path) -> engine.Policy:
    """16 optional enum facts of 17 values each, every value read by a rule: 18^16 (about 1.2e20) cells, past
    the 2^63 an int64 cell id holds."""
    values = "{" + ", ".join(f"v{j}: {{label: V{j}}}" for j in range(17)) + "}"
    facts = "".join(f"  e{i}: {{type: enum, values: {values}}}\n" for i in range(16))
    rules = "".join(f"  - {{id: r{i}_{j}, priority: {1000 - 17 * i - j}, when: {{e{i}: v{j}}}, "
                    f"then: {{action: a{j}, message: 'e{i} is v{j}'}}, source: test, examples: []}}\n"
                    for i in range(16) for j in range(17))
    path.write_text(f'policy: wide\nversion: "1"\nfacts:\n  order_id: {{type: string, required: true}}\n{facts}'
                    f"actions:\n{''.join(f'  a{j}: action {j}.{chr(10)}' for j in range(17))}rules:\n{rules}",
                    encoding="utf-8")
    return engine.load(path)


def test_a_space_past_2_63_cells_decides_every_row_as_the_rows_path(tmp_path):
    """Issue 13: cell ids were int64 and wrapped past 2^63 cells, so rows got another cell's decision."""
    policy = _wide_policy(tmp_path / "wide.yaml")
    space = FactSpace.of(policy.spec)
    assert space.n_cells == 18 ** 16 > 2 ** 63
    rng = np.random.default_rng(5)
    picks = rng.integers(0, 18, size=(3000, 16))  # 17: not given
    orders = pd.DataFrame({f"e{i}": [f"v{k}" if k < 17 else None for k in picks[:, i]] for i in range(16)})
    orders.insert(0, "order_id", [f"o{n}" for n in range(len(orders))])
    cells = policy.evaluate(orders, as_of="2026-01-01T00:00:00+00:00", method="cells")
    rows = policy.evaluate(orders, as_of="2026-01-01T00:00:00+00:00", method="rows")
    assert cells["rule_id"].notna().sum() > 2900
    pd.testing.assert_frame_equal(cells, rows)


NUMBERS = st.floats(-1e9, 1e9, allow_nan=False) | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-300])


@settings(max_examples=150, deadline=None)
@given(points=st.lists(NUMBERS.filter(math.isfinite), max_size=40, unique=True),
       values=st.lists(NUMBERS | st.integers(0, 39), min_size=1, max_size=60), optional=st.booleans(),
       many=st.booleans())
def test_bins_of_agrees_with_a_bisect_per_value(points, values, optional, many):
    """Both ways Axis.bins_of counts (comparisons for a few points, binary search for many): point k is bin 2k + 1,
    the interval below it 2k, and a missing value the 'not given' bin (or past the last point)."""
    import bisect

    cuts = sorted({0.0 if p == 0 else p for p in points} | ({float(k) for k in range(-10, 10)} if many else set()))
    axis = engine.space.Axis("x", "number", points=tuple(cuts), optional=optional)
    # an integer draws one of the points itself: the exact values matter most
    raw = [cuts[v % len(cuts)] if isinstance(v, int) and cuts else float(v) for v in values]
    expected = []
    for value in raw:
        if math.isnan(value):
            expected.append(axis.not_given_bin if optional else 2 * len(cuts))
            continue
        pos = bisect.bisect_left(cuts, value)
        expected.append(2 * pos + (pos < len(cuts) and cuts[pos] == value))
    assert axis.bins_of(np.array(raw, dtype=np.float64)).tolist() == expected
