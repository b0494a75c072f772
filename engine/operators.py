"""The rule language's operators: how each one tests a fact, and the result of one condition."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import Condition, ParamRef, PolicySpec
from .text import format_value

OP_SYMBOLS = {"eq": "=", "ne": "≠", "in": "in", "not_in": "not in", "lt": "<", "lte": "≤", "gt": ">",
              "gte": "≥", "between": "between", "given": "given"}


@dataclass(frozen=True)
class ConditionResult:
    fact: str
    op: str
    expected: Any
    actual: Any
    passed: bool
    parameter: str | None = None

    def __str__(self) -> str:
        expected = f"{self.parameter}={format_value(self.expected)}" if self.parameter else format_value(self.expected)
        mark = "✓" if self.passed else "✗"
        return f"{mark} {self.fact} {OP_SYMBOLS[self.op]} {expected} (actual: {format_value(self.actual)})"


_TESTS = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "lte": operator.le, "gt": operator.gt,
    "gte": operator.ge, "in": lambda a, e: a in e, "not_in": lambda a, e: a not in e,
    "between": lambda a, e: e[0] <= a <= e[1],
}


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
    if cond.op == "given":
        passed = (actual is not None) == expected
    elif actual is None or expected is None or (isinstance(expected, tuple) and None in expected):
        passed = False
    else:
        passed = _TESTS[cond.op](actual, expected)
    parameter = _parameter(cond.value)
    return ConditionResult(cond.fact, cond.op, expected, actual, passed, parameter)
