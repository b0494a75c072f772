"""Regions (engine.regions) against enumeration: they partition the non-empty cells, each with the rules that
match in every one of its cells; verify's findings from regions equal the findings of enumerating every cell
(today's verify, kept here as the reference) on the fixtures and on random small policies; every finding's
example reproduces through decide(); durable_rules disagreeing with the condition tables is caught."""

from __future__ import annotations

import functools
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

import engine
from engine import regions
from engine import verify as verify_module
from engine.batch import cell_decisions
from engine.compare import _joint_axes
from engine.errors import EngineError, RuleError
from engine.loader import DEFAULT_POLICY, RULES_DIR, load_spec
from engine.model import PolicySpec
from engine.space import NOT_GIVEN, Axis, FactSpace
from engine.synthetic import growth_yaml, marketplace_yaml

HERE = Path(__file__).parent
POLICIES = HERE / "fixtures" / "policies"
AS_OF = "2026-11-26T12:00:00Z"
FIXTURES = sorted(p.stem for p in POLICIES.glob("*.yaml"))


@functools.cache
def policy(name: str) -> engine.Policy:
    if name == "default":
        return engine.load()
    if name == "legacy":
        return engine.load(RULES_DIR / "variants" / "legacy-72h.yaml")
    if name == "what_if":
        return engine.load().with_parameters(seller_reply_hours=60.5, refund_days={"card": 21, "paypal": 45})
    return engine.load(POLICIES / f"{name}.yaml")


@functools.cache
def generated_spec(kind: str, size: int) -> PolicySpec:
    text = growth_yaml(size) if kind == "growth" else marketplace_yaml(seed=0, countries=size)
    return load_spec(_write_text(text, f"{kind}{size}"))


def _write_text(text: str, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="test-regions-")) / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def enumerated_matches(space: FactSpace) -> tuple[np.ndarray, np.ndarray]:
    """(every non-empty cell id, matched-rule matrix over them, ranked rule order): by the condition tables."""
    ids = np.arange(space.n_cells, dtype=np.int64)
    ids = ids[space.nonempty(ids)]
    matches = space.matches(ids)
    return ids, np.stack([matches[r.id] for r in space.spec.ranked_rules()], axis=1)


def assert_partition(space: FactSpace, found: regions.Regions) -> None:
    """Every non-empty cell lies in exactly one region, and the region's outcome is the cell's matched rules."""
    ids, matched = enumerated_matches(space)
    seen = np.zeros(space.n_cells, dtype=np.int64)
    for i in range(len(found)):
        cells = found.cells_of(i)
        assert len(cells) == found.weights[i]
        seen[cells] += 1
        rows = matched[np.searchsorted(ids, cells)]
        assert (rows == rows[0]).all(), f"region {found.describe(i)} holds cells with different matched rules"
        assert tuple(np.flatnonzero(rows[0]).tolist()) == found.outcomes[found.outcome[i]], found.describe(i)
    assert (seen[ids] == 1).all() and seen.sum() == len(ids)
    assert found.cells == len(ids)
    reps = found.representatives()
    assert np.isin(found.cell_ids(reps), ids).all()  # every representative is a non-empty cell of its region


# --- regions partition the space ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "legacy", "what_if", *FIXTURES])
def test_regions_partition_the_nonempty_cells(name):
    space = FactSpace.of(policy(name).spec)
    found = regions.of_space(space)
    assert_partition(space, found)
    assert len(found) < max(2, found.cells)


@pytest.mark.parametrize("level", [0, 1])
def test_regions_partition_growth_levels(level):
    space = FactSpace.of(generated_spec("growth", level))
    found = regions.of_space(space)
    assert_partition(space, found)
    assert len(found) < found.cells / 100


@pytest.mark.parametrize("name", ["default", "ops", "overlap_unique", "gap"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_regions_partition_in_any_axis_order_and_block_size(name, data):
    """The order only changes how many regions; a keyed parameter's condition read before its key's axis is
    pending there (kept apart by its rows); blocks of one box exercise the depth-first splitting."""
    space = FactSpace.of(policy(name).spec)
    order = tuple(data.draw(st.permutations(range(len(space.axes)))))
    block = data.draw(st.sampled_from([1, 2, 7, 4096]))
    assert_partition(space, regions.build(space.axes, regions.space_rules(space), order=order, block=block))


def region_of(found: regions.Regions, bins: np.ndarray) -> np.ndarray:
    """The region holding each row of bins (exactly one, asserted)."""
    inside = np.ones((len(bins), len(found)), dtype=bool)
    for a, axis in enumerate(found.axes):
        member = np.zeros((len(found.class_bins), axis.size), dtype=bool)
        for handle in np.unique(found.handles[:, a]):
            member[handle, found.class_bins[handle]] = True
        inside &= member[found.handles[:, a]][:, bins[:, a]].T
    assert (inside.sum(axis=1) == 1).all()
    return inside.argmax(axis=1)


@pytest.mark.parametrize("kind,size", [("growth", 5), ("growth", 8), ("marketplace", 1), ("marketplace", 3)])
def test_regions_of_large_spaces_on_random_cells(kind, size):
    """Too many cells to enumerate in a test: the weights sum to the non-empty cells (a product over the axes:
    emptiness is per bin), and random cells lie in one region each, with the rules the tables say."""
    space = FactSpace.of(generated_spec(kind, size))
    found = regions.of_space(space)
    assert found.cells == math.prod(int(regions.nonempty_bins(axis).sum()) for axis in space.axes)
    rng = np.random.default_rng(size)
    ids = rng.integers(0, space.n_cells, size=3000)
    ids = ids[space.nonempty(ids)]
    bins = np.stack(space.bins(ids), axis=1)
    where = region_of(found, bins)
    matches = space.matches(ids)
    ranked = [r.id for r in space.spec.ranked_rules()]
    for k, i in enumerate(where):
        assert tuple(r for r in ranked if matches[r][k]) == tuple(ranked[r] for r in found.outcomes[found.outcome[i]])


def test_marketplace_verify_on_regions():
    """Too many cells to enumerate (2 countries: 1.9e8): every region asked of durable_rules, every cell won
    once, and the examples of a sample of overlaps decide as reported."""
    p = engine.load(_write_text(marketplace_yaml(seed=0, countries=2), "marketplace2"))
    report = p.verify()
    space = FactSpace.of(p.spec)
    assert report.cells == math.prod(int(regions.nonempty_bins(axis).sum()) for axis in space.axes) > 10**8
    assert report.ok and sum(report.wins.values()) == report.cells
    assert report.engine_check == "every region" and 0 < report.engine_calls <= report.canonical_cells
    rng = np.random.default_rng(2)
    for k in rng.choice(len(report.overlaps), size=40, replace=False):
        finding = report.overlaps[k]
        d = p.decide(finding.example, as_of=AS_OF)
        assert (d.rule_id, *d.also_matched) == finding.rules and d.rule_id == finding.winner


# --- verify from regions equals verify by enumeration --------------------------------------------------------

def enumerated_report(p: engine.Policy) -> dict:
    """Today's verify, kept as the reference: every non-empty cell mapped to its canonical cell, durable_rules
    asked once per canonical cell, the answers classified cell by cell."""
    spec = p.spec
    space = FactSpace.of(spec)
    ids = np.arange(space.n_cells, dtype=np.int64)
    ids = ids[space.nonempty(ids)]
    canonical, inverse = np.unique(space.canonical(ids), return_inverse=True)
    answers = [p.compiled.match(space.facts_of(int(c))) for c in canonical]
    count = Counter(inverse.reshape(-1).tolist())
    wins = {r.id: 0 for r in spec.ranked_rules()}
    overlaps: dict[tuple[str, ...], list] = {}
    gap_cells = set()
    for k, m in enumerate(answers):
        if not m:
            gap_cells |= set(ids[inverse.reshape(-1) == k].tolist())
            continue
        winner = m[0] if spec.hit_policy == "first" or len(m) == 1 else None
        if winner:
            wins[winner] += count[k]
        if len(m) > 1:
            overlaps.setdefault(m, [winner, 0])[1] += count[k]
    return {"cells": len(ids), "wins": wins, "unreachable": [r for r, n in wins.items() if n == 0],
            "overlaps": {m: tuple(v) for m, v in overlaps.items()}, "gap_cells": gap_cells}


def cell_of_order(space: FactSpace, order: dict) -> int:
    bins = []
    for axis in space.axes:
        value = order.get(axis.fact)
        if axis.kind == "enum":
            bins.append(axis.bins_of(np.array([NOT_GIVEN if value is None else axis.values.index(value)])))
        else:
            bins.append(axis.bins_of(np.array([np.nan if value is None else float(value)])))
    return int(space.cell_ids(bins)[0])


def assert_report_equals_enumeration(p: engine.Policy, report: verify_module.VerifyReport) -> None:
    expected = enumerated_report(p)
    space = FactSpace.of(p.spec)
    assert report.cells == expected["cells"]
    assert report.wins == expected["wins"]
    assert report.unreachable == expected["unreachable"]
    assert {o.rules: (o.winner, o.cells) for o in report.overlaps} == expected["overlaps"]
    assert [o.cells for o in report.overlaps] == sorted((o.cells for o in report.overlaps), reverse=True)
    assert sum(g.cells for g in report.gaps) == len(expected["gap_cells"])
    for finding in report.gaps + report.overlaps:  # each example lies in the cells it stands for
        assert finding.cells > 0
        cell = cell_of_order(space, finding.example)
        if finding.kind == "gap":
            assert cell in expected["gap_cells"]
        d = p.decide(finding.example, as_of=AS_OF)
        assert (*((d.rule_id,) if d.rule_id else ()), *d.also_matched) == finding.rules
        if finding.winner is None:
            assert d.action is None and d.error
        else:
            assert d.rule_id == finding.winner
    assert report.ok == (not expected["gap_cells"] and not expected["unreachable"]
                         and not (p.spec.hit_policy == "unique" and expected["overlaps"]))


@pytest.mark.parametrize("name", ["default", "legacy", "what_if", *FIXTURES])
def test_verify_equals_enumeration(name):
    p = policy(name)
    report = p.verify()
    assert_report_equals_enumeration(p, report)
    assert report.canonical_cells == len(regions.of_space(FactSpace.of(p.spec)))
    assert report.engine_check == "every region"


def test_gap_regions_cover_exactly_the_gap_cells():
    """A policy with holes at several places: the gap findings' regions are the gap cells, no more, no less."""
    dropped = {"reply_window_unknown", "contact_seller_to_cancel", "refund_in_progress"}
    p = engine.load(_write_text(yaml.safe_dump(_drop_rules(DEFAULT_POLICY, dropped)), "holed"))
    report = p.verify()
    assert_report_equals_enumeration(p, report)
    assert len(report.gaps) > 1
    space = FactSpace.of(p.spec)
    found = regions.of_space(space)
    gap_regions = [i for i in range(len(found)) if not found.outcomes[found.outcome[i]]]
    assert sorted(int(found.weights[i]) for i in gap_regions) == sorted(g.cells for g in report.gaps)
    assert sorted(found.describe(i).items() for i in gap_regions) == sorted(g.region.items() for g in report.gaps)


def _drop_rules(path: Path, dropped: set[str]) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["id"] not in dropped]
    for rule in data["rules"]:  # examples that a dropped rule decided would now fail the self-test
        rule["examples"] = []
    data.pop("examples", None)
    return data


# --- random small policies ----------------------------------------------------------------------------------

ENUMS = {"s": ["a", "b", "c"], "r": ["x", "y"]}
CONSTANTS = [0, 2, 5, 7.5, 10, 12]


@st.composite
def small_policies(draw) -> dict:
    """A policy over two enums and two numbers (one bounded), a scalar and a keyed parameter, 1-6 rules of
    1-3 facts with random operators; priorities tie often (file order decides). The schema varies too (enum
    values, defaults, ranges), so that two of them make a diff with refused cells on either side."""
    r_values = draw(st.sampled_from([ENUMS["r"], [*ENUMS["r"], "z"]]))
    r_mode = draw(st.sampled_from([{"default": "x"}, {}, {"required": True}]))
    d_mode = draw(st.sampled_from([{}, {"default": 3}]))
    facts = {"order_id": {"type": "string", "required": True},
             "s": {"type": "enum", "required": True, "values": {v: {"label": v.upper()} for v in ENUMS["s"]}},
             "r": {"type": "enum", **r_mode, "values": {v: {"label": v.upper()} for v in r_values}},
             "h": {"type": "number", "min": 0},
             "d": {"type": "number", "min": 0, "max": draw(st.sampled_from([10, 8])), **d_mode}}
    keyed = {"by": "r", "values": {v: draw(st.sampled_from([2, 5, 9])) for v in r_values}}
    if draw(st.booleans()):
        keyed["default"] = draw(st.sampled_from([3, 6]))
    params = {"p": draw(st.sampled_from([2, 5, 7.5])), "k": keyed}
    rules = []
    for n in range(draw(st.integers(1, 6))):
        when = {}
        for fact in draw(st.lists(st.sampled_from(["s", "r", "h", "d"]), min_size=1, max_size=3, unique=True)):
            when[fact] = draw(_condition(fact, optional=fact == "h" or (fact == "r" and not r_mode)
                                         or (fact == "d" and not d_mode)))
        rules.append({"id": f"rule{n}", "priority": draw(st.integers(0, 2)), "when": when,
                      "then": {"action": draw(st.sampled_from(["go", "stop"]))}, "source": "test", "examples": []})
    return {"policy": "random", "version": "1", "hit_policy": draw(st.sampled_from(["first", "unique"])),
            "facts": facts, "parameters": params, "actions": {"go": "Go.", "stop": "Stop."}, "rules": rules}


def _condition(fact: str, optional: bool) -> st.SearchStrategy:
    if fact in ENUMS:
        values = st.sampled_from(ENUMS[fact])  # 'z', when r has it, is only read through the keyed parameter
        ops = [values, st.fixed_dictionaries({"ne": values}),
               st.fixed_dictionaries({"in": st.lists(values, min_size=1, max_size=2, unique=True)}),
               st.fixed_dictionaries({"not_in": st.lists(values, min_size=1, max_size=2, unique=True)})]
    else:
        operand = st.sampled_from(CONSTANTS) | st.sampled_from(["$p", "$k"])
        ops = [st.dictionaries(st.sampled_from(["lt", "lte", "gt", "gte", "eq", "ne"]), operand, min_size=1,
                               max_size=2),
               st.fixed_dictionaries({"between": st.tuples(st.sampled_from(CONSTANTS[:3]),
                                                           st.sampled_from(CONSTANTS[2:])).map(list)})]
    if optional:
        ops.append(st.fixed_dictionaries({"given": st.booleans()}))
    return st.one_of(ops)


def load_doc(doc: dict, folder: Path, name: str = "policy") -> engine.Policy:
    """The policy loaded; a random one past durable_rules' limit on and/or groups (a keyed parameter over three
    keys, used twice in one rule) is not a case for these tests: hypothesis draws another."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    try:
        return engine.load(path)
    except RuleError as exc:
        if "(error 113)" not in str(exc):
            raise
        reject()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=small_policies())
def test_random_policies_regions_and_verify_equal_enumeration(doc, tmp_path_factory):
    p = load_doc(doc, tmp_path_factory.mktemp("random"))
    space = FactSpace.of(p.spec)
    assert_partition(space, regions.of_space(space))
    assert_report_equals_enumeration(p, p.verify())


# --- the diff from regions equals the diff of every joint cell, each decided on its own -------------------------

def decided(p: engine.Policy, order: dict) -> tuple[str | None, str | None]:
    """(action, rule) of an order, (None, None) when refused or undecided: what the diff compares."""
    try:
        d = p.decide(order, as_of=AS_OF)
    except engine.OrderError:
        return None, None
    return d.action, d.rule_id


def enumerated_diff(old: engine.Policy, new: engine.Policy) -> tuple[int, Counter]:
    """(non-empty joint cells, cells per transition): every joint cell's example order decided by both."""
    joint = FactSpace(old.spec, _joint_axes(FactSpace.of(old.spec), FactSpace.of(new.spec)))
    ids = np.arange(joint.n_cells, dtype=np.int64)
    ids = ids[joint.nonempty(ids)]
    moves: Counter = Counter()
    for cell in ids.tolist():
        order = joint.example(cell)
        before, after = decided(old, order), decided(new, order)
        if before != after:
            moves[(*before, *after)] += 1
    return len(ids), moves


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_doc=small_policies(), new_doc=small_policies())
def test_random_policy_diffs_equal_enumeration(old_doc, new_doc, tmp_path_factory):
    """Two random policies (their schemas differ too: values, defaults, ranges): the diff from regions counts
    the same cells per transition as deciding every joint cell's example order with both, and each
    transition's example reproduces it."""
    folder = tmp_path_factory.mktemp("pair")
    old, new = load_doc(old_doc, folder, "old"), load_doc(new_doc, folder, "new")
    result = engine.diff(old, new)
    cells, moves = enumerated_diff(old, new)
    event("some cells change" if moves else "no cell changes")
    assert result.cells == cells
    assert result.changed_cells == sum(moves.values())
    rows = result.to_dict()["transitions"]  # missing action and rule as None
    keys = [(t["old_action"], t["old_rule"], t["new_action"], t["new_rule"]) for t in rows]
    assert dict(zip(keys, (t["cells"] for t in rows), strict=True)) == dict(moves)
    for key, t in zip(keys, rows, strict=True):
        assert (*decided(old, t["example"]), *decided(new, t["example"])) == key


# --- the engine cross-check ---------------------------------------------------------------------------------

def test_sampled_cross_check_past_the_region_limit(monkeypatch):
    """Past MAX_CHECKED_REGIONS durable_rules is asked about SAMPLE_CELLS random cells (not through the cell
    table): the same findings, another check."""
    p = engine.load().with_parameters(seller_reply_hours=50)
    full = p.verify()
    monkeypatch.setattr(verify_module, "MAX_CHECKED_REGIONS", 10)
    monkeypatch.setattr(verify_module, "SAMPLE_CELLS", 300)
    sampled = p.verify()
    assert sampled.engine_calls == 300 and "300 random cells" in sampled.engine_check
    assert (sampled.cells, sampled.wins, sampled.overlaps, sampled.gaps) == (full.cells, full.wins, full.overlaps,
                                                                             full.gaps)


@pytest.mark.parametrize("sampled", [False, True])
def test_engine_disagreeing_with_the_tables_is_caught(monkeypatch, sampled):
    """Flip one rule's condition table where it matters: verify must refuse, naming the cell, in either mode."""
    p = engine.load().with_parameters(seller_reply_hours=47 if sampled else 46)
    space = cell_decisions(p.compiled).space
    reads, table = space._truth[("dispute_in_progress", 0)]
    tampered = dict(space._truth)
    tampered[("dispute_in_progress", 0)] = (reads, ~table)
    monkeypatch.setitem(space.__dict__, "_truth", tampered)
    if sampled:
        monkeypatch.setattr(verify_module, "MAX_CHECKED_REGIONS", 0)
        monkeypatch.setattr(verify_module, "SAMPLE_CELLS", 500)
    with pytest.raises(EngineError, match="engine .*tables"):
        p.verify()


# --- describing a class of bins ------------------------------------------------------------------------------

def test_describe_bins():
    hours = Axis("hours", "number", points=(24.0, 48.0), low=0.0, optional=True)  # [0,24) =24 (24,48) =48 (48,inf) ng
    assert regions.describe_bins(hours, np.arange(6)) == "any"
    assert regions.describe_bins(hours, np.array([0])) == "[0, 24)"
    assert regions.describe_bins(hours, np.array([1])) == "= 24"
    assert regions.describe_bins(hours, np.array([1, 2])) == "[24, 48)"
    assert regions.describe_bins(hours, np.array([0, 3, 4, 5])) == "[0, 24) or [48, inf) or not given"
    assert regions.describe_bins(hours, np.array([2, 3])) == "(24, 48]"
    rating = Axis("rating", "number", points=(0.0, 90.0), low=0.0, high=100.0)  # bin 0 (<0) holds no value
    assert regions.describe_bins(rating, np.array([1, 2])) == "[0, 90)"
    assert regions.describe_bins(rating, np.array([3, 4])) == "[90, 100]"
    assert regions.describe_bins(rating, np.array([1, 2, 3, 4])) == "any"
    status = Axis("status", "enum", values=("open", "closed", "held"))
    assert regions.describe_bins(status, np.array([0, 2])) == "open or held"
    assert regions.describe_bins(status, np.array([1])) == "closed"


# --- regressions --------------------------------------------------------------------------------------------

def test_examples_give_required_facts_that_no_rule_reads(tmp_path):
    """A required enum or number that no rule reads has no axis; a finding's example order must still carry
    it, or decide() refuses the example ('missing (required)'). Only strings were filled before."""
    doc = {"policy": "unread", "version": "1", "hit_policy": "first",
           "facts": {"order_id": {"type": "string", "required": True},
                     "channel": {"type": "enum", "required": True, "values": {"web": {}, "app": {}}},
                     "amount": {"type": "number", "required": True, "min": 5, "max": 9},
                     "s": {"type": "enum", "required": True, "values": {"a": {}, "b": {}}}},
           "actions": {"go": "Go."},
           "rules": [{"id": "only_a", "when": {"s": "a"}, "then": {"action": "go"}, "source": "test",
                      "examples": []},
                     {"id": "also_a", "when": {"s": {"in": ["a"]}}, "then": {"action": "go"}, "source": "test",
                      "examples": []}]}
    path = tmp_path / "unread.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    p = engine.load(path)
    report = p.verify()
    assert len(report.gaps) == 1 and len(report.overlaps) == 1
    for finding in report.gaps + report.overlaps:
        d = p.decide(finding.example, as_of=AS_OF)
        assert (*((d.rule_id,) if d.rule_id else ()), *d.also_matched) == finding.rules, d.error


def test_diff_counts_cells_whose_rule_keeps_its_id_but_changes_action(tmp_path):
    """A new version changing only one rule's action: its cells change decision (the orders path already said
    so). The cell path compared rule ids only, and took both policies' actions from one dict keyed by id."""
    doc = {"policy": "acts", "version": "1",
           "facts": {"order_id": {"type": "string", "required": True},
                     "s": {"type": "enum", "required": True, "values": {"a": {}, "b": {}, "c": {}}}},
           "actions": {"go": "Go.", "stop": "Stop."},
           "rules": [{"id": "on_a", "when": {"s": "a"}, "then": {"action": "go"}, "source": "t", "examples": []},
                     {"id": "on_bc", "when": {"s": {"in": ["b", "c"]}}, "then": {"action": "go"}, "source": "t",
                      "examples": []}]}
    old = load_doc(doc, tmp_path, "old")
    doc["version"] = "2"
    doc["rules"][1]["then"]["action"] = "stop"
    new = load_doc(doc, tmp_path, "new")
    result = engine.diff(old, new)
    assert (result.cells, result.changed_cells) == (3, 2)
    (row,) = result.transitions.itertuples()
    assert (row.old_action, row.old_rule, row.new_action, row.new_rule, row.cells) == ("go", "on_bc", "stop",
                                                                                        "on_bc", 2)
    assert decided(old, row.example) == ("go", "on_bc") and decided(new, row.example) == ("stop", "on_bc")
