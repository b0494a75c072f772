"""Read one rule of a policy file: its conditions (operands by the operator's shape), its message template and
its examples, every problem located."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import yaml

from .model import MAX_NUMBER, Condition, Example, FactSpec, ParamRef, Rule
from .operators import ENUM_OPERATORS, OPERATORS, Operator
from .template import check as check_template
from .text import alias_key, did_you_mean
from .yamlread import Reader, brief, exponent_hint, position, show_number, source_of

RULE_KEYS = ("id", "priority", "when", "then", "source", "examples", "description")
THEN_KEYS = ("action", "message", "warnings")
EXAMPLE_KEYS = ("order", "expect", "rule")
RULE_ID = re.compile(r"^[A-Za-z][\w.\-]*$")


def read_rule(node: yaml.Node, index: int, reader: Reader, facts: dict, params: dict, actions: Mapping[str, str]
              ) -> Rule | None:
    """One rule of the policy, or None when it has problems (each recorded in reader)."""
    # Name the rule in problems found while reading its keys (duplicate or unknown keys) too.
    reader.rule_id = _peek_id(node)
    spec = reader.mapping(node, f"rule #{index + 1}", RULE_KEYS)
    reader.rule_id = None
    rule_id = reader.text(spec["id"][1], "rule id") if "id" in spec else None
    if rule_id is None:
        if "id" not in spec:
            reader.problem(node, f"rule #{index + 1} has no 'id'")
        return None
    if not RULE_ID.match(rule_id):
        reader.problem(spec["id"][1], f"rule id '{rule_id}' must start with a letter and use only letters, "
                                      "digits, '_', '.', '-'")
    reader.rule_id = rule_id
    before = len(reader.problems)
    priority = 0
    if "priority" in spec:
        value = reader.scalar(spec["priority"][1])
        if isinstance(value, bool) or not isinstance(value, int):
            reader.problem(spec["priority"][1], f"priority must be a whole number, got {brief(value)}")
        else:
            priority = value
    conditions: list[Condition] = []
    if "when" in spec:
        for fact_name, (kn, vn) in reader.mapping(spec["when"][1], "when").items():
            conditions.extend(_conditions(fact_name, kn, vn, reader, facts, params))
    action, message = "", ""
    warnings: tuple[str, ...] = ()
    if "then" not in spec:
        reader.problem(node, "missing 'then' (with then.action)")
    else:
        then = reader.mapping(spec["then"][1], "then", THEN_KEYS)
        if "action" not in then:
            reader.problem(spec["then"][1], "missing then.action")
        else:
            action = str(reader.scalar(then["action"][1]))
            if action not in actions:
                reader.problem(then["action"][1], f"unknown action '{action}'", did_you_mean(action, actions))
        if "message" in then:
            message = str(reader.scalar(then["message"][1]))
            _locate_template_problems(message, then["message"][1], reader, facts, params)
        if "warnings" in then:
            warnings = tuple(str(reader.scalar(w)) for w in reader.sequence(then["warnings"][1], "warnings"))
    source = str(reader.scalar(spec["source"][1])) if "source" in spec else ""
    if not source:
        reader.problem(node, "missing 'source' (the guide step or fact the rule encodes)")
    examples = read_examples(spec["examples"][1], reader, actions) if "examples" in spec else ()
    if not examples and "examples" not in spec:
        reader.problem(node, "missing 'examples' (at least one order with its expected action)")
    reader.rule_id = None
    if len(reader.problems) > before:
        return None
    mark = node.start_mark
    return Rule(id=rule_id, priority=priority, index=index, conditions=tuple(conditions), action=action,
                message=message, warnings=warnings, source=source, examples=examples,
                line=mark.line + 1, col=mark.column + 1)


def _peek_id(node: yaml.Node) -> str | None:
    """The rule's id as written, if it is a plain scalar (read before the rule's keys are checked)."""
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.value == "id" and isinstance(vnode, yaml.ScalarNode):
                return vnode.value or None
    return None


def _conditions(fact_name: str, knode, vnode, reader: Reader, facts: dict, params: dict) -> list[Condition]:
    fact = facts.get(fact_name)
    if fact is None:
        reader.problem(knode, f"unknown fact '{fact_name}'", did_you_mean(fact_name, facts))
        return []
    if fact.type == "string":
        reader.problem(knode, f"fact '{fact_name}' is free text and cannot be used in a condition")
        return []
    ops = reader.mapping(vnode, f"condition on '{fact_name}'") if isinstance(vnode, yaml.MappingNode) \
        else {"eq": (vnode, vnode)}
    out = []
    for name, (opnode, argnode) in ops.items():
        op = OPERATORS.get(name)
        if op is None:
            reader.problem(opnode, f"unknown operator '{name}'", did_you_mean(name, OPERATORS))
            continue
        if fact.type == "enum" and not op.on_enum:
            reader.problem(opnode, f"operator '{name}' does not apply to enum fact '{fact_name}' "
                                   f"(use one of: {', '.join(ENUM_OPERATORS)})")
            continue
        value = _operand(op, argnode, fact, reader, params)
        if value is not None:
            mark = opnode.start_mark
            out.append(Condition(fact_name, op.name, value, mark.line + 1, mark.column + 1))
    return out


def _operand(op: Operator, node: yaml.Node, fact: FactSpec, reader: Reader, params: dict):
    """The constant(s) of one condition, read by the operator's operand shape."""
    if op.operand == "flag":
        value = reader.scalar(node)
        if not isinstance(value, bool):
            reader.problem(node, f"'{op.name}' takes true or false, got {brief(value)}")
            return None
        return value
    if op.operand == "scalar":
        return _constant(node, fact, reader, params)
    items = reader.sequence(node, f"operand of '{op.name}'")
    if op.operand == "pair" and len(items) != 2:
        reader.problem(node, f"'{op.name}' takes a list of two bounds [low, high]")
        return None
    if not items:
        reader.problem(node, f"'{op.name}' needs at least one value")
        return None
    values = tuple(_constant(item, fact, reader, params) for item in items)
    if any(v is None for v in values):
        return None
    if op.operand == "pair" and not any(isinstance(v, ParamRef) for v in values) and values[0] > values[1]:
        reader.problem(node, f"'{op.name}' bounds are reversed: {values[0]} > {values[1]}")
        return None
    return values


def _constant(node: yaml.Node, fact: FactSpec, reader: Reader, params: dict):
    value = reader.scalar(node)
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in params:
            reader.problem(node, f"unknown parameter '{name}'", did_you_mean(name, params))
            return None
        param = params[name]
        if param is None:  # its declaration is wrong, and reported there
            return None
        if fact.type == "enum":
            reader.problem(node, f"parameter '{name}' is a number; enum fact '{fact.name}' needs one of its values")
            return None
        return ParamRef(name)
    if fact.type == "enum":
        code = fact.aliases.get(alias_key(value)) if isinstance(value, str) else None
        if code is None:
            reader.problem(node, f"{brief(value)} is not a value of fact '{fact.name}'",
                           did_you_mean(value, fact.values))
        return code
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        reader.problem(node, f"fact '{fact.name}' is a number; got {brief(value)}{exponent_hint(value)}")
        return None
    if isinstance(value, float) and math.isinf(value):
        reader.problem(node, f"fact '{fact.name}' takes finite numbers; got {value}")
        return None
    if abs(value) > MAX_NUMBER:  # no order's fact can reach it (facts.number_value refuses larger numbers)
        reader.problem(node, f"fact '{fact.name}' takes numbers between {-MAX_NUMBER:g} and {MAX_NUMBER:g}; "
                             f"got {show_number(value)}")
        return None
    return value


def _locate_template_problems(message: str, node: yaml.Node, reader: Reader, facts: dict, params: dict) -> None:
    source, start, end = source_of(node)
    for written, problems in check_template(message, facts, params):
        # Locate the placeholder in the file's text (a folded or escaped message may not hold it verbatim).
        found = source.find(written, start, end)
        at = position(node, source, found) if found >= 0 else None
        start = found + 1 if found >= 0 else start
        for text, hint in problems:
            reader.problem(node, text, hint, at=at)


def read_examples(node: yaml.Node, reader: Reader, actions: Mapping[str, str]) -> tuple[Example, ...]:
    out = []
    for item in reader.sequence(node, "examples"):
        spec = reader.mapping(item, "example", EXAMPLE_KEYS)
        if "order" not in spec or "expect" not in spec:
            reader.problem(item, "an example needs 'order' and 'expect'")
            continue
        order = reader.plain(spec["order"][1])
        if not isinstance(order, dict):
            reader.problem(spec["order"][1], "example 'order' must be a mapping of facts")
            continue
        expect = str(reader.scalar(spec["expect"][1]))
        if expect not in actions:
            reader.problem(spec["expect"][1], f"example expects unknown action '{expect}'",
                           did_you_mean(expect, actions))
            continue
        rule = str(reader.scalar(spec["rule"][1])) if "rule" in spec else None
        mark = item.start_mark
        out.append(Example(order, expect, rule, mark.line + 1, mark.column + 1))
    return tuple(out)
