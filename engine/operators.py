"""The rule language's operators, one row each: how a condition is written, tested, compiled and shown.

Every module that needs to know an operator reads its row: the loader (operand shape, enum facts), the compiler
(durable_rules form), `check` (the Python test, the reference the engine must agree with), the fact space (whether
its constants cut a number fact into cells) and the explanations (symbol, unit). A new operator is one new row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .model import Condition, ParamRef, PolicySpec
from .text import format_value

OperatorName = Literal["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "not_between", "given"]
# "scalar": one constant; "list": one or more; "pair": [low, high] with low <= high; "flag": true or false
Operand = Literal["scalar", "list", "pair", "flag"]
Json = dict[str, Any]


@dataclass(frozen=True)
class Operator:
    """One operator of the rule language."""

    name: OperatorName
    operand: Operand
    on_enum: bool  # allowed on enum facts (else on numbers only)
    symbol: str  # how explanations show it
    # (actual, expected), both given and parameters resolved; a "flag" operator gets whether the fact is given
    test: Callable[[Any, Any], bool]
    engine: Callable[[str, Any], Json]  # durable_rules' JSON form for (the fact's engine name, the constant)
    cuts: bool = True  # its constants cut a number fact into cells (a point each, open intervals between)
    shows_unit: bool = True  # explanations put the fact's unit after the constant


def any_of(terms: list[Json]) -> Json:
    """durable_rules' 'or' of terms (a single term as itself)."""
    return terms[0] if len(terms) == 1 else {"$or": terms}


def all_of(terms: list[Json]) -> Json:
    """durable_rules' 'and' of terms (a single term as itself)."""
    return terms[0] if len(terms) == 1 else {"$and": terms}


def _compare(word: str) -> Callable[[str, Any], Json]:
    return lambda fact, value: {word: {fact: value}}


_ROWS = (
    Operator("eq", "scalar", True, "=", operator.eq, lambda f, v: {f: v}, shows_unit=False),
    Operator("ne", "scalar", True, "≠", operator.ne, _compare("$neq"), shows_unit=False),
    Operator("in", "list", True, "in", lambda a, e: a in e, lambda f, v: any_of([{f: x} for x in v]),
             shows_unit=False),
    Operator("not_in", "list", True, "not in", lambda a, e: a not in e,
             lambda f, v: all_of([{"$neq": {f: x}} for x in v]), shows_unit=False),
    Operator("lt", "scalar", False, "<", operator.lt, _compare("$lt")),
    Operator("lte", "scalar", False, "≤", operator.le, _compare("$lte")),
    Operator("gt", "scalar", False, ">", operator.gt, _compare("$gt")),
    Operator("gte", "scalar", False, "≥", operator.ge, _compare("$gte")),
    Operator("between", "pair", False, "between", lambda a, e: e[0] <= a <= e[1],
             lambda f, v: all_of([{"$gte": {f: v[0]}}, {"$lte": {f: v[1]}}])),
    Operator("not_between", "pair", False, "not between", lambda a, e: not e[0] <= a <= e[1],
             lambda f, v: any_of([{"$lt": {f: v[0]}}, {"$gt": {f: v[1]}}])),
    Operator("given", "flag", True, "given", operator.eq, lambda f, v: {"$ex" if v else "$nex": {f: 1}},
             cuts=False),
)
OPERATORS: Mapping[str, Operator] = {row.name: row for row in _ROWS}
ENUM_OPERATORS = tuple(name for name, row in OPERATORS.items() if row.on_enum)


@dataclass(frozen=True)
class ConditionResult:
    fact: str
    op: OperatorName
    expected: Any
    actual: Any
    passed: bool
    parameter: str | None = None

    def __str__(self) -> str:
        expected = f"{self.parameter}={format_value(self.expected)}" if self.parameter else format_value(self.expected)
        mark = "✓" if self.passed else "✗"
        return f"{mark} {self.fact} {OPERATORS[self.op].symbol} {expected} (actual: {format_value(self.actual)})"


def _parameter(value: Any) -> str | None:
    if isinstance(value, ParamRef):
        return value.name
    if isinstance(value, tuple):
        return next((r.name for r in value if isinstance(r, ParamRef)), None)
    return None


def check(spec: PolicySpec, cond: Condition, facts: Mapping[str, Any]) -> ConditionResult:
    """Evaluate one condition in Python with the engine's semantics: a fact not given fails every test
    but `given: false`."""
    actual = facts.get(cond.fact)
    expected = spec.resolve(cond.value, facts)
    row = OPERATORS[cond.op]
    if row.operand == "flag":  # the one test of whether the fact is given
        passed = row.test(actual is not None, expected)
    elif actual is None or expected is None or (isinstance(expected, tuple) and None in expected):
        passed = False
    else:
        passed = row.test(actual, expected)
    return ConditionResult(cond.fact, cond.op, expected, actual, passed, _parameter(cond.value))
