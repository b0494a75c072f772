"""A decision table's rows as our rules, deciding every normalized order as ZEN decides the table.

What a cell accepts is computed exactly (engine.jdm.truth) and written with our operators: a cell that also
accepts 'not given' (`!= 'a'` does, in ZEN) or two separate ranges becomes one rule per part, in place. Rows that
share a `rule_id` output and differ only in an enum column and thresholds equal to a parameter they output are
joined back into one rule reading a keyed parameter (the inverse of the export). Anything else is a located
JdmProblem; nothing is approximated. Facts are inferred: a column compared with text is an enum of the values
seen (and of the input schema's `enum`), one compared with numbers a number.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ..errors import JdmProblem
from ..operators import OPERATORS
from ..template import PLACEHOLDER, PLACEHOLDER_BODY
from .operators import EVERY_NUMBER, JDM_OPERATORS, number_tests, satisfiable, text_tests
from .table import PARAMETER_FIELD, Column, Fact, Reader, Row
from .truth import number_truth, text_truth

MAX_PARTS = 64  # rules one row may become (a product of the parts of its cells)
# Operators a cell may be read back as: the table's, where this branch's rule language has them.
READABLE = tuple(op for op in JDM_OPERATORS if op in OPERATORS)


@dataclass
class Keyed:
    """A parameter output whose value follows an enum column: a keyed parameter."""

    name: str
    by: str
    values: dict[str, float]
    default: float | None

    def lookup(self, key: str | None) -> float | None:
        return self.default if key is None else self.values.get(key, self.default)


def row_truths(row: Row, facts: dict[str, Fact]) -> None:
    """What each fact's cells (all of which must hold) accept in this row."""
    for name, cells in row.nodes.items():
        if name not in facts:
            continue
        node = cells[0][1] if len(cells) == 1 else ("and", [n for _, n in cells])
        fact = facts[name]
        if fact.type == "number":
            row.truths[name] = number_truth(node)
        else:
            row.truths[name] = text_truth(node, tuple(fact.values))


def fact_parts(truth: Any, fact: Fact) -> list[list[tuple[str, Any]]] | None:
    """The truth of one fact's cells as alternatives of our tests ([[]]: any value; None: no value at all)."""
    accepted, null = truth
    null = null and fact.optional
    everything = accepted == EVERY_NUMBER if fact.type == "number" else accepted == frozenset(fact.values)
    if everything and (null or not fact.optional):
        return [[]]
    parts: list[list[tuple[str, Any]]] = []
    if accepted:
        if fact.type == "number":
            parts += number_tests(accepted, READABLE) or []
        else:
            parts.append([text_tests(accepted, tuple(fact.values), READABLE)])
    if null:
        parts.append([("given", False)])
    return parts or None


def row_parts(row: Row, facts: dict[str, Fact], reader: Reader) -> str | None:
    """The rules a row becomes (row.parts); a warning when it becomes none (it can never match)."""
    options = []
    for name, truth in row.truths.items():
        parts = fact_parts(truth, facts[name])
        if parts is None:
            return str(JdmProblem(reader.source, "never matches an order: the cell accepts no value, given or not",
                                  row.number, row.row_id, row.nodes[name][0][0].label))
        options.append([(name, p) for p in parts])
    count = 1
    for option in options:
        count *= len(option)
    if count > MAX_PARTS:
        reader.problem(f"the row's cells accept 'not given' or separate ranges in ways that need {count} rules "
                       f"(at most {MAX_PARTS})", row)
        return None
    row.parts = [{name: tests for name, tests in combo if tests} for combo in itertools.product(*options)]
    return None


# --- parameters and rules -----------------------------------------------------------------------------------


def parameters(rows: list[Row], facts: dict[str, Fact], outputs: list[Column], reader: Reader
               ) -> dict[str, float | Keyed]:
    """Each parameters.<name> output: one value everywhere (a parameter), or one per value of an enum fact."""
    out: dict[str, float | Keyed] = {}
    for column in outputs:
        match = PARAMETER_FIELD.match(column.field)
        if not match:
            continue
        name = match.group(1)
        if name in facts:
            reader.problem(f"parameter '{name}' has the name of a fact", column=column.label)
            continue
        setting = [r for r in rows if name in r.parameters]
        values = {r.parameters[name] for r in setting}
        if not setting:
            continue
        if len(values) == 1:
            out[name] = values.pop()
            continue
        keyed = next((k for b in facts if facts[b].type == "enum" if (k := _keyed(name, b, setting, facts))), None)
        if keyed is None:
            shown = ", ".join(f"rule #{r.number}: {r.parameters[name]:g}" for r in setting[:3])
            reader.problem(f"parameter '{name}' varies across rows ({shown}, ...) and not as one value per value "
                           "of an enum column", column=column.label)
            continue
        missing = [v for v in facts[keyed.by].values if v not in keyed.values]
        if missing and keyed.default is None:
            reader.problem(f"parameter '{name}' follows '{keyed.by}' but no row gives it for: {', '.join(missing)} "
                           "(and no row gives it for 'not given')", column=column.label)
            continue
        out[name] = keyed
    return out


def _keyed(name: str, by: str, rows: list[Row], facts: dict[str, Fact]) -> Keyed | None:
    values: dict[str | None, float] = {}
    for row in rows:
        accepted, null = row.truths.get(by, (frozenset(facts[by].values), True))
        keys = [*accepted, *([None] if null and facts[by].optional else [])]
        if len(keys) == len(facts[by].values) + facts[by].optional:
            return None  # the row does not restrict the key
        for key in keys:
            if values.setdefault(key, row.parameters[name]) != row.parameters[name]:
                return None
    default = values.pop(None, None)
    return Keyed(name, by, {k: values[k] for k in facts[by].values if k in values}, default)


def rule_ids(rows: list[Row], reader: Reader) -> dict[int, str]:
    """Each row's rule id: its rule_id output (else row<n>), numbered .1, .2, ... where rows share one."""
    base = {r.number: r.outputs.get("rule_id") or f"row{r.number}" for r in rows}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    out = {}
    for row in rows:
        name = base[row.number]
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name}.{seen[name]}"
        out[row.number] = name
    taken: dict[str, int] = {}
    for row in rows:
        if out[row.number] in taken:
            reader.problem(f"the rule id '{out[row.number]}' is also rule #{taken[out[row.number]]}'s", row,
                           "rule_id")
        taken.setdefault(out[row.number], row.number)
    return out


def join(group: list[Row], facts: dict[str, Fact], params: dict[str, float | Keyed]
         ) -> dict[str, list[tuple[str, Any]]] | None:
    """The one rule that rows sharing a rule id come from (they differ in an enum key and in thresholds equal
    to a keyed parameter on that key), or None when they are not such rows."""
    if any(len(r.parts) != 1 for r in group):
        return None
    first = group[0]
    same = ("action", "message", "warnings")
    if any(tuple(r.outputs.get(k) for k in same) != tuple(first.outputs.get(k) for k in same) for r in group):
        return None
    names = dict.fromkeys(n for r in group for n in r.parts[0])
    varying = [n for n in names if len({repr(r.parts[0].get(n)) for r in group}) > 1]
    keys = [n for n in varying if facts[n].type == "enum"]
    if len(keys) != 1:
        return None
    key = keys[0]
    fact = facts[key]
    if any(key not in r.truths for r in group):
        return None
    sets = [(r.truths[key][0], r.truths[key][1] and fact.optional) for r in group]
    union: set[str | None] = set()
    for accepted, null in sets:
        part = set(accepted) | ({None} if null else set())
        if union & part:
            return None
        union |= part
    joined = {n: t for n, t in first.parts[0].items() if n not in varying}
    for name in varying:
        if name == key:
            continue
        if any(name not in r.parts[0] for r in group):
            return None
        tests = [r.parts[0][name] for r in group]
        if len({tuple(op for op, _ in t) for t in tests}) != 1:
            return None
        joined[name] = []
        for pos, (op, value) in enumerate(tests[0]):
            values = [t[pos][1] for t in tests]
            if JDM_OPERATORS[op].arity == "pair":  # each bound a constant or a keyed parameter of its own
                bounds = [_joined_operand([v[end] for v in values], key, sets, params) for end in (0, 1)]
                operand = None if None in bounds else tuple(bounds)
            else:
                operand = _joined_operand(values, key, sets, params) if JDM_OPERATORS[op].arity == "scalar" else \
                    value if all(repr(v) == repr(value) for v in values) else None
            if operand is None:
                return None
            joined[name].append((op, operand))
    # Values of the key outside the rows need excluding only where the joined tests could still pass there.
    everything = set(fact.values) | ({None} if fact.optional else set())
    needs = {k for k in everything - union if _could_match(joined, key, k, params, facts)}
    if needs:
        if None in union:
            return None  # one test cannot say "these values or not given"
        allowed = [v for v in fact.values if v not in needs]
        joined[key] = [("given", True)] if len(allowed) == len(fact.values) else \
            [text_tests(frozenset(allowed), tuple(fact.values), READABLE)]
    return {n: joined[n] for n in names if n in joined}


def _joined_operand(values: list[Any], key: str, sets: list[tuple[frozenset[str], bool]],
                    params: dict[str, float | Keyed]) -> Any:
    """One operand for the rows' values: the constant they share, else a reference to the keyed parameter (on
    the key) whose value for each row's key values is that row's value; None when neither."""
    if all(repr(v) == repr(values[0]) for v in values):
        return values[0]
    keyed = next((p for p in params.values() if isinstance(p, Keyed) and p.by == key
                  and all(p.lookup(k) == v for (acc, null), v in zip(sets, values, strict=True)
                          for k in [*acc, *([None] if null else [])])), None)
    return None if keyed is None else f"${keyed.name}"


def _resolved(operand: Any, value: str | None, params: dict[str, float | Keyed]) -> Any:
    """The operand with its parameter references resolved for this key value (None: a parameter has none)."""
    if isinstance(operand, tuple):
        items = tuple(_resolved(item, value, params) for item in operand)
        return None if None in items else items
    if isinstance(operand, str) and operand.startswith("$"):
        param = params[operand[1:]]
        return param.lookup(value) if isinstance(param, Keyed) else param
    return operand


def _could_match(tests: dict[str, list[tuple[str, Any]]], key: str, value: str | None,
                 params: dict[str, float | Keyed], facts: dict[str, Fact]) -> bool:
    """Whether the tests (keyed references resolved for this key value) can all pass for some order."""
    for name, items in tests.items():
        if name == key:
            continue
        resolved = []
        for op, operand in items:
            if (operand := _resolved(operand, value, params)) is None:
                return False
            resolved.append((op, operand))
        if not satisfiable(resolved, tuple(facts[name].values) if facts[name].type == "enum" else None):
            return False
    return True


def with_parameters(tests: dict[str, list[tuple[str, Any]]], row: Row, params: dict[str, float | Keyed]
                    ) -> dict[str, list[tuple[str, Any]]]:
    """A row's constants that equal a scalar parameter the row outputs become references to it."""
    def referenced(value: Any) -> Any:
        ref = next((p for p, v in row.parameters.items() if isinstance(params.get(p), float)
                    and isinstance(value, float) and v == value), None)
        return f"${ref}" if ref else value

    out: dict[str, list[tuple[str, Any]]] = {}
    for name, items in tests.items():
        out[name] = []
        for op, value in items:
            arity = JDM_OPERATORS[op].arity
            out[name].append((op, referenced(value) if arity == "scalar" else
                              tuple(referenced(v) for v in value) if arity == "pair" else value))
    return out


def check_messages(rows: list[Row], facts: dict[str, Fact], params: dict[str, float | Keyed], reader: Reader,
                   column: str) -> None:
    for row in rows:
        message = row.outputs.get("message") or ""
        for placeholder in PLACEHOLDER.finditer(message):
            match = PLACEHOLDER_BODY.match(placeholder.group(1))
            if match is None:
                reader.problem(f"placeholder '{placeholder.group(0)}' must be '{{name}}' or '{{name - name}}'",
                               row, column)
                continue
            for name in filter(None, match.groups()):
                param = params.get(name)
                unset = isinstance(param, Keyed) and param.default is None and \
                    row.truths.get(param.by, (None, None))[0] == frozenset() and row.truths[param.by][1]
                if name in params and name not in row.parameters and not unset:  # (unset: shown as not given)
                    reader.problem(f"placeholder '{{{name}}}' names parameter '{name}', which this row does not "
                                   "output", row, column)
                elif name not in params and name not in facts:
                    reader.problem(f"placeholder '{{{name}}}' names no input column, schema field or parameter",
                                   row, column)
                elif match.group(2) and name in facts and facts[name].type != "number":
                    reader.problem(f"placeholder '{placeholder.group(0)}' subtracts '{name}', which is not a number",
                                   row, column)
