"""Export a policy as one GoRules JDM decision table (input node -> table -> output node) that ZEN runs with
our answers: inputs are the normalized facts, one row per rule (a rule reading a keyed parameter gets one row
per value of its key that shares a threshold, and one for the key not given), in firing order."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import RuleError, RuleProblem
from ..model import KeyedParameter, ParamRef, PolicySpec, Rule
from ..operators import check
from ..template import PLACEHOLDER, PLACEHOLDER_BODY
from .operators import JDM_OPERATORS, cell_text, satisfiable, zen_number, zen_string

CONTENT_TYPE = "application/vnd.gorules.decision"
HIT_POLICY = {"first": "first", "unique": "collect"}  # ZEN has no 'unique': collect, and exactly one row must match
OUTPUTS = ("action", "rule_id", "message_template", "warnings")
FIELD = re.compile(r"^[A-Za-z_]\w*$")
KEYWORDS = ("and", "or", "not", "in", "null", "true", "false")


def read_parameters(spec: PolicySpec, rule: Rule) -> list[str]:
    """The parameters a rule reads, in declaration order: in its conditions and in its message."""
    names = {item.name for c in rule.conditions
             for item in (c.value if isinstance(c.value, tuple) else (c.value,)) if isinstance(item, ParamRef)}
    for placeholder in PLACEHOLDER.finditer(" ".join(rule.message.split())):
        match = PLACEHOLDER_BODY.match(placeholder.group(1))
        names |= {n for n in (match.groups() if match else ()) if n and n in spec.parameters}
    return [name for name in spec.parameters if name in names]


def _keys(spec: PolicySpec, rule: Rule) -> list[str]:
    """The facts the keyed parameters this rule reads are keyed by: its rows are split along them."""
    bys = {p.by for name in read_parameters(spec, rule) if isinstance(p := spec.parameters[name], KeyedParameter)}
    return [name for name in spec.facts if name in bys]


def _domain(spec: PolicySpec, fact: str) -> list[str | None]:
    values: list[str | None] = list(spec.facts[fact].values)
    return values + [None] if spec.facts[fact].optional else values


def rule_rows(spec: PolicySpec, rule: Rule) -> list[tuple[dict[str, list[tuple[str, Any]]], dict[str, float]]]:
    """The rows of one rule: per fact the tests it makes (constants resolved), and the parameter values read.

    Along the keys (the facts keyed parameters are keyed by), values that resolve every test alike share a row;
    a key value its own tests refuse, or for which a parameter has no value, gets no row (the rule cannot match
    there). With two keys, one row per combination."""
    keys = _keys(spec, rule)
    groups: dict[Any, list[tuple[str | None, ...]]] = {}
    for combo in itertools.product(*(_domain(spec, k) for k in keys)):
        facts = dict(zip(keys, combo, strict=True))
        if not all(check(spec, c, facts).passed for c in rule.conditions if c.fact in keys):
            continue
        tests = tuple((c.fact, c.op, spec.resolve(c.value, facts)) for c in rule.conditions if c.fact not in keys)
        params = tuple((n, spec.resolve(ParamRef(n), facts)) for n in read_parameters(spec, rule))
        if any(v is None or (isinstance(v, tuple) and None in v) for _, _, v in tests):
            continue  # the parameter has no value for this key: the condition fails, as check() says
        # A key not given never shares a row with given values: one cell cannot say "in [...] or not given".
        shared = (tests, params, None in combo) if len(keys) == 1 else (tests, params, combo)
        groups.setdefault(shared, []).append(combo)
    rows = []
    for (tests, params, _), combos in groups.items():
        cells: dict[str, list[tuple[str, Any]]] = {}
        for fact, op, value in tests:
            cells.setdefault(fact, []).append((op, value))
        for i, key in enumerate(keys):
            values = list(dict.fromkeys(c[i] for c in combos))
            if values == [None]:
                cells[key] = [("given", False)]
            elif len(values) < len(spec.facts[key].values):
                cells[key] = [("eq", values[0])] if len(values) == 1 else [("in", tuple(values))]
            elif spec.facts[key].optional:  # every value of the key, but not 'not given'
                cells[key] = [("given", True)]
        # A key value can leave a rule's tests contradictory (a refinement `>= 21` under a window `< 7`): no row.
        if all(satisfiable(tests, spec.facts[f].values if spec.facts[f].type == "enum" else None)
               for f, tests in cells.items()):
            # A parameter with no value here (key not given, no default) is left out: a message shows "not given".
            rows.append((cells, {n: v for n, v in params if v is not None}))
    return rows


def input_schema(spec: PolicySpec) -> dict[str, Any]:
    """JSON Schema of the normalized facts: ZEN checks inputs with it, and an import reads types and values."""
    properties: dict[str, Any] = {}
    for name, fact in spec.facts.items():
        if fact.type == "enum":  # each value a const with its label as title: JSON Schema's labelled enum
            prop: dict[str, Any] = {"type": "string", "oneOf": [
                {"const": v, **({"title": fact.labels[v]} if v in fact.labels else {})} for v in fact.values]}
        elif fact.type == "number":
            prop = {"type": "number"}
            prop.update({k: v for k, v in (("minimum", fact.min), ("maximum", fact.max)) if v is not None})
        else:
            prop = {"type": "string"}
        if fact.description:
            prop["description"] = fact.description
        properties[name] = prop
    # Normalized facts always hold the required facts and those with a default.
    required = [n for n, f in spec.facts.items() if f.required or f.default is not None]
    return {"type": "object", "properties": properties, "required": required}


def to_jdm(spec: PolicySpec) -> dict[str, Any]:
    """The policy as a JDM document: one decision table over the normalized facts (Policy.normalize gives them;
    timestamps stay outside), outputs action, rule_id, message_template (placeholders unfilled), warnings and
    parameters.<name> (the values the row's rule reads), hit policy first (unique: collect)."""
    inputs = [name for name in spec.facts if name in spec.read_facts()]
    params = [name for name in spec.parameters if any(name in read_parameters(spec, r) for r in spec.rules)]
    outputs = [o for o in OUTPUTS if o != "warnings" or any(r.warnings for r in spec.rules)]
    # ZEN reads a column's field as a path expression: 'a.b' would be nested, 'null' a constant.
    problems = [RuleProblem(spec.path, 1, 1, f"cannot export to JDM: fact {name!r} is not a plain name ZEN can "
                                             "read as a field (letters, digits, '_'; not a keyword)")
                for name in inputs if not FIELD.match(name) or name in KEYWORDS]
    problems += [RuleProblem(spec.path, 1, 1, f"cannot export to JDM: parameter {name!r} is not a plain name")
                 for name in params if not FIELD.match(name)]
    problems += _unexportable(spec)
    if problems:
        raise RuleError(problems)
    rows = []
    for rule in spec.ranked_rules():
        expanded = rule_rows(spec, rule)
        for k, (cells, values) in enumerate(expanded, start=1):
            try:
                row = {"_id": rule.id if len(expanded) == 1 else f"{rule.id}#{k}",
                       "_description": f"{rule.id} (priority {rule.priority}): {rule.source}"}
                row.update({f"in_{f}": cell_text(cells[f]) if f in cells else "" for f in inputs})
                row.update(_output_cells(rule, values, outputs, params))
            except ValueError as exc:  # a constant ZEN cannot hold exactly
                problems.append(RuleProblem(spec.path, rule.line, rule.col, f"cannot export to JDM: {exc}", rule.id))
                break
            rows.append(row)
    if problems:
        raise RuleError(problems)
    table = {
        "hitPolicy": HIT_POLICY[spec.hit_policy],
        "inputs": [{"id": f"in_{f}", "name": f, "field": f} for f in inputs],
        "outputs": [{"id": f"out_{o}", "name": o, "field": o} for o in outputs]
                   + [{"id": f"out_parameters_{p}", "name": p, "field": f"parameters.{p}"} for p in params],
        "rules": rows,
        "passThrough": False, "inputField": None, "outputPath": None, "executionMode": "single",
    }
    schema = json.dumps(input_schema(spec), ensure_ascii=False)
    return {
        "contentType": CONTENT_TYPE,
        "nodes": [
            {"id": "input", "type": "inputNode", "name": "normalized facts", "position": {"x": 0, "y": 0},
             "content": {"schema": schema}},
            {"id": "table", "type": "decisionTableNode", "name": spec.name, "position": {"x": 300, "y": 0},
             "content": table},
            {"id": "output", "type": "outputNode", "name": "decision", "position": {"x": 600, "y": 0},
             "content": {"schema": ""}},
        ],
        "edges": [
            {"id": "input-table", "sourceId": "input", "targetId": "table", "type": "edge"},
            {"id": "table-output", "sourceId": "table", "targetId": "output", "type": "edge"},
        ],
    }


def _unexportable(spec: PolicySpec) -> list[RuleProblem]:
    """A condition whose operator has no ZEN form (an operator of engine.operators newer than JDM_OPERATORS)."""
    return [RuleProblem(spec.path, c.line or rule.line, c.col or rule.col,
                        f"cannot export to JDM: operator {c.op!r} has no form in a ZEN cell", rule.id)
            for rule in spec.rules for c in rule.conditions if c.op not in JDM_OPERATORS]


def _output_cells(rule: Rule, values: Mapping[str, float], outputs: list[str], params: list[str]) -> dict[str, str]:
    cells = {"out_action": zen_string(rule.action), "out_rule_id": zen_string(rule.id),
             "out_message_template": zen_string(" ".join(rule.message.split())) if rule.message else ""}
    if "warnings" in outputs:
        cells["out_warnings"] = ("[" + ", ".join(zen_string(w) for w in rule.warnings) + "]") if rule.warnings else ""
    cells.update({f"out_parameters_{p}": zen_number(values[p]) if p in values else "" for p in params})
    return cells

