"""GoRules JDM interop: the exported decision table, run by the real ZEN engine (zen-engine), decides every
normalized order as Policy.decide does; a table imported back decides as the policy it came from; hand-written
tables import exactly or with located errors; each operator's ZEN text means what our operator means."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from conftest import AS_OF, LEGACY, SAMPLE_ORDERS, load_policy
from engine.errors import JdmError, OrderError, RuleError
from engine.jdm import JDM_OPERATORS, ZenTable, cell_text
from engine.jdm.cells import CellError, parse
from engine.jdm.export import read_parameters
from engine.jdm.operators import number_tests, text_tests
from engine.jdm.truth import evaluate, number_truth, text_truth
from engine.model import Condition, FactSpec, ParamRef, PolicySpec
from engine.operators import OPERATORS, check
from engine.policy import from_jdm, import_jdm
from engine.space import build_axes
from engine.synthetic import growth_yaml, marketplace_orders, marketplace_yaml, synthetic_orders

FIXTURES = Path(__file__).parent / "fixtures" / "jdm"
SAMPLE = SAMPLE_ORDERS
# The bundled policy, its legacy variant, growth levels 1, 3 and 6 (engine.synthetic.growth_yaml) and the
# marketplace policy at 3 countries (its 50-country size is bench/bench_jdm.py's: loading it takes a minute).
# tests/fixtures/policies/not_between.yaml: not_between with constant, parameter and keyed-parameter bounds.
GROWTH_LEVELS = ["growth1", "growth3", "growth6"]
POLICIES = ["bundled", "legacy", *GROWTH_LEVELS, "marketplace3", "not_between"]
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jdm")


_policies: dict[str, engine.Policy] = {}
_tables: dict[str, ZenTable] = {}
_imported: dict[str, engine.Policy] = {}


def policy(name: str, folder: Path) -> engine.Policy:
    if name not in _policies:
        if name == "bundled":
            _policies[name] = engine.load()
        elif name == "legacy":
            _policies[name] = engine.load(LEGACY)
        elif name == "not_between":
            _policies[name] = load_policy(name)
        else:
            path = folder / f"{name}.yaml"
            text = growth_yaml(int(name.removeprefix("growth"))) if name.startswith("growth") else \
                marketplace_yaml(seed=0, countries=int(name.removeprefix("marketplace")))
            path.write_text(text, encoding="utf-8")
            _policies[name] = engine.load(path)
    return _policies[name]


def table(name: str, folder: Path) -> ZenTable:
    if name not in _tables:
        _tables[name] = ZenTable(policy(name, folder).to_jdm())
    return _tables[name]


def imported(name: str, folder: Path) -> engine.Policy:
    if name not in _imported:
        _imported[name] = from_jdm(json.dumps(policy(name, folder).to_jdm()), f"{name}.json")
    return _imported[name]


def zen_agrees(p: engine.Policy, zt: ZenTable, facts: dict[str, Any]) -> None:
    """ZEN's answer for normalized facts is the policy's: action, rule, message template, parameters, warnings."""
    decision = p.decide(facts, as_of=AS_OF)
    answer = zt.decide(facts)
    assert (answer.action, answer.rule_id, answer.error) == (decision.action, decision.rule_id, decision.error), facts
    if decision.rule_id is None:
        return
    rule = p.spec.rule(decision.rule_id)
    assert answer.message_template == " ".join(rule.message.split())
    assert answer.warnings == rule.warnings
    want = {n: p.spec.resolve(ParamRef(n), facts) for n in read_parameters(p.spec, rule)}
    # a ZEN caller can fill the template with these and the facts (a parameter with no value is left out)
    assert answer.parameters == {n: v for n, v in want.items() if v is not None}


def same_decision(a: engine.Policy, b: engine.Policy, facts: dict[str, Any]) -> None:
    x, y = a.decide(facts, as_of=AS_OF), b.decide(facts, as_of=AS_OF)
    assert (y.action, y.rule_id, y.message, y.warnings, y.error) == (x.action, x.rule_id, x.message, x.warnings,
                                                                       x.error), facts


# --- generated normalized facts ---------------------------------------------------------------------------


def numbers(points: tuple[float, ...], low: float, high: float) -> st.SearchStrategy[float]:
    """Numbers in [low, high] with weight on the thresholds and their neighbouring doubles."""
    near = sorted({v for p in points for v in (p, math.nextafter(p, -math.inf), math.nextafter(p, math.inf))
                   if low <= v <= high})
    # ZEN reads a number as a decimal with 28 places: a nonzero below 1e-11 would round (documented limit)
    span = st.floats(min_value=low, max_value=high, allow_nan=False).filter(lambda x: x == 0 or abs(x) >= 1e-11)
    return st.one_of(st.sampled_from(near), span) if near else span


def facts_of(spec: PolicySpec) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy] = {}
    for axis in build_axes(spec):
        fact = spec.facts[axis.fact]
        if axis.kind == "enum":
            value = st.sampled_from(axis.values)
        else:
            low = max(axis.low, -1e6)
            value = numbers(axis.points, low, min(axis.high, 1e6))
        fields[axis.fact] = st.one_of(st.none(), value) if fact.default is not None or fact.optional else value
    if "order_id" in spec.facts:
        fields["order_id"] = st.just("H1")
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not None})


@pytest.mark.parametrize("name", POLICIES)
def test_zen_decides_generated_normalized_orders_as_decide_does(name, folder):
    p, zt = policy(name, folder), table(name, folder)

    @settings(max_examples=250, **FAST)
    @given(facts_of(p.spec))
    def run(order):
        zen_agrees(p, zt, p.normalize(order, as_of=AS_OF))

    run()


@pytest.mark.parametrize("name", ["bundled", "legacy"])
def test_zen_decides_the_sample_as_decide_does(name, folder):
    p, zt = policy(name, folder), table(name, folder)
    orders = engine.read_orders(SAMPLE)
    decided = 0
    for order in orders.to_dict("records"):
        try:
            facts = p.normalize(order, as_of=AS_OF)
        except OrderError:  # no facts to feed ZEN: decide refuses the order the same way
            with pytest.raises(OrderError):
                p.decide(order, as_of=AS_OF)
            continue
        zen_agrees(p, zt, facts)
        decided += 1
    assert decided == p.evaluate(orders, as_of=AS_OF)["error"].isna().sum() > 300


@pytest.mark.parametrize("name", ["bundled", *GROWTH_LEVELS, "marketplace3"])
def test_zen_decides_synthetic_orders_as_decide_does(name, folder):
    p, zt = policy(name, folder), table(name, folder)
    orders = marketplace_orders(1500, seed=7, countries=3) if name == "marketplace3" else synthetic_orders(1500, seed=7)
    rules = set()
    for order in orders.to_dict("records"):
        try:
            facts = p.normalize(order, as_of=AS_OF)
        except OrderError:
            continue
        zen_agrees(p, zt, facts)
        rules.add(zt.decide(facts).rule_id)
    assert len(rules) >= 12  # the orders reach most rules, keyed rows included


def test_zen_table_is_exact_next_to_a_threshold(folder):
    """Regression: fed as a dict, zen-engine 2.1 reads 23.999999999999996 as 24 and fires `>= 24`; ZenTable feeds
    JSON text, which ZEN reads as its decimal."""
    p, zt = policy("bundled", folder), table("bundled", folder)
    facts = {"order_id": "N1", "status": "payment_verifying", "seller_reply": "not_contacted",
             "hours_since_payment": math.nextafter(24.0, 0.0)}
    assert p.decide(facts, as_of=AS_OF).rule_id == "cancel_before_processing"
    zen_agrees(p, zt, facts)


# --- the exported document ---------------------------------------------------------------------------------


def test_export_is_one_decision_table_between_input_and_output(folder):
    p = policy("bundled", folder)
    doc = p.to_jdm()
    kinds = [n["type"] for n in doc["nodes"]]
    assert kinds == ["inputNode", "decisionTableNode", "outputNode"]
    ids = [n["id"] for n in doc["nodes"]]
    assert [(e["sourceId"], e["targetId"]) for e in doc["edges"]] == [(ids[0], ids[1]), (ids[1], ids[2])]
    content = doc["nodes"][1]["content"]
    assert content["hitPolicy"] == "first"
    assert [c["field"] for c in content["inputs"]] == [f for f in p.spec.facts if f in p.spec.read_facts()]
    assert [c["field"] for c in content["outputs"]][:4] == ["action", "rule_id", "message_template", "warnings"]
    # rows in firing order, each rule's id and source in its description
    described = [re.match(r"^(\S+) \(priority (\d+)\): (.*)$", r["_description"]).groups() for r in content["rules"]]
    assert list(dict.fromkeys(d[0] for d in described)) == [r.id for r in p.spec.ranked_rules()]
    assert all(src == p.spec.rule(rid).source and int(pri) == p.spec.rule(rid).priority for rid, pri, src in described)
    schema = json.loads(doc["nodes"][0]["content"]["schema"])
    assert schema["required"] == ["order_id", "status", "seller_reply"]
    assert {c["const"]: c.get("title") for c in schema["properties"]["status"]["oneOf"]}["shipped"] == "Sent"


def test_keyed_parameter_becomes_one_row_per_shared_value_and_one_for_not_given(folder):
    content = policy("bundled", folder).to_jdm()["nodes"][1]["content"]
    rows = [r for r in content["rules"] if r["_description"].startswith("refund_overdue ")]
    cells = [(r["in_payment_method"], r["in_days_since_refund"], r["out_parameters_refund_days"]) for r in rows]
    assert cells == [
        ("'card'", "$ != null and $ >= 28", "28"),
        ("'paypal'", "$ != null and $ >= 30", "30"),
        ("'wallet', 'bank_transfer', 'webmoney'", "$ != null and $ >= 14", "14"),
        ("'boleto', 'cash_on_delivery'", "$ != null and $ >= 7", "7"),
        ("$ == null", "$ != null and $ >= 28", "28"),  # the parameter's default
    ]
    assert [r["_id"] for r in rows] == [f"refund_overdue#{k}" for k in range(1, 6)]


def test_unique_policy_exports_as_collect_and_zen_refuses_overlaps_alike(tmp_path):
    path = tmp_path / "unique.yaml"
    path.write_text("""
policy: unique-demo
version: "1"
hit_policy: unique
facts:
  kind: {type: enum, values: {a: null, b: null}}
  n: {type: number}
actions: {x: first kind, y: big n}
rules:
  - id: r1
    when: {kind: a}
    then: {action: x, message: "kind {kind}"}
    source: test
    examples: [{order: {kind: a, n: 1}, expect: x}]
  - id: r2
    when: {n: {gte: 5}}
    then: {action: y}
    source: test
    examples: [{order: {kind: b, n: 6}, expect: y}]
""", encoding="utf-8")
    p = engine.load(path)
    doc = p.to_jdm()
    assert doc["nodes"][1]["content"]["hitPolicy"] == "collect"
    zt = ZenTable(doc)
    back = from_jdm(doc)
    assert back.spec.hit_policy == "unique"
    for facts in ({"kind": "a", "n": 1.0}, {"kind": "a", "n": 6.0}, {"kind": "b", "n": 6.0}, {"kind": "b"}, {}):
        zen_agrees(p, zt, facts)
        same_decision(p, back, facts)
    assert zt.decide({"kind": "a", "n": 6.0}).error == "several rules match under hit policy 'unique': r1, r2"


# --- the operator table ------------------------------------------------------------------------------------

NUMBER_OPERANDS = {"eq": 24.0, "ne": 24.0, "lt": 24.0, "lte": 24.0, "gt": 24.0, "gte": 24.0, "between": (10.0, 24.0),
                   "not_between": (10.0, 24.0), "in": (1.0, 24.0), "not_in": (1.0, 24.0), "given": True}
TEXT_OPERANDS = {"eq": "a", "ne": "a", "in": ("a", "b"), "not_in": ("a",), "given": True}
NUMBER_POINTS = [None, -1.0, 1.0, math.nextafter(10.0, 0), 10.0, 10.5, math.nextafter(24.0, 0), 24.0,
                 math.nextafter(24.0, 99), 100.0]
TEXT_POINTS = [None, "a", "b", "c"]
SPEC = PolicySpec("ops", "1", "first", {"x": FactSpec("x", "number")}, {}, {}, ())


def our_test(op: str, operand: Any, x: Any) -> bool:
    """What our operator means: engine.operators.check, the reference the engine agrees with."""
    return check(SPEC, Condition("x", op, operand), {"x": x} if x is not None else {}).passed


def zen_cell(text: str, x: Any) -> bool:
    """ZEN's verdict on one cell; a cell that raises skips its row, so it does not match."""
    try:
        return zen.evaluate_unary_expression(text, json.dumps({"$": x})) is True
    except RuntimeError:
        return False


def test_every_operator_of_the_language_has_a_zen_form():
    assert list(JDM_OPERATORS) == list(OPERATORS)
    for op, row in JDM_OPERATORS.items():
        assert row.row is OPERATORS[op] and (row.texts is not None) == OPERATORS[op].on_enum, op


def test_an_operator_without_a_zen_form_is_refused_on_export_with_its_rule(monkeypatch, policy):
    # A later operator of engine.operators that no ZEN form was written for: every rule using it is located.
    monkeypatch.delitem(JDM_OPERATORS, "gte")
    with pytest.raises(RuleError) as info:
        policy.to_jdm()
    using = [r for r in policy.spec.rules if any(c.op == "gte" for c in r.conditions)]
    assert using and len(info.value.problems) == len(using)
    first, condition = info.value.problems[0], next(c for c in using[0].conditions if c.op == "gte")
    assert (first.rule_id, first.line, first.col) == (using[0].id, condition.line, condition.col)
    assert condition.line > 0 and condition.col > 0
    assert first.path == policy.spec.path
    assert "cannot export to JDM: operator 'gte' has no form in a ZEN cell" in str(first)


@pytest.mark.parametrize("op", list(JDM_OPERATORS))
def test_each_operator_row_means_on_zen_what_it_means_here(op):
    row = JDM_OPERATORS[op]
    cases = [(NUMBER_OPERANDS[op], x) for x in NUMBER_POINTS]
    cases += [(False, x) for x in NUMBER_POINTS] if op == "given" else []
    if row.texts is not None:
        cases += [(TEXT_OPERANDS[op], x) for x in TEXT_POINTS]
    for operand, x in cases:
        text = cell_text([(op, operand)])
        assert zen_cell(text, x) == our_test(op, operand, x), (op, operand, x, text)


@pytest.mark.parametrize("op", list(JDM_OPERATORS))
def test_each_number_operator_reads_back_as_itself(op):
    operand = NUMBER_OPERANDS[op]
    accepted, null = number_truth(parse(cell_text([(op, operand)])))
    assert not null
    want = [[(op, operand)]] if op != "given" else [[("given", True)]]
    assert number_tests(accepted, tuple(JDM_OPERATORS)) == want


def test_not_between_reads_back_only_where_the_language_has_it():
    accepted, _ = number_truth(parse("< 10, > 24"))
    assert number_tests(accepted, tuple(JDM_OPERATORS)) == [[("not_between", (10.0, 24.0))]]
    # without the operator (read back as if the language lacked it): one rule per range, still exact
    without = tuple(op for op in JDM_OPERATORS if op != "not_between")
    assert number_tests(accepted, without) == [[("lt", 10.0)], [("gt", 24.0)]]


@pytest.mark.parametrize("op", [op for op, row in JDM_OPERATORS.items() if row.texts is not None])
def test_each_text_operator_reads_back_to_the_same_values(op):
    domain = ("a", "b", "c")
    operand = TEXT_OPERANDS[op]
    accepted, null = text_truth(parse(cell_text([(op, operand)])), domain)
    assert not null
    got = text_tests(accepted, domain, tuple(JDM_OPERATORS))
    assert JDM_OPERATORS[got[0]].texts(got[1], domain) == JDM_OPERATORS[op].texts(operand, domain)


def test_texts_with_quotes_survive_zen_strings():
    for text in ("it's", 'say "no"', 'it\'s "both"', "${x} `tick`"):
        cell = cell_text([("eq", text)])
        assert zen_cell(cell, text) and not zen_cell(cell, text + "!")
        assert text_truth(parse(cell), (text, "other")) == (frozenset([text]), False)


# --- reading cells as ZEN reads them -----------------------------------------------------------------------

CONSTANTS = st.sampled_from(["1", "5", "10", "-3", "2.5", "1e1", "1E1", "-(5)", "1_0", "--3"])
WORDS = st.sampled_from(["'a'", '"b"', "'c'", "`a`", "'a' + \"b\""])
LITERAL = st.one_of(CONSTANTS, WORDS, st.just("null"))
COMPARE = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _interval(draw) -> str:
    low, high = sorted(draw(st.lists(st.sampled_from([-3, 1, 5, 10]), min_size=2, max_size=2, unique=True)))
    return f"{draw(st.sampled_from('[('))}{low}..{high}{draw(st.sampled_from('])'))}"


@st.composite
def unary_cells(draw) -> str:
    def atom() -> str:
        kind = draw(st.sampled_from(["literal", "compare", "range"]))
        if kind == "literal":
            return draw(LITERAL)
        if kind == "compare":
            return f"{draw(COMPARE)} {draw(LITERAL)}"
        return _interval(draw)

    text = draw(st.sampled_from([", ", " or ", " and "])).join(atom() for _ in range(draw(st.integers(1, 3))))
    if draw(st.integers(0, 4)) == 0:  # now and then a mix, which must be refused
        text += draw(st.sampled_from([", ", " and "])) + atom()
    return text


@st.composite
def expression_cells(draw, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["compare", "in", "range", "null"] + (["and", "or", "not"] if depth < 2 else [])))
    if kind == "compare":
        return f"$ {draw(COMPARE)} {draw(LITERAL)}"
    if kind == "in":
        items = draw(st.lists(LITERAL, min_size=1, max_size=3))
        return f"$ {draw(st.sampled_from(['in', 'not in']))} [{', '.join(items)}]"
    if kind == "range":
        return f"$ {draw(st.sampled_from(['in', 'not in']))} {_interval(draw)}"
    if kind == "null":
        return f"$ {draw(st.sampled_from(['==', '!=']))} null"
    if kind == "not":
        return f"not ({draw(expression_cells(depth + 1))})"
    # unparenthesized: ZEN's and / or bind alike, left to right
    parts = [draw(expression_cells(depth + 1)) for _ in range(draw(st.integers(2, 3)))]
    if draw(st.booleans()):
        parts = [f"({p})" for p in parts]
    joiners = [kind] * (len(parts) - 1)
    if draw(st.integers(0, 4)) == 0:  # now and then a mix, which must be refused
        joiners[-1] = "or" if kind == "and" else "and"
    return parts[0] + "".join(f" {j} {p}" for j, p in zip(joiners, parts[1:], strict=True))


VALUES = [None, -4.0, -3.0, 0.0, 1.0, 2.5, 3.0, 5.0, 7.5, 10.0, 12.0, "a", "b", "c", "ab"]


@settings(max_examples=300, **FAST)
@given(st.one_of(unary_cells(), expression_cells()))
def test_cells_are_read_as_zen_evaluates_them(text):
    try:
        node = parse(text)
    except CellError:
        return  # refused: never read as something else (the located errors are tested below)
    for x in VALUES:
        assert (evaluate(node, x) is True) == zen_cell(text, x), (text, x)


# --- import ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", POLICIES)
def test_round_trip_export_import_decides_alike(name, folder):
    p, back = policy(name, folder), imported(name, folder)
    assert [r.id for r in back.spec.ranked_rules()] == [r.id for r in p.spec.ranked_rules()]

    @settings(max_examples=150, **FAST)
    @given(facts_of(p.spec))
    def run(order):
        same_decision(p, back, p.normalize(order, as_of=AS_OF))

    run()
    orders = marketplace_orders(800, seed=3, countries=3) if name == "marketplace3" else synthetic_orders(800, seed=3)
    for order in orders.to_dict("records"):
        try:
            facts = p.normalize(order, as_of=AS_OF)
        except OrderError:
            continue
        same_decision(p, back, facts)


def test_round_trip_rebuilds_the_keyed_parameter_and_parameter_references(folder):
    p, back = policy("bundled", folder), imported("bundled", folder)
    assert back.spec.parameters["refund_days"] == p.spec.parameters["refund_days"]
    assert {n: v for n, v in back.spec.parameters.items() if n != "refund_days"} == \
        {n: float(v) for n, v in p.spec.parameters.items() if n != "refund_days"}
    for rule in p.spec.rules:  # the same conditions, parameters referenced where the original references them
        got = back.spec.rule(rule.id)
        assert {(c.fact, c.op, c.value) for c in got.conditions} == \
            {(c.fact, c.op, c.value) for c in rule.conditions}, rule.id
    legacy = imported("legacy", folder)
    assert legacy.spec.parameters["seller_reply_hours"] == 72


def test_not_between_exports_as_zen_not_in_a_range_and_reads_back_as_itself(folder):
    p, back = policy("not_between", folder), imported("not_between", folder)
    cells = {row["_id"]: row["in_hours_since_contact"] for row in p.to_jdm()["nodes"][1]["content"]["rules"]
             if row["_id"].startswith("contact_outside_window")}
    # the keyed bound: one row per payment method, one for the method not given (the default, 24 h)
    assert sorted(cells.values()) == [f"$ != null and $ not in [1..{h}]" for h in (12, 24, 36)]
    for rule in p.spec.rules:
        got = {(c.fact, c.op, c.value) for c in back.spec.rule(rule.id).conditions}
        assert got == {(c.fact, c.op, c.value) for c in rule.conditions}, rule.id


def test_cli_export_then_import_writes_a_policy_that_loads(tmp_path):
    out, policy_yaml = tmp_path / "legacy.json", tmp_path / "legacy.yaml"
    cli = [sys.executable, "-m", "engine.cli"]
    run = subprocess.run([*cli, "export", "--format", "jdm", "--policy", str(LEGACY), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([*cli, "import", "--format", "jdm", str(out), "-o", str(policy_yaml)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stderr and "15 rules" in run.stderr
    back = engine.load(policy_yaml)  # checks every rule's generated example
    assert all(len(r.examples) == 1 and r.examples[0].rule == r.id for r in back.spec.rules)
    legacy = engine.load(LEGACY)
    order = {"order_id": "C1", "status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 50}
    assert back.decide(order, as_of=AS_OF).action == legacy.decide(order, as_of=AS_OF).action == "wait_for_seller"


def test_unsupported_feel_expression_is_a_located_error(tmp_path):
    source = FIXTURES / "unsupported-feel.json"
    with pytest.raises(JdmError) as info:
        import_jdm(source.read_text(encoding="utf-8"), str(source))
    assert [str(p) for p in info.value.problems] == [
        f"{source}: rule #3 (row id e4d3c2b1-a0f9-4e8d-b7c6-a5f4e3d2c1b0), column 'Country': 'startsWith(...)' is a "
        "function: only comparisons with constants can be read"]
    out = tmp_path / "never.yaml"
    run = subprocess.run([sys.executable, "-m", "engine.cli", "import", "--format", "jdm", str(source), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and not out.exists()
    assert run.stderr == f"cancel-rules import: {info.value.problems[0]}\n"  # one problem, one line


@pytest.mark.parametrize("case", ["missing input", "not JSON", "output folder missing", "export output folder"])
def test_cli_interop_errors_are_one_line_and_exit_2(tmp_path, case):
    source = tmp_path / "t.json"
    source.write_text("{nodes" if case == "not JSON" else json.dumps(_doc(STATUS, [{"s": "'x'", "o": "'a'"}])),
                      encoding="utf-8")
    out = tmp_path / ("nowhere" if "folder" in case else "") / "out.yaml"
    command = "export" if case.startswith("export") else "import"
    args = ["--format", "jdm", "-o", str(out)] + ([str(tmp_path / "none.json")] if case == "missing input" else
                                                  [str(source)] if command == "import" else [])
    run = subprocess.run([sys.executable, "-m", "engine.cli", command, *args], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and not out.exists(), run.stderr
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith(f"cancel-rules {command}: "), run.stderr
    assert {"missing input": "none.json: no such file", "not JSON": "t.json: not JSON: Expecting",
            "output folder missing": "out.yaml: cannot write", "export output folder": "out.yaml: cannot write",
            }[case] in run.stderr


def _zen_row(doc: dict, facts: dict[str, Any]) -> int | None:
    """The 1-based row ZEN's first-hit table picks (from its trace)."""
    result = zen.ZenEngine().create_decision(json.dumps(doc)).evaluate(json.dumps(facts), {"trace": True})
    trace = next(t for t in result["trace"].values() if t.get("traceData"))["traceData"] if result["result"] else None
    return None if trace is None else trace["index"] + 1


def test_hand_written_table_imports_exactly(folder):
    doc = json.loads((FIXTURES / "shipping.json").read_text(encoding="utf-8"))
    result = import_jdm(doc, "shipping.json")
    spec = result.policy.spec
    assert spec.facts["status"].values == ("delivered", "cancelled", "shipped", "awaiting_shipment")
    assert spec.facts["weight_kg"].type == "number" and spec.facts["country"].values == ("us", "ca")
    # '!= us' also accepts a country not given: the row becomes two rules; '< 1, > 50' is not_between [1, 50]
    assert [r.id for r in spec.ranked_rules()] == ["closed", "heavy_in_transit", "row3.part1", "row3.part2",
                                                   "odd_weight", "no_rating", "low_rating", "light_parcel",
                                                   "otherwise"]
    assert [(c.fact, c.op, c.value) for c in spec.rule("odd_weight").conditions] == [
        ("weight_kg", "not_between", (1, 50))]
    row_of = {r.id: int(re.search(r"rule #(\d+)", r.source).group(1)) for r in spec.rules}
    zt = ZenTable(doc)
    domain = {"status": st.sampled_from(spec.facts["status"].values), "country": st.sampled_from(("us", "ca")),
              "weight_kg": numbers((0, 1, 2, 10, 30, 50), -5, 80), "seller_rating": numbers((90, 100), 0, 120)}

    @settings(max_examples=300, **FAST)
    @given(st.fixed_dictionaries({k: st.one_of(st.none(), v) for k, v in domain.items()}))
    def run(raw):
        facts = {k: v for k, v in raw.items() if v is not None}
        decision = result.policy.decide(facts, as_of=AS_OF)
        assert zt.decide(facts).action == decision.action
        assert _zen_row(doc, facts) == row_of[decision.rule_id]
        if decision.rule_id == "closed":
            assert decision.message == f"The order is {facts['status']}: nothing to cancel."

    run()


def test_shadowed_and_empty_rows_are_warned_not_dropped_silently():
    doc = _doc([{"id": "s", "field": "status"}, {"id": "n", "field": "n"}],
               [{"_id": "a", "s": "'x'", "o": "'one'"}, {"_id": "b", "s": "'x'", "o": "'two'"},
                {"_id": "c", "n": "> 5 and < 3", "o": "'three'"}, {"_id": "d", "o": "'four'"}])
    result = import_jdm(doc, "t.json")
    assert result.warnings == (
        "t.json: rule #3 (row id c), column 'n': never matches an order: the cell accepts no value, given or not",
        "t.json: rule #2 (row id b): never decides an order: every order it matches is decided by an earlier row",
    )
    assert [(r.id, len(r.examples)) for r in result.policy.spec.rules] == [("row1", 1), ("row2", 0), ("row4", 1)]


def _doc(inputs: list[dict], rows: list[dict], outputs: list[dict] | None = None, schema: str = "",
         **content: Any) -> dict:
    outputs = outputs if outputs is not None else [{"id": "o", "field": "action"}]
    table = {"hitPolicy": "first", "inputs": inputs, "outputs": outputs, "rules": rows, **content}
    return {"nodes": [{"id": "i", "type": "inputNode", "name": "in", "content": {"schema": schema}},
                      {"id": "t", "type": "decisionTableNode", "name": "t", "content": table},
                      {"id": "out", "type": "outputNode", "name": "out"}],
            "edges": [{"id": "e1", "sourceId": "i", "targetId": "t"}, {"id": "e2", "sourceId": "t", "targetId": "out"}]}


STATUS = [{"id": "s", "name": "Status", "field": "status"}]
BAD_TABLES = [
    ("function", _doc(STATUS, [{"_id": "r1", "s": "len($) > 3", "o": "'a'"}]),
     "t.json: rule #1 (row id r1), column 'Status': 'len(...)' is a function: only comparisons with constants can be "
     "read"),
    ("another field", _doc(STATUS, [{"_id": "r1", "s": "> limit", "o": "'a'"}]),
     "t.json: rule #1 (row id r1), column 'Status': 'limit' names a field or variable: only constants can be compared"),
    ("arithmetic", _doc(STATUS, [{"_id": "r1", "s": "$ * 2 > 5", "o": "'a'"}]),
     "t.json: rule #1 (row id r1), column 'Status': '$ * ...' computes a value: only comparisons with constants can "
     "be read"),
    ("template", _doc(STATUS, [{"s": "`${x}`", "o": "'a'"}]),
     "t.json: rule #1, column 'Status': the template string `${x}` computes its text: only constants can be compared"),
    ("boolean", _doc(STATUS, [{"s": "true", "o": "'a'"}]),
     "t.json: rule #1, column 'Status': 'true': this rule language has no true/false facts"),
    ("precision", _doc(STATUS, [{"s": "> 0.10000000000000000001", "o": "'a'"}]),
     "t.json: rule #1, column 'Status': the number 0.10000000000000000001 is not exactly a double (our engine would "
     "compare another number)"),
    ("outward range", _doc(STATUS, [{"s": "]1..5[", "o": "'a'"}]),
     "t.json: rule #1, column 'Status': the range ]..[ with outward brackets is ambiguous: write (a..b) or a test on "
     "'$'"),
    ("mixed types", _doc(STATUS, [{"s": "'x'", "o": "'a'"}, {"_id": "r2", "s": "5", "o": "'b'"}]),
     "t.json: rule #2 (row id r2), column 'Status': compares with numbers, but rule #1 makes 'status' text"),
    ("ordered text", _doc(STATUS, [{"s": "> 'x'", "o": "'a'"}]),
     "t.json: rule #1, column 'Status': orders text (<, <=, >, >= or a range): only numbers are ordered here"),
    ("case clash", _doc(STATUS, [{"s": "'Card'", "o": "'a'"}, {"s": "'card'", "o": "'b'"}]),
     "t.json: rule #2, column 'Status': the values 'Card' and 'card' differ only in case or separators, which a "
     "policy reads as one value"),
    ("case clash in the schema", _doc(STATUS, [{"s": "'x'", "o": "'a'"}], schema=json.dumps(
        {"properties": {"status": {"type": "string", "enum": ["Card", "card"]}}})),
     "t.json: column 'status': the values 'Card' and 'card' differ only in case or separators, which a policy reads "
     "as one value"),
    ("schema type", _doc(STATUS, [{"s": "'x'", "o": "'a'"}], schema=json.dumps(
        {"properties": {"status": {"type": "number"}}})),
     "t.json: rule #1, column 'Status': compares with text, but the input schema makes 'status' a number"),
    ("dollar value", _doc(STATUS, [{"s": "'$x'", "o": "'a'"}]),
     "t.json: rule #1, column 'Status': the value '$x' starts with '$', which names a parameter in a policy"),
    ("empty action", _doc(STATUS, [{"s": "'x'", "o": "''"}]),
     "t.json: rule #1, column 'action': no action: every row must set the 'action' output"),
    ("expression action", _doc(STATUS, [{"s": "'x'", "o": "upper('a')"}]),
     "t.json: rule #1, column 'action': an output must be a constant: 'upper(...)' is a function: only comparisons "
     "with constants can be read"),
    ("expression column", _doc([{"id": "s", "name": "Big", "field": ""}], [{"s": "total > 5", "o": "'a'"}]),
     "t.json: column 'Big': an expression column (no field): its cells are expressions over the whole input; give "
     "the column the field it tests"),
    ("nested field", _doc([{"id": "s", "field": "customer.tier"}], [{"s": "'gold'", "o": "'a'"}]),
     "t.json: column 'customer.tier': field 'customer.tier' is not a plain name (nested paths are not facts here)"),
    ("other output", _doc(STATUS, [{"s": "'x'", "o": "'a'"}],
                          [{"id": "o", "field": "action"}, {"id": "d", "name": "Discount", "field": "discount"}]),
     "t.json: column 'Discount': output 'discount' has no place in a decision here (outputs read: action, rule_id, "
     "message_template or message, warnings, parameters.<name>)"),
    ("loop", _doc(STATUS, [{"s": "'x'", "o": "'a'"}], executionMode="loop"),
     "t.json: the table runs in a loop over a list (executionMode): only one input object is read"),
    ("input field", _doc(STATUS, [{"s": "'x'", "o": "'a'"}], inputField="order"),
     "t.json: the table reads its inputs under 'inputField': only a table over the whole input is read"),
    ("unknown placeholder", _doc(STATUS, [{"s": "'x'", "o": "'a'", "m": "'see {nope}'"}],
                                 [{"id": "o", "field": "action"}, {"id": "m", "field": "message"}]),
     "t.json: rule #1, column 'message': placeholder '{nope}' names no input column, schema field or parameter"),
    ("unkeyed parameter", _doc(STATUS, [{"s": "'x'", "o": "'a'", "p": "1"}, {"s": "'x', 'y'", "o": "'b'", "p": "2"}],
                               [{"id": "o", "field": "action"}, {"id": "p", "name": "days", "field": "parameters.d"}]),
     "t.json: column 'days': parameter 'd' varies across rows (rule #1: 1, rule #2: 2, ...) and not as one value per "
     "value of an enum column"),
]


@pytest.mark.parametrize("doc, message", [pytest.param(d, m, id=i) for i, d, m in BAD_TABLES])
def test_what_cannot_be_expressed_is_a_located_error(doc, message):
    with pytest.raises(JdmError) as info:
        from_jdm(doc, "t.json")
    assert [str(p) for p in info.value.problems] == [message]


def test_documents_that_are_not_one_table_are_refused():
    doc = _doc(STATUS, [{"s": "'x'", "o": "'a'"}])
    doc["nodes"].append({"id": "x", "type": "expressionNode", "name": "Compute", "content": {"expressions": []}})
    with pytest.raises(JdmError, match=r"t.json: node 'Compute': a node of type 'expressionNode' cannot be "):
        from_jdm(doc, "t.json")
    with pytest.raises(JdmError, match=r"t.json: not UTF-8 text"):
        from_jdm(b"\xff\xfe{", "t.json")
    assert from_jdm(b"\xef\xbb\xbf" + json.dumps(_doc(STATUS, [{"s": "'x'", "o": "'a'"}])).encode(), "t.json")
    with pytest.raises(JdmError, match=r"t.json: not JSON: Expecting"):
        from_jdm("{nodes", "t.json")
    two = _doc(STATUS, [])
    two["nodes"].append(dict(two["nodes"][1], id="t2"))
    with pytest.raises(JdmError, match="the document has 2 decision tables: exactly one is read"):
        from_jdm(two, "t.json")
    cut = _doc(STATUS, [])
    cut["edges"] = cut["edges"][:1]
    with pytest.raises(JdmError, match="the edges must join input node -> decision table -> output node"):
        from_jdm(cut, "t.json")


@pytest.mark.parametrize("cell, message", [
    ("(" * 2000 + "1" + ")" * 2000, "the cell nests too deeply"),
    ("not (" * 1500 + "$ == 1" + ")" * 1500, "the cell nests too deeply"),
    ("1, " * 4000 + "1", "the cell is longer than 10,000 characters"),
    (", ".join(str(k) for k in range(600)), "the cell compares with more than 500 constants"),
])
def test_hostile_cells_are_refused(cell, message):
    with pytest.raises(JdmError) as info:
        from_jdm(_doc(STATUS, [{"s": cell, "o": "'a'"}]), "t.json")
    assert [str(p) for p in info.value.problems] == [f"t.json: rule #1, column 'Status': {message}"]


def test_export_refuses_fact_names_zen_reads_as_paths_or_constants(tmp_path):
    path = tmp_path / "weird.yaml"
    path.write_text("""
policy: weird
version: "1"
facts:
  a.b: {type: number}
  "null": {type: enum, values: {x: null}}
actions: {go: ""}
rules:
  - id: r1
    when: {a.b: {gte: 1}, "null": x}
    then: {action: go}
    source: t
    examples: [{order: {a.b: 2, "null": x}, expect: go}]
""", encoding="utf-8")
    with pytest.raises(engine.RuleError) as info:
        engine.load(path).to_jdm()
    assert [p.message for p in info.value.problems] == [
        f"cannot export to JDM: fact {name!r} is not a plain name ZEN can read as a field (letters, digits, '_'; "
        "not a keyword)" for name in ("a.b", "null")]


def test_columns_on_one_field_all_hold():
    doc = _doc([{"id": "a", "field": "w"}, {"id": "b", "field": "w"}],
               [{"_id": "x", "a": ">= 1", "b": "< 5", "o": "'in'"}, {"_id": "y", "o": "'out'"}])
    back = from_jdm(doc, "t.json")
    assert {(c.fact, c.op, c.value) for c in back.spec.rule("row1").conditions} == {("w", "gte", 1), ("w", "lt", 5)}
    zt = ZenTable(doc)
    for w in (None, 0.5, 1.0, 4.999, 5.0):
        facts = {} if w is None else {"w": w}
        assert zt.decide(facts).action == back.decide(facts, as_of=AS_OF).action


def test_normalize_gives_the_facts_decide_reads(folder):
    p = policy("bundled", folder)
    for order in engine.read_orders(SAMPLE).to_dict("records"):
        try:
            facts = p.normalize(order, as_of=AS_OF)
        except OrderError as exc:
            with pytest.raises(OrderError, match=re.escape(str(exc))):
                p.decide(order, as_of=AS_OF)
            continue
        assert facts == p.decide(order, as_of=AS_OF).facts


def test_a_message_parameter_with_no_value_keeps_its_row(tmp_path):
    """Regression: a rule whose message (not its tests) reads a keyed parameter with no default lost its row for
    the key not given, so ZEN decided nothing where the policy decides."""
    path = tmp_path / "nodefault.yaml"
    path.write_text("""
policy: nodefault
version: "1"
facts:
  method: {type: enum, values: {card: null, cash: null}}
  days: {type: number, min: 0}
parameters:
  window: {by: method, values: {card: 10, cash: 3}}
actions: {wait: "", act: ""}
rules:
  - id: overdue
    when: {days: {gte: $window}}
    then: {action: act, message: "past {window} days"}
    source: t
    examples: [{order: {method: card, days: 11}, expect: act}]
  - id: waiting
    when: {days: {given: true}}
    then: {action: wait, message: "within {window} days ({window - days} left)"}
    source: t
    examples: [{order: {days: 1}, expect: wait}]
""", encoding="utf-8")
    p = engine.load(path)
    doc = p.to_jdm()
    zt, back = ZenTable(doc), from_jdm(doc)
    for method in (None, "card", "cash"):
        for days in (None, 1.0, 3.0, 10.0):
            facts = {k: v for k, v in (("method", method), ("days", days)) if v is not None}
            zen_agrees(p, zt, facts)
            same_decision(p, back, facts)
    assert [r.id for r in back.spec.rules] == ["overdue", "waiting"]
