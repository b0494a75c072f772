"""Import a JDM decision table: read it (table.py, rules.py), write the policy YAML, and load it as a policy."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from ..compiler import compile_policy
from ..errors import JdmError, JdmProblem, RuleError
from ..model import Condition, FactSpec, PolicySpec, Rule
from ..operators import OperatorName
from ..text import alias_key
from .examples import SearchExhausted, filler, winning_orders
from .rules import Keyed, check_messages, join, parameters, row_parts, row_truths, rule_ids, with_parameters
from .table import (
    MESSAGE_FIELDS,
    Fact,
    Reader,
    Row,
    check_columns,
    columns,
    document,
    infer_facts,
    read_rows,
    schema_facts,
    source_name,
    table_hash,
)

if TYPE_CHECKING:
    from ..policy import Policy

Tests = dict[str, list[tuple[str, Any]]]


@dataclass(frozen=True)
class JdmImport:
    """An imported table: the policy YAML (loaded and checked), the policy, and warnings (rows never reached)."""

    yaml: str
    policy: Policy
    warnings: tuple[str, ...]


@dataclass
class _Leaf:
    """One rule as a row (or a part of a row) gives it: its tests with constants, and with parameters."""

    row: Row
    id: str
    tests: Tests
    referenced: Tests


def import_table(doc: Mapping[str, Any] | str | bytes, source: str, load: Callable[[Path], Policy]) -> JdmImport:
    """The policy of a JDM document holding one decision table (dict, or its JSON text), loaded from its YAML by
    `load` (the facade's: this package sits below it); JdmError lists every problem, located by rule (row) and
    column."""
    reader = Reader(source)
    entry, table, name = document(doc, reader)
    content = table["content"]
    inputs, outputs = columns(content, "inputs", reader), columns(content, "outputs", reader)
    check_columns(content, inputs, outputs, reader)
    declared = schema_facts(entry, reader)
    rows = read_rows(content, inputs, outputs, reader)
    reader.check()
    facts = infer_facts(rows, inputs, declared, reader)
    reader.check()
    warnings = []
    for row in rows:
        row_truths(row, facts)
        if (never := row_parts(row, facts, reader)) is not None:
            warnings.append(never)
    params = parameters(rows, facts, outputs, reader)
    message_column = next((c.label for c in outputs if c.field in MESSAGE_FIELDS), "message_template")
    check_messages(rows, facts, params, reader, message_column)
    ids = rule_ids(rows, reader)
    reader.check()

    leaves = [_Leaf(row, ids[row.number] if len(row.parts) == 1 else f"{ids[row.number]}.part{k}", tests,
                    with_parameters(tests, row, params))
              for row in rows for k, tests in enumerate(row.parts, start=1)]
    rules = _rules(rows, leaves, facts, params, reader)
    reader.check()
    unique = content.get("hitPolicy") == "collect"
    try:
        wins = winning_orders(_leaf_spec(leaves, facts, unique))
    except SearchExhausted as exc:
        raise JdmError([JdmProblem(source, f"cannot find example orders: {exc}")]) from None
    data = _policy_data(name or source_name(source), table_hash(content), source, unique, facts, params)
    for rule_id, leaf_group, tests in rules:
        leaf = leaf_group[0]
        won = [(lf, wins[lf.id]) for lf in leaf_group if wins[lf.id] is not None]
        for lf in leaf_group:
            if wins[lf.id] is None:
                why = "always matches with another row (ZEN's collect returns both)" if unique else \
                    "every order it matches is decided by an earlier row"
                what = "never decides an order" if len(lf.row.parts) == 1 else \
                    f"its part {lf.id} never decides an order"
                warnings.append(str(JdmProblem(source, f"{what}: {why}", lf.row.number, lf.row.row_id)))
        data["rules"].append(_rule_data(rule_id, leaf.row, tests, won, facts, source))
    text = _dump(data, source, len(rows), unique)
    return JdmImport(text, _load(text, source, load, {r: g[0].row for r, g, _ in rules}), tuple(warnings))


def _rules(rows: list[Row], leaves: list[_Leaf], facts: dict[str, Fact], params: dict, reader: Reader
           ) -> list[tuple[str, list[_Leaf], Tests]]:
    """(rule id, its leaves, its tests) in table order; rows sharing a rule id are joined where they can be."""
    by_row: dict[int, list[_Leaf]] = {}
    for leaf in leaves:
        by_row.setdefault(leaf.row.number, []).append(leaf)
    shared: dict[str, list[Row]] = {}
    for row in rows:
        if row.outputs.get("rule_id"):
            shared.setdefault(row.outputs["rule_id"], []).append(row)
    out: list[tuple[str, list[_Leaf], Tests]] = []
    done: set[int] = set()
    taken = {leaf.id for leaf in leaves}
    for row in rows:
        if row.number in done:
            continue
        group = shared.get(row.outputs.get("rule_id") or "", [row])
        numbers = [r.number for r in group]
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        tests = join(group, facts, params) if len(group) > 1 and consecutive else None
        tests = None if tests is None else with_parameters(tests, group[0], params)
        if tests is not None and group[0].outputs["rule_id"] not in taken:
            out.append((group[0].outputs["rule_id"], [lf for r in group for lf in by_row.get(r.number, [])], tests))
            done.update(numbers)
            continue
        out += [(lf.id, [lf], lf.referenced) for lf in by_row.get(row.number, [])]
        done.add(row.number)
    seen: dict[str, int] = {}
    for rule_id, group_leaves, _ in out:
        if rule_id in seen:
            reader.problem(f"the rule id '{rule_id}' is also rule #{seen[rule_id]}'s", group_leaves[0].row)
        seen.setdefault(rule_id, group_leaves[0].row.number)
    return out


def _leaf_spec(leaves: list[_Leaf], facts: dict[str, Fact], unique: bool) -> PolicySpec:
    """The policy of the leaves, with constants: what the example search reads (no file, no engine)."""
    specs = {n: FactSpec(name=n, type=f.type, required=f.required, values=tuple(f.values),
                         aliases={alias_key(v): v for v in f.values}, min=f.minimum, max=f.maximum)
             for n, f in facts.items()}
    rules = tuple(Rule(id=leaf.id, priority=0, index=i, action=leaf.row.outputs["action"],
                       # the tests' operators are JDM_OPERATORS', named as engine.operators names them
                       conditions=tuple(Condition(fact, cast(OperatorName, op), value)
                                        for fact, tests in leaf.tests.items() for op, value in tests))
                  for i, leaf in enumerate(leaves))
    return PolicySpec(name="leaves", version="", hit_policy="unique" if unique else "first", facts=specs,
                      parameters={}, actions={}, rules=rules)


def _number(value: float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53 else value


def _value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_number(v) for v in value]
    return _number(value)


def _policy_data(name: str, digest: str, source: str, unique: bool, facts: dict[str, Fact], params: dict
                 ) -> dict[str, Any]:
    fact_data: dict[str, Any] = {}
    for fact in facts.values():
        item: dict[str, Any] = {"type": fact.type}
        if fact.required:
            item["required"] = True
        if fact.type == "enum":
            item["values"] = {v: {"label": fact.labels[v]} if v in fact.labels else None for v in fact.values}
        item.update({k: _number(v) for k, v in (("min", fact.minimum), ("max", fact.maximum)) if v is not None})
        if fact.description:
            item["description"] = fact.description
        fact_data[fact.name] = item
    param_data: dict[str, Any] = {}
    for pname, param in params.items():
        if isinstance(param, Keyed):
            param_data[pname] = {"by": param.by, "values": {k: _number(v) for k, v in param.values.items()}}
            if param.default is not None:
                param_data[pname]["default"] = _number(param.default)
        else:
            param_data[pname] = _number(param)
    return {"policy": name, "version": f"jdm-{digest}",
            "description": f"Imported from {source_name(source)} (a GoRules JDM decision table).",
            "hit_policy": "unique" if unique else "first", "facts": fact_data, "parameters": param_data,
            "actions": {}, "rules": []}


def _rule_data(rule_id: str, row: Row, tests: Tests, won: list, facts: dict[str, Fact], source: str
               ) -> dict[str, Any]:
    when: dict[str, Any] = {}
    for name, items in tests.items():
        if len(items) == 1 and items[0][0] == "eq" and not str(items[0][1]).startswith("$"):
            when[name] = _value(items[0][1])
        else:
            when[name] = {op: _value(value) for op, value in items}
    then: dict[str, Any] = {"action": row.outputs["action"]}
    if row.outputs.get("message"):
        then["message"] = row.outputs["message"]
    if row.outputs.get("warnings"):
        then["warnings"] = list(row.outputs["warnings"])
    where = f"rule #{row.number}" + (f" (row id {row.row_id})" if row.row_id else "")
    data: dict[str, Any] = {"id": rule_id, **({"when": when} if when else {}), "then": then,
                            "source": f"JDM {source_name(source)}, {where}" +
                                      (f": {row.description}" if row.description else "")}
    examples = []
    for _, order in won[:1]:
        full = {name: _number(v) for name, v in order.items()}
        for name, fact in facts.items():
            if fact.required and name not in full:
                full[name] = filler({"type": fact.type, "values": fact.values, "min": fact.minimum,
                                     "max": fact.maximum})
        examples.append({"order": full, "expect": row.outputs["action"], "rule": rule_id})
    data["examples"] = examples
    return data


def _dump(data: dict[str, Any], source: str, rows: int, unique: bool) -> str:
    for rule in data["rules"]:
        data["actions"].setdefault(rule["then"]["action"], "")
    header = [
        f"Imported from {source_name(source)} by `cancel-rules import --format jdm`: a GoRules JDM decision table "
        f"of {rows} rows, hit policy {'collect (here: unique)' if unique else 'first'}.",
        "It decides normalized facts as ZEN decides the table: enum codes as the table spells them, numbers; no "
        "aliases or defaults.",
        "Each rule's example is an order it wins, computed from the table (none: the row never decides an order).",
    ]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110, default_flow_style=False)
    return "".join(f"# {line}\n" for line in header) + body


def _load(text: str, source: str, load: Callable[[Path], Policy], rows: dict[str, Row]) -> Policy:
    """Load the YAML as any policy file is loaded (its examples run), then name the table as its source."""
    with tempfile.TemporaryDirectory(prefix="cancel-rules-jdm-") as folder:
        path = Path(folder) / f"{source_name(source)}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            policy = load(path)
        except RuleError as exc:  # a bug of this importer: say so with the rows the rules came from
            raise JdmError([JdmProblem(source, f"the policy made from the table does not load: {p.message}",
                                       rows[p.rule_id].number if p.rule_id in rows else None,
                                       rows[p.rule_id].row_id if p.rule_id in rows else None)
                            for p in exc.problems]) from None
    spec = replace(policy.spec, path=source, sources=((source, text),))
    return replace(policy, spec=spec, compiled=compile_policy(spec))
