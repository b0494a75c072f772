"""The rule language's operators (engine.operators) in GoRules ZEN's syntax and back, and the sets of values
they accept (to read a ZEN cell back as one of them)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..operators import OPERATORS, Operand, Operator, OperatorName

INF = math.inf
# A set of numbers as sorted, disjoint, non-touching intervals (low, low included, high, high included); an
# infinite end is never included. What a test accepts among numbers; 'not given' is kept apart.
Interval = tuple[float, bool, float, bool]
Numbers = tuple[Interval, ...]
EVERY_NUMBER: Numbers = ((-INF, False, INF, False),)
# ZEN reads a number into a decimal with at most 28 digits after the point: a constant needing more would not be
# the number our engine compares with.
ZEN_DECIMAL_PLACES = 28


def zen_string(text: str) -> str:
    """A ZEN string literal of text. ZEN strings have no escapes: quote with a mark the text lacks, else join
    pieces (each quoted with the other mark) with '+'."""
    for mark in ("'", '"'):
        if mark not in text:
            return f"{mark}{text}{mark}"
    pieces = [f'"{p}"' if p == "'" else f"'{p}'" for p in re.split(r"(')", text) if p]
    return "(" + " + ".join(pieces) + ")"


def zen_number(value: float) -> str:
    """A ZEN number literal that ZEN reads as exactly the double our engine compares with (ValueError if none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    text = str(value) if isinstance(value, int) else repr(float(value))
    exponent = Decimal(text).as_tuple().exponent  # an int: the number is finite
    if isinstance(exponent, int) and exponent < -ZEN_DECIMAL_PLACES:
        raise ValueError(f"{text} has more than {ZEN_DECIMAL_PLACES} decimal places, past ZEN's decimals")
    return text


def zen_literal(value: Any) -> str:
    return zen_string(value) if isinstance(value, str) else zen_number(value)


def _items(values: Any) -> str:
    return ", ".join(zen_literal(v) for v in values)


def merged(intervals: list[Interval]) -> Numbers:
    """Sorted, with overlapping or touching intervals joined."""
    out: list[Interval] = []
    for lo, lo_in, hi, hi_in in sorted(intervals, key=lambda i: (i[0], not i[1])):
        if out:
            plo, plo_in, phi, phi_in = out[-1]
            if lo < phi or (lo == phi and (phi_in or lo_in)):
                if hi > phi or (hi == phi and hi_in):
                    out[-1] = (plo, plo_in, hi, hi_in)
                continue
        out.append((lo, lo_in, hi, hi_in))
    return tuple(out)


def intersect(a: Numbers, b: Numbers) -> Numbers:
    out: list[Interval] = []
    for alo, alo_in, ahi, ahi_in in a:
        for blo, blo_in, bhi, bhi_in in b:
            lo, lo_in = max((alo, not alo_in), (blo, not blo_in))
            hi, hi_in = min((ahi, ahi_in), (bhi, bhi_in))
            lo_in = not lo_in
            if lo < hi or (lo == hi and lo_in and hi_in):
                out.append((lo, lo_in, hi, hi_in))
    return merged(out)


def points(values: Any) -> Numbers:
    return merged([(float(v), True, float(v), True) for v in values])


def complement(numbers: Numbers) -> Numbers:
    out: list[Interval] = []
    lo, lo_in = -INF, False
    for a, a_in, b, b_in in numbers:
        if lo < a or (lo == a and lo_in and not a_in):
            out.append((lo, lo_in, a, not a_in))
        lo, lo_in = b, not b_in
    if lo < INF:
        out.append((lo, lo_in, INF, False))
    return tuple(out)


@dataclass(frozen=True)
class JdmOperator:
    """One operator of the rule language (its row of engine.operators) in a ZEN cell, and which values it accepts
    (to read a cell back as it)."""

    row: Operator
    expression: Callable[[Any], str]  # the test on `$` in ZEN's standard syntax, for a resolved operand
    null_safe: bool  # ZEN's test is false (neither true nor an error) when `$` is null
    numbers: Callable[[Any], Numbers]  # the numbers it accepts
    # the enum values (of a domain) it accepts: for an operator the rule language allows on enums
    texts: Callable[[Any, tuple[str, ...]], frozenset[str]] | None = None
    shorthand: Callable[[Any], str] | None = None  # ZEN's unary-test form, used when the test stands alone

    @property
    def name(self) -> OperatorName:
        return self.row.name

    @property
    def arity(self) -> Operand:
        return self.row.operand


def _rows(*forms: tuple[OperatorName, Any]) -> dict[str, JdmOperator]:
    return {name: JdmOperator(OPERATORS[name], *form) for name, form in forms}


# Each operator of engine.operators with its ZEN form. An operator without one is refused on export with the
# rule's location, and never read back from a cell (tests/test_jdm.py checks that every operator has one).
JDM_OPERATORS: Mapping[str, JdmOperator] = _rows(
    ("eq", (lambda v: f"$ == {zen_literal(v)}", True, lambda v: points([v]),
            lambda v, d: frozenset([v]) & frozenset(d), zen_literal)),
    ("ne", (lambda v: f"$ != {zen_literal(v)}", False, lambda v: complement(points([v])),
            lambda v, d: frozenset(d) - {v})),
    ("in", (lambda v: f"$ in [{_items(v)}]", True, points, lambda v, d: frozenset(v) & frozenset(d), _items)),
    ("not_in", (lambda v: f"$ not in [{_items(v)}]", False, lambda v: complement(points(v)),
                lambda v, d: frozenset(d) - frozenset(v))),
    ("lt", (lambda v: f"$ < {zen_number(v)}", False, lambda v: ((-INF, False, v, False),))),
    ("lte", (lambda v: f"$ <= {zen_number(v)}", False, lambda v: ((-INF, False, v, True),))),
    ("gt", (lambda v: f"$ > {zen_number(v)}", False, lambda v: ((v, False, INF, False),))),
    ("gte", (lambda v: f"$ >= {zen_number(v)}", False, lambda v: ((v, True, INF, False),))),
    ("between", (lambda v: f"$ in [{zen_number(v[0])}..{zen_number(v[1])}]", False,
                 lambda v: ((v[0], True, v[1], True),))),
    ("not_between", (lambda v: f"$ not in [{zen_number(v[0])}..{zen_number(v[1])}]", False,
                     lambda v: complement(((v[0], True, v[1], True),)))),
    ("given", (lambda v: "$ != null" if v else "$ == null", True, lambda v: EVERY_NUMBER if v else (),
               lambda v, d: frozenset(d) if v else frozenset())),
)
# When several operators accept the same values, the first of these reads back (then the shortest list).
PREFERENCE = ("given", "eq", "ne", "lt", "lte", "gt", "gte", "between", "not_between", "in", "not_in")


def cell_text(tests: list[tuple[str, Any]]) -> str:
    """The ZEN cell for the tests one rule makes on one fact, all of which must hold. A test that is not
    null-safe gets a 'given' guard first: ZEN raises on `null >= 24` (and skips the row in a table)."""
    missing = [op for op, _ in tests if op not in JDM_OPERATORS]
    if missing:
        raise ValueError(f"operator {missing[0]!r} has no form in a ZEN cell")
    rows = [(JDM_OPERATORS[op], value) for op, value in tests]
    if len(rows) == 1 and rows[0][0].shorthand is not None:
        return rows[0][0].shorthand(rows[0][1])
    parts = [row.expression(value) for row, value in rows]
    guarded = any(row.name == "given" and value for row, value in rows)
    if not guarded and not all(row.null_safe for row, _ in rows):
        parts.insert(0, "$ != null")
    return " and ".join(parts)


def satisfiable(tests: list[tuple[str, Any]], domain: tuple[str, ...] | None) -> bool:
    """Whether some value (or 'not given') passes all these tests on one fact (domain: an enum's values, or None
    for a number)."""
    if all(op == "given" and not value for op, value in tests):
        return True  # only 'not given' tests: null passes
    if any(op == "given" and not value for op, value in tests):
        return False  # 'not given' and a test that fails on null
    if domain is None:
        accepted = EVERY_NUMBER
        for op, value in tests:
            accepted = intersect(accepted, JDM_OPERATORS[op].numbers(value))
        return bool(accepted)
    values = frozenset(domain)
    for op, value in tests:
        texts = JDM_OPERATORS[op].texts  # an operator not allowed on enums accepts no value of one
        values &= texts(value, domain) if texts is not None else frozenset()
    return bool(values)


def number_tests(numbers: Numbers, operators: tuple[str, ...]) -> list[list[tuple[str, Any]]] | None:
    """The numbers (not null) as our tests: [[one test]] when one operator accepts exactly them, [[low bound,
    high bound]] for one interval, else one alternative per interval (or None for no number at all)."""
    if not numbers:
        return None
    ends = sorted({e for lo, _, hi, _ in numbers for e in (lo, hi) if math.isfinite(e)})
    found = _best([(op, c) for op in operators
                   for c in _candidates(JDM_OPERATORS[op].arity, ends)
                   if JDM_OPERATORS[op].numbers(c) == numbers])
    if found:
        return [[found]]
    out = []
    for lo, lo_in, hi, hi_in in numbers:
        bounds = []
        if math.isfinite(lo):
            bounds.append(("gte" if lo_in else "gt", lo))
        if math.isfinite(hi):
            bounds.append(("lte" if hi_in else "lt", hi))
        out.append(bounds)
    return out


def text_tests(values: frozenset[str], domain: tuple[str, ...], operators: tuple[str, ...]
               ) -> tuple[str, Any]:
    """The enum values (a non-empty subset of domain) as one of our tests (the list of them, if no other test
    of these operators accepts exactly them)."""
    ordered = [v for v in domain if v in values]
    others = [v for v in domain if v not in values]
    candidates: dict[str, list[tuple[Any, ...]]] = {
        "scalar": [(v,) for v in domain], "list": [tuple(ordered), tuple(others)], "flag": [(True,)]}
    found = []
    for op in operators:
        texts, arity = JDM_OPERATORS[op].texts, JDM_OPERATORS[op].arity
        if texts is None:
            continue
        for c in candidates.get(arity, []):
            operand = c[0] if arity in ("scalar", "flag") else c
            if c and texts(operand, domain) == values:
                found.append((op, operand))
    return _best(found) or ("in", tuple(ordered))


def _candidates(arity: Operand, ends: list[float]) -> list[Any]:
    if arity == "scalar":
        return ends
    if arity == "pair":
        return [(ends[0], ends[-1])] if len(ends) >= 2 else []
    if arity == "list":
        return [tuple(ends)] if len(ends) >= 2 else []
    return [True]


def _best(found: list[tuple[str, Any]]) -> tuple[str, Any] | None:
    if not found:
        return None
    return min(found, key=lambda t: (PREFERENCE.index(t[0]) if t[0] not in ("in", "not_in") else len(PREFERENCE),
                                     len(t[1]) if isinstance(t[1], tuple) else 0))
