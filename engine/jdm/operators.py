"""Our operators in GoRules ZEN's syntax and back: one row per operator (made to move into `operators.py`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

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
    if Decimal(text).as_tuple().exponent < -ZEN_DECIMAL_PLACES:
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
    """How one operator reads in a ZEN cell, and which values it accepts (to read a cell back as it)."""

    name: str
    arity: str  # "one" constant, a "pair" [low, high], a "list", or a "flag" (true / false)
    expression: Callable[[Any], str]  # the test on `$` in ZEN's standard syntax, for a resolved operand
    null_safe: bool  # ZEN's test is false (neither true nor an error) when `$` is null
    numbers: Callable[[Any], Numbers] | None  # the numbers it accepts; None: it does not apply to numbers
    texts: Callable[[Any, tuple[str, ...]], frozenset[str]] | None  # the enum values (of a domain) it accepts
    shorthand: Callable[[Any], str] | None = None  # ZEN's unary-test form, used when the test stands alone


JDM_OPERATORS: dict[str, JdmOperator] = {op.name: op for op in (
    JdmOperator("eq", "one", lambda v: f"$ == {zen_literal(v)}", True,
                lambda v: points([v]), lambda v, d: frozenset([v]) & frozenset(d), zen_literal),
    JdmOperator("ne", "one", lambda v: f"$ != {zen_literal(v)}", False,
                lambda v: complement(points([v])), lambda v, d: frozenset(d) - {v}),
    JdmOperator("in", "list", lambda v: f"$ in [{_items(v)}]", True,
                points, lambda v, d: frozenset(v) & frozenset(d), _items),
    JdmOperator("not_in", "list", lambda v: f"$ not in [{_items(v)}]", False,
                lambda v: complement(points(v)), lambda v, d: frozenset(d) - frozenset(v)),
    JdmOperator("lt", "one", lambda v: f"$ < {zen_number(v)}", False, lambda v: ((-INF, False, v, False),), None),
    JdmOperator("lte", "one", lambda v: f"$ <= {zen_number(v)}", False, lambda v: ((-INF, False, v, True),), None),
    JdmOperator("gt", "one", lambda v: f"$ > {zen_number(v)}", False, lambda v: ((v, False, INF, False),), None),
    JdmOperator("gte", "one", lambda v: f"$ >= {zen_number(v)}", False, lambda v: ((v, True, INF, False),), None),
    JdmOperator("between", "pair", lambda v: f"$ in [{zen_number(v[0])}..{zen_number(v[1])}]", False,
                lambda v: ((v[0], True, v[1], True),), None),
    # A value outside the closed range [low, high]; the operator is issue 10's.
    JdmOperator("not_between", "pair", lambda v: f"$ not in [{zen_number(v[0])}..{zen_number(v[1])}]", False,
                lambda v: complement(((v[0], True, v[1], True),)), None),
    JdmOperator("given", "flag", lambda v: "$ != null" if v else "$ == null", True,
                lambda v: EVERY_NUMBER if v else (), lambda v, d: frozenset(d) if v else frozenset()),
)}
# When several operators accept the same values, the first of these reads back (then the shortest list).
PREFERENCE = ("given", "eq", "ne", "lt", "lte", "gt", "gte", "between", "not_between", "in", "not_in")


def cell_text(tests: list[tuple[str, Any]]) -> str:
    """The ZEN cell for the tests one rule makes on one fact, all of which must hold. A test that is not
    null-safe gets a 'given' guard first: ZEN raises on `null >= 24` (and skips the row in a table)."""
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
        values &= JDM_OPERATORS[op].texts(value, domain)
    return bool(values)


def number_tests(numbers: Numbers, operators: tuple[str, ...]) -> list[list[tuple[str, Any]]] | None:
    """The numbers (not null) as our tests: [[one test]] when one operator accepts exactly them, [[low bound,
    high bound]] for one interval, else one alternative per interval (or None for no number at all)."""
    if not numbers:
        return None
    ends = sorted({e for lo, _, hi, _ in numbers for e in (lo, hi) if math.isfinite(e)})
    found = _best([(op, c) for op in operators if JDM_OPERATORS[op].numbers is not None
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
               ) -> list[tuple[str, Any]] | None:
    """The enum values (a non-empty subset of domain) as one of our tests, or None if none accepts exactly them."""
    ordered = [v for v in domain if v in values]
    others = [v for v in domain if v not in values]
    candidates = {"one": [(v,) for v in domain], "list": [tuple(ordered), tuple(others)], "flag": [(True,)]}
    return _best([(op, c[0] if JDM_OPERATORS[op].arity in ("one", "flag") else c)
                  for op in operators if JDM_OPERATORS[op].texts is not None
                  for c in candidates.get(JDM_OPERATORS[op].arity, [])
                  if c and JDM_OPERATORS[op].texts(c[0] if JDM_OPERATORS[op].arity in ("one", "flag") else c,
                                                   domain) == values])


def _candidates(arity: str, ends: list[float]) -> list[Any]:
    if arity == "one":
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
