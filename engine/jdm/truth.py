"""What a ZEN cell read by engine.jdm.cells accepts, exactly: the cell is evaluated as ZEN does, errors included
(ZEN raises on `null >= 24`, and a table skips a row whose cell raises), at one value per stretch between the
cell's constants, so what it accepts is known exactly, not guessed from its shape."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from .operators import Interval, Numbers, merged

ERROR = "error"  # ZEN raised: a table skips the row


def evaluate(node: tuple, x: Any) -> bool | str:
    """ZEN's answer for value x (a number, a text or None): True, False or ERROR."""
    kind = node[0]
    if kind in ("or", "and"):
        stop = kind == "or"
        for item in node[1]:
            answer = evaluate(item, x)
            if answer == ERROR or answer is stop:
                return answer
        return not stop
    if kind == "not":
        answer = evaluate(node[1], x)
        return answer if answer == ERROR else not answer
    if kind == "in":
        return any(_equal(x, item) for item in node[1])
    if kind == "range":
        _, low, low_in, high, high_in = node
        if not _is_number(x):
            return ERROR
        return (low < x or (low_in and low == x)) and (x < high or (high_in and x == high))
    _, op, value = node
    if op == "==":
        return _equal(x, value)
    if op == "!=":
        return not _equal(x, value)
    if not _is_number(x) or not _is_number(value):
        return ERROR
    return {"<": x < value, "<=": x <= value, ">": x > value, ">=": x >= value}[op]


def _is_number(x: Any) -> bool:
    return isinstance(x, (float, int, Fraction)) and not isinstance(x, bool)


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) != _is_number(b):
        return False
    return a == b


def literals(node: tuple | None) -> list[Any]:
    """Every constant a cell compares with, in order."""
    if node is None:
        return []
    kind = node[0]
    if kind in ("or", "and"):
        return [v for item in node[1] for v in literals(item)]
    if kind == "not":
        return literals(node[1])
    if kind == "in":
        return list(node[1])
    if kind == "range":
        return [node[1], node[3]]
    return [node[2]]


def orders(node: tuple | None) -> bool:
    """True when the cell orders values (<, <=, >, >= or a range): only numbers can be ordered."""
    if node is None:
        return False
    kind = node[0]
    if kind in ("or", "and"):
        return any(orders(item) for item in node[1])
    if kind == "not":
        return orders(node[1])
    return kind == "range" or (kind == "cmp" and node[1] not in ("==", "!="))


def number_truth(node: tuple) -> tuple[Numbers, bool]:
    """The numbers a cell accepts, and whether it accepts null: evaluated at every constant and at one value
    inside each stretch between them, where no comparison can change its answer."""
    ends = sorted({float(v) for v in literals(node) if _is_number(v)})
    pieces: list[tuple[Interval, Any]] = []
    if not ends:
        pieces.append(((-math.inf, False, math.inf, False), Fraction(0)))
    else:
        pieces.append(((-math.inf, False, ends[0], False), Fraction(ends[0]) - 1))
        for i, end in enumerate(ends):
            pieces.append(((end, True, end, True), end))
            upper = ends[i + 1] if i + 1 < len(ends) else math.inf
            inside = (Fraction(end) + Fraction(upper)) / 2 if upper < math.inf else Fraction(end) + 1
            pieces.append(((end, False, upper, False), inside))
    accepted = [interval for interval, x in pieces if evaluate(node, x) is True]
    return merged(accepted), evaluate(node, None) is True


def text_truth(node: tuple, domain: tuple[str, ...]) -> tuple[frozenset[str], bool]:
    """The enum values (of domain) a cell accepts, and whether it accepts null."""
    return frozenset(v for v in domain if evaluate(node, v) is True), evaluate(node, None) is True
